"""The exchange domain: DocumentIds and the edXML limits a submission is checked against."""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from typing import Any

import pytest

from docaxis_client.trust.document import DocumentIdParts, parse_document_id
from services.common.errors import ValidationError
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import (
    MAX_ATTACHMENT_DESCRIPTION,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENTS,
    MAX_CODE_NOTATION,
    MAX_CODE_NUMBER,
    MAX_CONSIGNMENT_ID,
    MAX_PLACE,
    MAX_RECIPIENTS,
    MAX_SIGNER_NAME,
    MAX_SIGNER_POSITION,
    MAX_SUBJECT,
    MAX_TO_PLACES_TOTAL,
    MAX_TYPE_NAME,
    AttachmentRef,
    BusinessType,
    Header,
    Submission,
    attachment_name_problem,
    document_id_of,
    media_type_problem,
    nfc,
    submission_problems,
    validate_submission,
)

TODAY = dt.date(2025, 8, 1)
LIMIT = 1024
SENDER = "000.00.00.G22"
NOTATION = "KH-SỞYT"
HEADER = Header(
    sender=SENDER,
    recipients=("000.00.00.H45", "000.00.00.H26"),
    code_number="7816",
    code_notation=NOTATION,
    promulgation_date=dt.date(2025, 7, 30),
    subject="Về việc triển khai chính quyền địa phương hai cấp",
)
ATTACHMENT = AttachmentRef("cv.pdf", "application/pdf", 100, "a" * 64)
VALID = Submission("c-1", HEADER, (ATTACHMENT,))


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def problems(submission: Submission, today: dt.date = TODAY) -> list[str]:
    return [
        v.field
        for v in submission_problems(
            submission, code_problem=code_problem, today=today, max_attachment_bytes=LIMIT
        )
    ]


def with_header(**changes: Any) -> Submission:
    return dataclasses.replace(VALID, header=dataclasses.replace(HEADER, **changes))


# --- DocumentId ---------------------------------------------------------------------------------


def test_a_document_id_is_sender_date_and_number_slash_notation() -> None:
    """The global key of domain.md §3, with the date as yyyy/MM/dd."""
    assert HEADER.document_id == "000.00.00.G22,2025/07/30,7816/KH-SỞYT"


def test_a_notation_containing_slashes_and_commas_survives_a_round_trip() -> None:
    """Parsing splits on the first two commas and then the first slash only."""
    raw = document_id_of(SENDER, dt.date(2025, 1, 2), "12", "QĐ/UBND,VP")
    assert raw == "000.00.00.G22,2025/01/02,12/QĐ/UBND,VP"
    assert parse_document_id(raw) == DocumentIdParts(
        SENDER, dt.date(2025, 1, 2), "12", "QĐ/UBND,VP"
    )


def test_decomposed_and_composed_vietnamese_make_the_same_document_id() -> None:
    """NFD input (as some DMSs send it) yields the NFC key, so both spellings collide."""
    decomposed = document_id_of(SENDER, HEADER.promulgation_date, "7816", nfd(NOTATION))
    assert nfd(NOTATION) != NOTATION
    assert decomposed == HEADER.document_id
    assert parse_document_id(nfd(HEADER.document_id)).notation == NOTATION


