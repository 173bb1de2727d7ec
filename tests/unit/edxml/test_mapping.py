"""DocumentId, business type, priority and date mapping, and the proto round trip via edXML."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Literal

import pytest
from docaxis.common.v1 import common_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.edxml import (
    BusinessDocType,
    Organisation,
    StaffInfo,
    edxml_bytes,
    read_document,
    read_status,
)
from gateway.edxml.dates import VIETNAM
from gateway.edxml.mapping import (
    DocumentIdError,
    DocumentIdParts,
    business_type_from_proto,
    business_type_to_proto,
    compose_document_id,
    date_from_iso,
    document_header,
    document_package,
    iso_date,
    media_type_for,
    parse_document_id,
    priority_from_proto,
    priority_to_proto,
    status_package,
    status_values,
)
from tests.unit.edxml.builders import NOW, ORIGINAL_ID, an_attachment

# Vietnamese letters whose NFC and NFD forms differ, plus the usual notation characters.
_VIETNAMESE = "ĐđĂăÂâÊêÔôƠơƯưÁÀẢÃẠẮẰẲẴẶẤẦẨẪẬÉÈẺẼẸẾỀỂỄỆÍÌỈĨỊÓÒỎÕỌỐỒỔỖỘỚỜỞỠỢÚÙỦŨỤỨỪỬỮỰÝỲỶỸỴ"
_NOTATION = st.text(
    alphabet=_VIETNAMESE + "ABCDEHKLMNQSTUVXabcxyz0123456789-/,.()",
    min_size=1,
    max_size=30,
).filter(lambda s: s[0] not in "/,")
_NUMBER = st.text(alphabet="0123456789ABCabcđĐ,-", min_size=1, max_size=11)
_SENDER = st.from_regex(r"[0-9A-Z.]{1,35}", fullmatch=True)
_DATES = st.dates(min_value=dt.date(1945, 9, 2), max_value=dt.date(2100, 12, 31))
_FORM: st.SearchStrategy[Literal["NFC", "NFD"]] = st.sampled_from(["NFC", "NFD"])


@given(_SENDER, _DATES, _NUMBER, _NOTATION, _FORM)
def test_composing_then_parsing_a_document_id_gives_back_its_parts(
    sender: str, date: dt.date, number: str, notation: str, form: Literal["NFC", "NFD"]
) -> None:
    """For Vietnamese notations in NFC or NFD, parse(compose(x)) is x in NFC."""
    number = unicodedata.normalize(form, number)
    notation = unicodedata.normalize(form, notation)
    document_id = compose_document_id(sender, date, number, notation)
    assert unicodedata.is_normalized("NFC", document_id)
    assert parse_document_id(document_id) == DocumentIdParts(
        sender,
        date,
        unicodedata.normalize("NFC", number),
        unicodedata.normalize("NFC", notation),
    )


@given(_SENDER, _DATES, _NUMBER, _NOTATION)
def test_nfc_and_nfd_spellings_compose_the_same_document_id(
    sender: str, date: dt.date, number: str, notation: str
) -> None:
    """The key of a document does not depend on how its notation was normalised."""
    nfc = compose_document_id(sender, date, number, unicodedata.normalize("NFC", notation))
    nfd = compose_document_id(sender, date, number, unicodedata.normalize("NFD", notation))
    assert nfc == nfd
    assert parse_document_id(unicodedata.normalize("NFD", nfc)) == parse_document_id(nfc)


def test_a_notation_may_hold_slashes_and_commas() -> None:
    """Two comma splits, then the first slash: the rest belongs to the notation."""
    parts = parse_document_id("H37.DN.001,2025/01/02,12/QĐ-UBND/KT,TH")
    assert parts == DocumentIdParts("H37.DN.001", dt.date(2025, 1, 2), "12", "QĐ-UBND/KT,TH")
    assert parts.code == "12/QĐ-UBND/KT,TH"
    assert parse_document_id("000.00.00.G22,2015/09/30,7816/VPCP-TTĐT").notation == "VPCP-TTĐT"


@pytest.mark.parametrize(
    "raw",
    [
        "000.00.00.G22,2015/09/30",
        "000.00.00.G22,2015/09/30,7816",
        "000.00.00.G22,30/09/2015,7816/VPCP",
        "000.00.00.G22,2015/9/30,7816/VPCP",
        "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",
        "5e515fca-3627-4f2e-b517-7169acdc8bda",
    ],
)
def test_malformed_document_ids_are_refused(raw: str) -> None:
    """Wrong part count, a non-canonical or impossible date, no slash: DocumentIdError."""
    with pytest.raises(DocumentIdError):
        parse_document_id(raw)


def test_business_types_shift_by_one_into_the_proto() -> None:
    """0..3 on the wire are BUSINESS_TYPE_NEW..REPLACE; zero stays "not given"."""
    expected = {
        BusinessDocType.NEW: common_pb2.BUSINESS_TYPE_NEW,
        BusinessDocType.REVOKE: common_pb2.BUSINESS_TYPE_REVOKE,
        BusinessDocType.UPDATE: common_pb2.BUSINESS_TYPE_UPDATE,
        BusinessDocType.REPLACE: common_pb2.BUSINESS_TYPE_REPLACE,
    }
    for wire, proto in expected.items():
        assert business_type_to_proto(wire) == proto
        assert business_type_from_proto(proto) is wire
    with pytest.raises(ValueError, match="not given"):
        business_type_from_proto(common_pb2.BUSINESS_TYPE_UNSPECIFIED)


def test_priorities_shift_by_one_into_the_proto() -> None:
    """0..4 on the wire are PRIORITY_NORMAL..TIMED_EXPRESS; none is UNSPECIFIED."""
    assert priority_to_proto(None) == common_pb2.PRIORITY_UNSPECIFIED
    assert priority_to_proto(0) == common_pb2.PRIORITY_NORMAL
    assert priority_to_proto(4) == common_pb2.PRIORITY_TIMED_EXPRESS
    for wire in range(5):
        assert priority_from_proto(priority_to_proto(wire)) == wire
    assert priority_from_proto(common_pb2.PRIORITY_UNSPECIFIED) is None
    with pytest.raises(ValueError, match=r"not in 0\.\.4"):
        priority_to_proto(5)


def test_dates_map_to_iso_strings_and_back() -> None:
    """YYYY-MM-DD, and "" for a missing date."""
    assert iso_date(dt.date(2025, 3, 14)) == "2025-03-14"
    assert iso_date(None) == ""
    assert date_from_iso("2025-03-14") == dt.date(2025, 3, 14)
    assert date_from_iso("") is None


def test_media_types_come_from_the_name_inside_the_zip() -> None:
    """The wire only says zip; the stored reference names the real type."""
    assert media_type_for("QĐ 12.PDF") == "application/pdf"
    assert media_type_for("phu-luc.docx").endswith("wordprocessingml.document")
    assert media_type_for("no-extension") == "application/octet-stream"


@pytest.mark.parametrize(
    ("business_type", "targets"),
    [
        (common_pb2.BUSINESS_TYPE_NEW, []),
        (common_pb2.BUSINESS_TYPE_NEW, ["000.00.00.H40,2025/03/01,15/UBND-TH"]),
        (common_pb2.BUSINESS_TYPE_REVOKE, [ORIGINAL_ID]),
        (common_pb2.BUSINESS_TYPE_UPDATE, [ORIGINAL_ID]),
        (common_pb2.BUSINESS_TYPE_REPLACE, [ORIGINAL_ID]),
    ],
    ids=["new", "reply", "revoke", "update", "replace"],
)
def test_a_docaxis_header_survives_export_and_import(
    business_type: common_pb2.BusinessType.ValueType, targets: list[str]
) -> None:
    """DocumentHeader -> package -> strict edXML -> package -> DocumentHeader is the identity."""
    header = common_pb2.DocumentHeader(
        sender="000.00.11.H40",
        recipients=["000.00.00.H40", "000.00.12.H40"],
        code=common_pb2.DocumentCode(number="2491", notation="STC-NS"),
        promulgation_place="Nam Định",
        promulgation_date="2025-03-14",
        document_type=1,
        type_name="Công văn",
        subject="Về việc hướng dẫn quyết toán ngân sách",
        content="Nội dung",
        signer=common_pb2.Signer(
            competence="KT. GIÁM ĐỐC", position="Phó Giám đốc", full_name="An"
        ),
        due_date="2025-03-31",
        priority=common_pb2.PRIORITY_URGENT,
        business_type=business_type,
        response_for=targets,
        document_id=ORIGINAL_ID,
        to_places=["Như trên"],
    )
    names = {"000.00.11.H40": Organisation(organ_id="000.00.11.H40", organ_name="Sở Tài chính")}
    package = document_package(
        header,
        [an_attachment()],
        sent_at=dt.datetime(2025, 3, 14, 2, 0, tzinfo=dt.UTC),
        organisations=names,
        staff=StaffInfo("Văn thư", "Bình", "vt@example.gov.vn", "0900000000"),
    )
    result = read_document(edxml_bytes(package, now=NOW), now=NOW)
    assert result.report.errors == ()
    assert result.package == package
    assert document_header(result.package) == header
    assert result.package.header.sender.organ_name == "Sở Tài chính"


def test_a_forwarded_document_carries_one_trace_header_per_hub_after_the_senders() -> None:
    """Each hub that handed the document on adds a TraceHeader (its code, when it took the
    document over), oldest first after the sender's; the strict writer and the reader keep
    them in that order, in Vietnam time."""
    header = common_pb2.DocumentHeader(
        sender="000.01.00.H45",
        recipients=["000.00.13.H46"],
        code=common_pb2.DocumentCode(number="17", notation="UBND"),
        promulgation_date="2025-03-14",
        document_type=1,
        subject="Liên tỉnh",
        business_type=common_pb2.BUSINESS_TYPE_NEW,
    )
    sent = dt.datetime(2025, 3, 14, 2, 0, tzinfo=dt.UTC)
    hops = [
        ("province-a", sent),
        ("national", sent + dt.timedelta(seconds=3)),
        ("province-b", sent + dt.timedelta(seconds=5)),
    ]
    package = document_package(header, [an_attachment()], sent_at=sent, hops=hops)
    read = read_document(edxml_bytes(package, now=NOW), now=NOW).raise_for_errors()
    assert [(t.organ_id, t.timestamp) for t in read.trace.trace_headers] == [
        ("000.01.00.H45", sent.astimezone(VIETNAM)),
        *((hub, at.astimezone(VIETNAM)) for hub, at in hops),
    ]
    # Without hops (a document that never left its hub): the sender's TraceHeader alone.
    alone = document_package(header, [an_attachment()], sent_at=sent)
    assert [t.organ_id for t in alone.trace.trace_headers] == ["000.01.00.H45"]


def test_a_status_survives_export_and_import() -> None:
    """status_package -> strict edXML -> read_status -> status_values keeps every field."""
    package = status_package(
        reporter=Organisation(organ_id="000.00.00.H40", organ_name="UBND tỉnh Nam Định"),
        document_id=ORIGINAL_ID,
        status_code="03",
        description="Đã tiếp nhận",
        at=dt.datetime(2025, 3, 15, 1, 1, 44, tzinfo=dt.UTC),
    )
    result = read_status(edxml_bytes(package, now=NOW), now=NOW)
    assert result.report.issues == ()
    assert result.package == package
    values = status_values(result.package)
    assert (values.document_id, values.original_sender, values.status_code) == (
        ORIGINAL_ID,
        "000.00.11.H40",
        "03",
    )
    assert values.reported_at == "2025-03-15T08:01:44+07:00"
    assert result.package.timestamp == dt.datetime(2025, 3, 15, 8, 1, 44, tzinfo=VIETNAM)
