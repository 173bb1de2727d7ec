"""The report lists every rule a package breaks at once, each with a code and a path."""

from __future__ import annotations

import pytest

from gateway.edxml import (
    EdxmlValidationError,
    IssueCode,
    Severity,
    read_document,
    read_edxml,
    read_status,
)
from tests.unit.edxml.builders import NOW, STATUS, STRICT


def edit(xml: bytes, *replacements: tuple[bytes, bytes]) -> bytes:
    for old, new in replacements:
        assert old in xml, old
        xml = xml.replace(old, new, 1)
    return xml


def test_a_package_with_many_problems_reports_them_all_at_once(
    samples: dict[str, bytes],
) -> None:
    """Thirteen broken rules across the package come back in one report, each at its path."""
    xml = edit(
        samples[STRICT],
        (b"<edXML:OrganId>000.00.11.H40</edXML:OrganId>", b"<edXML:OrganId/>"),
        (
            b"<edXML:OrganId>000.00.12.H40</edXML:OrganId>",
            b"<edXML:OrganId>000.00.00.H40</edXML:OrganId>",
        ),
        (
            b"<edXML:DocumentId>",
            b"<edXML:To><edXML:OrganId>000,00.H40</edXML:OrganId></edXML:To>\n<edXML:DocumentId>",
        ),
        (
            b"<edXML:CodeNumber>2491</edXML:CodeNumber>",
            b"<edXML:CodeNumber>2491/2025/ABCD</edXML:CodeNumber>",
        ),
        (b"<edXML:CodeNotation>STC-NS</edXML:CodeNotation>", b"<edXML:CodeNotation/>"),
        (b"<edXML:PromulgationDate>2025/03/14<", b"<edXML:PromulgationDate>2025/06/02<"),
        (b"<edXML:Type>1</edXML:Type>", b"<edXML:Type>one</edXML:Type>"),
        (b"<edXML:Subject>V", b"<edXML:Subject>" + "Ư".encode() * 500 + b"V"),
        (b"<edXML:Priority>1</edXML:Priority>", b"<edXML:Priority>7</edXML:Priority>"),
        (b"<edXML:TyperNotation>TVA<", b"<edXML:TyperNotation>ABCDEFGHIJK<"),
        (b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>9<"),
        (b"<edXML:ContentId>cid:1</edXML:ContentId>", b"<edXML:ContentId>cid:2</edXML:ContentId>"),
    )
    report = read_edxml(xml, now=NOW).report
    errors = {(issue.code, issue.path) for issue in report.errors}
    assert errors == {
        (IssueCode.REQUIRED, "MessageHeader/From/OrganId"),
        (IssueCode.RECIPIENT_DUPLICATE, "MessageHeader/To[2]/OrganId"),
        (IssueCode.ORGAN_ID_INVALID, "MessageHeader/To[3]/OrganId"),
        (IssueCode.TOO_LONG, "MessageHeader/Code/CodeNumber"),
        (IssueCode.CODE_NUMBER_INVALID, "MessageHeader/Code/CodeNumber"),
        (IssueCode.REQUIRED, "MessageHeader/Code/CodeNotation"),
        (IssueCode.DATE_IN_FUTURE, "MessageHeader/PromulgationInfo/PromulgationDate"),
        (IssueCode.VALUE_INVALID, "MessageHeader/DocumentType/Type"),
        (IssueCode.TOO_LONG, "MessageHeader/Subject"),
        (IssueCode.OUT_OF_RANGE, "MessageHeader/OtherInfo/Priority"),
        (IssueCode.TOO_LONG, "MessageHeader/OtherInfo/TyperNotation"),
        (IssueCode.VALUE_INVALID, "TraceHeaderList/Bussiness/BussinessDocType"),
        (IssueCode.ATTACHMENT_MISSING, "edXMLManifest/Reference[1]"),
    }
    warnings = {(issue.code, issue.path) for issue in report.warnings}
    assert (IssueCode.REFERENCE_MISSING, "AttachmentEncoded/Attachment[1]") in warnings
    for issue in report.issues:
        assert issue.message
        assert issue.severity in (Severity.ERROR, Severity.WARNING)


def test_raise_for_errors_carries_every_error(samples: dict[str, bytes]) -> None:
    """The typed error a caller raises from a report holds the whole list, reason VALIDATION."""
    xml = edit(
        samples[STRICT],
        (b"<edXML:Subject>V", b"<edXML:Subject>" + b"x" * 501),
        (b"<edXML:CodeNotation>STC-NS</edXML:CodeNotation>", b"<edXML:CodeNotation/>"),
    )
    result = read_edxml(xml, now=NOW)
    with pytest.raises(EdxmlValidationError) as caught:
        result.raise_for_errors()
    assert caught.value.reason == "VALIDATION"
    assert caught.value.retryable is False
    assert {issue.path for issue in caught.value.issues} == {
        "MessageHeader/Subject",
        "MessageHeader/Code/CodeNotation",
    }


def test_a_package_without_recipients_is_an_error(samples: dict[str, bytes]) -> None:
    """Routing needs at least one To."""
    xml = samples[STRICT]
    start = xml.index(b"<edXML:To>")
    end = xml.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    report = read_edxml(xml[:start] + xml[end:], now=NOW).report
    assert [(i.code, i.path) for i in report.errors] == [
        (IssueCode.RECIPIENT_MISSING, "MessageHeader/To")
    ]


def test_an_unreadable_required_date_is_reported_once(samples: dict[str, bytes]) -> None:
    """A PromulgationDate that is not a date is DATE_INVALID, not also REQUIRED."""
    xml = edit(
        samples[STRICT],
        (b">2025/03/14</edXML:Promulgation", b">the ides of March</edXML:Promulgation"),
    )
    report = read_edxml(xml, now=NOW).report
    path = "MessageHeader/PromulgationInfo/PromulgationDate"
    assert [(i.code, i.severity) for i in report.at(path)] == [
        (IssueCode.DATE_INVALID, Severity.ERROR)
    ]


def test_a_sender_supplied_document_id_that_disagrees_is_kept_and_reported(
    samples: dict[str, bytes],
) -> None:
    """Statuses will quote the sender's key, so a mismatch is a warning, not a rewrite."""
    xml = edit(
        samples[STRICT], (b",2491/STC-NS</edXML:DocumentId>", b",2492/STC-NS</edXML:DocumentId>")
    )
    result = read_document(xml, now=NOW)
    assert [i.code for i in result.report.issues] == [IssueCode.DOCUMENT_ID_MISMATCH]
    assert result.package.header.document_id.endswith("2492/STC-NS")


def test_a_refusal_without_reason_and_a_missing_response_for_are_errors(
    samples: dict[str, bytes],
) -> None:
    """Status 02 needs a reason; every status needs the document it is about."""
    xml = samples[STATUS]
    start = xml.index(b"<edXML:ResponseFor>")
    end = xml.index(b"</edXML:ResponseFor>") + len(b"</edXML:ResponseFor>")
    xml = edit(
        xml[:start] + xml[end:],
        (b">05<", b">02<"),
        (
            b"<edXML:Description>\xc4\x90ang x\xe1\xbb\xad l\xc3\xbd</edXML:Description>",
            b"<edXML:Description/>",
        ),
    )
    report = read_status(xml, now=NOW).report
    assert {(i.code, i.path) for i in report.errors} == {
        (IssueCode.REQUIRED, "MessageHeader/ResponseFor"),
        (IssueCode.STATUS_REASON_MISSING, "MessageHeader/Description"),
    }


@pytest.mark.parametrize(
    ("code", "expected", "severity"),
    [
        (b"5", IssueCode.CODE_NORMALISED, Severity.WARNING),
        (b"09", IssueCode.STATUS_CODE_UNKNOWN, Severity.WARNING),
        (b"OK", IssueCode.STATUS_CODE_INVALID, Severity.ERROR),
    ],
)
def test_status_codes_are_checked(
    code: bytes, expected: IssueCode, severity: Severity, samples: dict[str, bytes]
) -> None:
    """One digit is padded, an unseen code passes with a warning, anything else is an error."""
    xml = edit(samples[STATUS], (b">05<", b">" + code + b"<"))
    report = read_status(xml, now=NOW).report
    assert [(i.code, i.severity) for i in report.issues] == [(expected, severity)]