@pytest.mark.parametrize(
    "raw",
    [
        "000.00.00.G22,2025/07/30",  # no number
        "000.00.00.G22,2025/07/30,7816",  # no slash
        "000.00.00.G22,2025-07-30,7816/VP",  # wrong date format
        "000.00.00.G22,2025/13/01,7816/VP",  # no such month
        "",
    ],
)
def test_malformed_document_ids_are_refused(raw: str) -> None:
    """Anything but <sender>,<yyyy/MM/dd>,<number>/<notation> is a ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the cause
        parse_document_id(raw)


def test_nfc_also_trims() -> None:
    """Stored text is NFC and has no surrounding whitespace."""
    assert nfc(f"  {nfd('Quảng Ninh')}\n") == "Quảng Ninh"


# --- submission limits --------------------------------------------------------------------------


def test_a_valid_submission_has_no_problems() -> None:
    """The baseline the other tests break one field at a time."""
    assert problems(VALID) == []
    validate_submission(VALID, code_problem=code_problem, today=TODAY, max_attachment_bytes=LIMIT)


def test_the_limits_are_those_of_the_edxml_input_tables() -> None:
    """domain.md §2.2: number 11, notation 30, subject 500, type name 100, signer position 100
    and name 50, places 200, to_places 1000 in total; our own caps on lists and ids."""
    assert (MAX_CODE_NUMBER, MAX_CODE_NOTATION, MAX_SUBJECT, MAX_TYPE_NAME) == (11, 30, 500, 100)
    assert (MAX_SIGNER_POSITION, MAX_SIGNER_NAME, MAX_PLACE, MAX_TO_PLACES_TOTAL) == (
        100,
        50,
        200,
        1000,
    )
    assert (MAX_RECIPIENTS, MAX_ATTACHMENTS, MAX_CONSIGNMENT_ID) == (5000, 100, 128)


@pytest.mark.parametrize(
    ("attribute", "field", "limit"),
    [
        ("code_number", "header.code.number", MAX_CODE_NUMBER),
        ("code_notation", "header.code.notation", MAX_CODE_NOTATION),
        ("subject", "header.subject", MAX_SUBJECT),
        ("type_name", "header.type_name", MAX_TYPE_NAME),
        ("promulgation_place", "header.promulgation_place", MAX_PLACE),
        ("signer_position", "header.signer.position", MAX_SIGNER_POSITION),
        ("signer_full_name", "header.signer.full_name", MAX_SIGNER_NAME),
    ],
)
def test_each_header_text_is_limited_to_its_edxml_length(
    attribute: str, field: str, limit: int
) -> None:
    """Exactly the limit passes; one character more is a problem named after the field."""
    digit = "7" if attribute == "code_number" else "ư"
    assert problems(with_header(**{attribute: digit * limit})) == []
    assert problems(with_header(**{attribute: digit * (limit + 1)})) == [field]


@pytest.mark.parametrize(
    ("attribute", "field"),
    [
        ("code_number", "header.code.number"),
        ("code_notation", "header.code.notation"),
        ("subject", "header.subject"),
    ],
)
def test_number_notation_and_subject_are_required(attribute: str, field: str) -> None:
    """An empty required text is reported as required."""
    assert problems(with_header(**{attribute: ""})) == [field]


def test_to_places_are_limited_in_total_not_each() -> None:
    """Ten places of 100 characters pass; one more character in all does not."""
    places = tuple("p" * 100 for _ in range(10))
    assert sum(map(len, places)) == MAX_TO_PLACES_TOTAL
    assert problems(with_header(to_places=places)) == []
    assert problems(with_header(to_places=(*places, "x"))) == ["header.to_places"]


def test_the_consignment_id_is_1_to_128_printable_ascii_characters() -> None:
    """Empty, too long, a space or a non-ASCII letter are all refused."""
    assert problems(dataclasses.replace(VALID, consignment_id="~" * MAX_CONSIGNMENT_ID)) == []
    for bad in ("", "c" * (MAX_CONSIGNMENT_ID + 1), "c 1", "lô-1", "c\t1"):
        assert problems(dataclasses.replace(VALID, consignment_id=bad)) == ["consignment_id"]


def test_a_consignment_id_ending_in_a_newline_is_refused() -> None:
    """A newline is not printable ASCII, at the end of the id as anywhere else."""
    assert problems(dataclasses.replace(VALID, consignment_id="c-1\n")) == ["consignment_id"]


def test_recipients_are_required_valid_distinct_and_at_most_5000() -> None:
    """Each recipient is a code in an accepted form and appears once."""
    assert problems(with_header(recipients=())) == ["header.recipients"]
    many = tuple(f"{n // 100:03d}.{n % 100:02d}.01.H99" for n in range(MAX_RECIPIENTS + 1))
    assert problems(with_header(recipients=many[:MAX_RECIPIENTS])) == []
    assert problems(with_header(recipients=many)) == ["header.recipients"]
    assert problems(
        with_header(recipients=("000.00.00.H45", "nope", "000.00.00.H45", "000.00.00.H45"))
    ) == ["header.recipients[1]", "header.recipients[2]", "header.recipients[3]"]


def test_a_number_with_a_comma_or_slash_would_break_the_document_id() -> None:
    """The number must not contain the DocumentId's separators; the notation may."""
    assert problems(with_header(code_number="78/16")) == ["header.code.number"]
    assert problems(with_header(code_number="78,16")) == ["header.code.number"]
    assert problems(with_header(code_notation="QĐ/UBND,VP")) == []


def test_the_promulgation_date_may_be_today_but_not_tomorrow() -> None:
    """Today in Vietnam is the latest acceptable date."""
    assert problems(with_header(promulgation_date=TODAY)) == []
    assert problems(with_header(promulgation_date=TODAY + dt.timedelta(days=1))) == [
        "header.promulgation_date"
    ]


def test_revoke_update_and_replace_must_name_a_well_formed_target() -> None:
    """A non-NEW business type needs response_for, and each entry must parse as a DocumentId."""
    for business in (BusinessType.REVOKE, BusinessType.UPDATE, BusinessType.REPLACE):
        assert problems(with_header(business_type=business)) == ["header.response_for"]
        assert (
            problems(with_header(business_type=business, response_for=(HEADER.document_id,))) == []
        )
    assert problems(with_header(response_for=(HEADER.document_id, "garbage"))) == [
        "header.response_for[1]"
    ]


def test_attachment_references_are_checked_field_by_field() -> None:
    """Name, media type, lowercase SHA-256 and a size between 1 and the limit."""
    bad = (
        AttachmentRef("", "", 0, "A" * 64),
        AttachmentRef("big.pdf", "application/pdf", LIMIT + 1, "b" * 63),
        AttachmentRef("max.pdf", "application/pdf", LIMIT, "c" * 64),
    )
    assert problems(dataclasses.replace(VALID, attachments=bad)) == [
        "attachments[0].name",
        "attachments[0].media_type",
        "attachments[0].sha256",
        "attachments[0].size",
        "attachments[1].sha256",
        "attachments[1].size",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "cv.pdf",
        "Công văn số 12 (bản chính).pdf",
        "x" * MAX_ATTACHMENT_NAME,
        ".hidden",
    ],
)
def test_a_file_name_is_accepted(name: str) -> None:
    assert attachment_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "required"),
        ("../../etc/passwd", "path separators"),
        ("C:\\Windows\\win.ini", "path separators"),
        ("a\r\nb.pdf", "U+000D"),
        ("tab\there.pdf", "U+0009"),
        ("nul\x00.pdf", "U+0000"),
        ("bidi\u2028.pdf", "U+2028"),
        ("x" * (MAX_ATTACHMENT_NAME + 1), "at most 255"),
        ("..", "only dots"),
        (" . ", "only dots"),
    ],
)
def test_a_name_that_is_not_one_bounded_file_name_is_refused(name: str, why: str) -> None:
    problem = attachment_name_problem(name)
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize(
    "media_type",
    [
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "image/svg+xml",
        "Application/PDF",
        "a" * 127 + "/" + "b" * 127,
    ],
)
def test_an_rfc_6838_media_type_is_accepted(media_type: str) -> None:
    assert media_type_problem(media_type) is None


@pytest.mark.parametrize(
    "media_type",
    [
        "",
        "pdf",
        "application/",
        "/pdf",
        "application/pdf; charset=binary",
        "text/html\r\nX-Injected: 1",
        "application/-pdf",
        "a" * 128 + "/pdf",
        "application/" + "x" * 1_000_000,
        "application/pdf/x",
    ],
)
def test_anything_else_is_not_a_media_type(media_type: str) -> None:
    problem = media_type_problem(media_type)
    assert problem is not None
    assert len(problem) < 120  # a huge value is not echoed back whole


def test_an_attachment_description_is_bounded() -> None:
    long = dataclasses.replace(ATTACHMENT, description="d" * (MAX_ATTACHMENT_DESCRIPTION + 1))
    assert problems(dataclasses.replace(VALID, attachments=(long,))) == [
        "attachments[0].description"
    ]


def test_at_most_100_attachments() -> None:
    """The count is limited as well as each reference."""
    attachments = (ATTACHMENT,) * MAX_ATTACHMENTS
    assert problems(dataclasses.replace(VALID, attachments=attachments)) == []
    too_many = (*attachments, ATTACHMENT)
    assert problems(dataclasses.replace(VALID, attachments=too_many)) == ["attachments"]


def test_every_problem_with_a_submission_is_reported_at_once() -> None:
    """One broken value per rule gives one violation per rule, in a stable order."""
    broken = Submission(
        consignment_id="c" * (MAX_CONSIGNMENT_ID + 1),
        header=Header(
            sender="bad sender",
            recipients=("000.00.00.H45", "000.00.00.H45"),
            code_number="1" * (MAX_CODE_NUMBER + 1),
            code_notation="N" * (MAX_CODE_NOTATION + 1),
            promulgation_date=TODAY + dt.timedelta(days=2),
            subject="s" * (MAX_SUBJECT + 1),
            promulgation_place="p" * (MAX_PLACE + 1),
            document_type=-1,
            type_name="t" * (MAX_TYPE_NAME + 1),
            signer_position="q" * (MAX_SIGNER_POSITION + 1),
            signer_full_name="f" * (MAX_SIGNER_NAME + 1),
            due_date=TODAY + dt.timedelta(days=1),
            business_type=BusinessType.UPDATE,
            response_for=(),
            to_places=("x" * (MAX_TO_PLACES_TOTAL + 1),),
        ),
        attachments=(AttachmentRef("", "application/pdf", LIMIT + 1, "z" * 64),) * 101,
    )
    found = problems(broken)
    assert found[:17] == [
        "consignment_id",
        "header.sender",
        "header.recipients[1]",
        "header.code.number",
        "header.code.notation",
        "header.promulgation_date",
        "header.subject",
        "header.type_name",
        "header.promulgation_place",
        "header.signer.position",
        "header.signer.full_name",
        "header.to_places",
        "header.due_date",
        "header.document_type",
        "header.response_for",
        "attachments",
        "attachments[0].name",
    ]
    assert found[17:20] == ["attachments[0].sha256", "attachments[0].size", "attachments[1].name"]
    assert len(found) == 16 + 3 * 101
    with pytest.raises(ValidationError) as failure:
        validate_submission(
            broken, code_problem=code_problem, today=TODAY, max_attachment_bytes=LIMIT
        )
    assert [v.field for v in failure.value.violations] == found
