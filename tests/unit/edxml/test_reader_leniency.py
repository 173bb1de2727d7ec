"""The lenient reader: what real senders write is accepted and each deviation is reported."""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import re

import pytest

from gateway.edxml import (
    EdxmlValidationError,
    IssueCode,
    UnsupportedVersionError,
    edxml_bytes,
    read_document,
    read_edxml,
)
from gateway.edxml.dates import VIETNAM
from tests.unit.edxml.builders import (
    NOW,
    ORIGINAL_ID,
    PDF,
    STATUS,
    STRICT,
    with_payload,
    zip_bytes,
)


def edit(xml: bytes, *replacements: tuple[bytes, bytes]) -> bytes:
    for old, new in replacements:
        assert old in xml, old
        xml = xml.replace(old, new)
    return xml


def test_missing_prefixes_are_accepted_and_reported_per_element(
    samples: dict[str, bytes],
) -> None:
    """A library that dropped `edXML:` still gives the same package, one remark per element."""
    strict = samples[STRICT]
    bare = edit(strict, (b"<edXML:", b"<"), (b"</edXML:", b"</"))
    result = read_edxml(bare, now=NOW)
    assert result.package == read_edxml(strict, now=NOW).package
    assert result.report.codes() == {IssueCode.PREFIX_MISSING}
    assert len(result.report.issues) == strict.count(b"<edXML:")
    assert result.report.at("MessageHeader/To[2]/OrganId")[0].normalised


def test_a_document_without_any_namespace_is_read(samples: dict[str, bytes]) -> None:
    """No xmlns at all: every element is reported as namespace-less, the content is the same."""
    strict = samples[STRICT]
    bare = edit(
        strict,
        (b' xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"', b""),
        (b' xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"', b""),
        (b"<edXML:", b"<"),
        (b"</edXML:", b"</"),
    )
    result = read_edxml(bare, now=NOW)
    assert result.package == read_edxml(strict, now=NOW).package
    assert result.report.codes() == {IssueCode.NAMESPACE_MISSING}


def test_the_business_spelling_in_a_vendor_namespace_is_accepted(
    samples: dict[str, bytes],
) -> None:
    """`Business…` from another namespace reads as the standard's `Bussiness…`, reported."""
    strict = samples[STRICT]
    vendor = edit(
        strict,
        (b"<edXML:Bussiness>", b'<v:Business xmlns:v="urn:example:vendor-edoc">'),
        (b"</edXML:Bussiness>", b"</v:Business>"),
        (
            b"<edXML:BussinessDocType>0</edXML:BussinessDocType>",
            b"<v:BusinessDocType>0</v:BusinessDocType>",
        ),
        (b"edXML:BussinessDocReason>", b"v:BusinessDocReason>"),
    )
    result = read_edxml(vendor, now=NOW)
    assert result.package == read_edxml(strict, now=NOW).package
    spelled = [i.path for i in result.report.issues if i.code is IssueCode.ALTERNATE_SPELLING]
    assert spelled == [
        "TraceHeaderList/Bussiness",
        "TraceHeaderList/Bussiness/BussinessDocType",
        "TraceHeaderList/Bussiness/BussinessDocReason",
    ]
    assert result.report.ok


def test_soap_attributes_on_the_trace_list_are_ignored_and_reported(
    samples: dict[str, bytes],
) -> None:
    """mustUnderstand and actor from provincial SOAP gateways do not disturb the reading."""
    strict = samples[STRICT]
    soap = edit(
        strict,
        (
            b"<edXML:TraceHeaderList>",
            b'<edXML:TraceHeaderList xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
            b' soap:mustUnderstand="1" soap:actor="http://schemas.xmlsoap.org/soap/actor/next">',
        ),
    )
    result = read_edxml(soap, now=NOW)
    assert result.package == read_edxml(strict, now=NOW).package
    assert [(i.code, i.path) for i in result.report.issues] == [
        (IssueCode.SOAP_ATTRIBUTE_IGNORED, "TraceHeaderList/@mustUnderstand"),
        (IssueCode.SOAP_ATTRIBUTE_IGNORED, "TraceHeaderList/@actor"),
    ]


def test_optional_fields_may_be_missing(samples: dict[str, bytes]) -> None:
    """Without the optional blocks only warnings remain, and the DocumentId is computed."""
    xml = samples[STRICT]
    for element in (b"SignerInfo", b"ToPlaces", b"OtherInfo"):
        xml = re.sub(
            rb"\s*<edXML:" + element + rb">.*?</edXML:" + element + rb">", b"", xml, flags=re.S
        )
    for element in (b"DueDate", b"SteeringType", b"Content", b"DocumentId"):
        xml = re.sub(rb"\s*<edXML:" + element + rb">[^<]*</edXML:" + element + rb">", b"", xml)
    result = read_document(xml, now=NOW)
    assert result.report.ok
    assert result.report.codes() == {IssueCode.SIGNER_MISSING, IssueCode.DOCUMENT_ID_COMPUTED}
    header = result.package.header
    assert header.document_id == ORIGINAL_ID
    assert (header.signer, header.due_date, header.other_info, header.steering_type) == (
        None,
        None,
        None,
        None,
    )


def test_an_unzipped_payload_with_its_own_content_type_is_taken_as_the_file(
    samples: dict[str, bytes],
) -> None:
    """Some senders base64 the PDF itself and label it application/pdf: accepted, reported."""
    xml = with_payload(samples[STRICT], base64.b64encode(PDF))
    xml = xml.replace(
        b"<ContentType>application/zip</ContentType>", b"<ContentType>application/pdf</ContentType>"
    )
    result = read_document(xml, now=NOW)
    (attachment,) = result.package.attachments
    assert attachment.data == PDF
    assert attachment.content_type == "application/zip"
    assert result.report.codes() == {
        IssueCode.ATTACHMENT_NOT_ZIPPED,
        IssueCode.ATTACHMENT_CONTENT_TYPE_NORMALISED,
    }


def test_base64_with_line_breaks_and_without_padding_is_read(samples: dict[str, bytes]) -> None:
    """MIME-style 76-column lines and missing '=' padding are both accepted without remark."""
    encoded = base64.encodebytes(zip_bytes({"a.pdf": PDF + b"x"})).rstrip(b"=\n")
    result = read_document(with_payload(samples[STRICT], encoded), now=NOW)
    assert result.package.attachments[0].data == PDF + b"x"
    assert result.report.issues == ()


def test_iso_timestamps_with_an_offset_are_converted_to_vietnam_time(
    samples: dict[str, bytes],
) -> None:
    """2025-03-14T02:15:02Z is 2025/03/14 09:15:02 in Vietnam."""
    xml = samples[STRICT].replace(b"2025/03/14 09:15:02", b"2025-03-14T02:15:02Z")
    result = read_document(xml, now=NOW)
    (trace,) = result.package.trace.trace_headers
    assert trace.timestamp == dt.datetime(2025, 3, 14, 9, 15, 2, tzinfo=VIETNAM)
    assert [i.code for i in result.report.issues] == [IssueCode.DATE_NORMALISED]


def test_a_utf16_document_is_transcoded_and_reported(samples: dict[str, bytes]) -> None:
    """UTF-16 input reads the same as UTF-8, with one normalisation remark."""
    text = samples[STRICT].decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    result = read_edxml(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), now=NOW)
    assert result.package == read_edxml(samples[STRICT], now=NOW).package
    assert result.report.codes() == {IssueCode.ENCODING_NORMALISED}


def test_a_utf8_byte_order_mark_is_accepted_silently(samples: dict[str, bytes]) -> None:
    """Windows tools prepend a BOM; that is not worth a remark."""
    assert read_edxml(codecs.BOM_UTF8 + samples[STRICT], now=NOW).report.issues == ()


def test_unknown_elements_are_reported_as_warnings(samples: dict[str, bytes]) -> None:
    """Extensions are passed over with a warning each, never an error."""
    xml = edit(
        samples[STRICT],
        (b"<edXML:Subject>", b"<edXML:Extra>x</edXML:Extra>\n        <edXML:Subject>"),
        (
            b"</edXML:Attachment>" if False else b"</Attachment>",
            b"<Checksum>1</Checksum></Attachment>",
        ),
    )
    report = read_edxml(xml, now=NOW).report
    assert [(i.code, i.path) for i in report.issues] == [
        (IssueCode.ELEMENT_UNKNOWN, "MessageHeader/Extra"),
        (IssueCode.ELEMENT_UNKNOWN, "AttachmentEncoded/Attachment[1]/Checksum"),
    ]
    assert report.ok


def test_a_document_style_code_block_in_response_for_is_read(samples: dict[str, bytes]) -> None:
    """ResponseFor/Code written as CodeNumber/CodeNotation becomes "number/notation"."""
    xml = edit(
        samples[STATUS],
        (
            b"<edXML:Code>2491/STC-NS</edXML:Code>",
            b"<edXML:Code><edXML:CodeNumber>2491</edXML:CodeNumber>"
            b"<edXML:CodeNotation>STC-NS</edXML:CodeNotation></edXML:Code>",
        ),
    )
    result = read_edxml(xml, now=NOW)
    assert result.package == read_edxml(samples[STATUS], now=NOW).package
    assert [i.code for i in result.report.issues] == [IssueCode.CODE_NORMALISED]


def test_an_unknown_root_namespace_is_an_unsupported_version(samples: dict[str, bytes]) -> None:
    """Another QCVN edition's namespace fails with UNSUPPORTED_VERSION before any reading."""
    xml = samples[STRICT].replace(b"QCVN_102_2016", b"QCVN_102_2030")
    with pytest.raises(UnsupportedVersionError) as caught:
        read_edxml(xml, now=NOW)
    assert caught.value.reason == "UNSUPPORTED_VERSION"
    assert caught.value.namespace == "http://www.mic.gov.vn/TBT/QCVN_102_2030"


def test_a_non_edxml_document_is_refused() -> None:
    """Any other root element is a VALIDATION error."""
    with pytest.raises(EdxmlValidationError) as caught:
        read_edxml(b"<invoice/>", now=NOW)
    assert [i.code for i in caught.value.issues] == [IssueCode.NOT_EDXML]


def test_malformed_xml_is_a_validation_error_with_its_line() -> None:
    """Broken markup fails cleanly with the line number."""
    with pytest.raises(EdxmlValidationError) as caught:
        read_edxml(b"<edXML>\n<a></b>\n</edXML>", now=NOW)
    (issue,) = caught.value.issues
    assert issue.code is IssueCode.XML_MALFORMED
    assert "line 2" in issue.message


def test_reading_a_status_as_a_document_is_a_message_type_mismatch(
    samples: dict[str, bytes],
) -> None:
    """messagetype=edoc with a status package inside is refused."""
    with pytest.raises(EdxmlValidationError) as caught:
        read_document(samples[STATUS], now=NOW)
    assert [i.code for i in caught.value.issues] == [IssueCode.MESSAGE_TYPE_MISMATCH]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            base64.b64encode(zip_bytes({"a.pdf": b"1", "b.pdf": b"2"})),
            IssueCode.ATTACHMENT_ZIP_ENTRIES,
        ),
        (b"UEsDBA==@@notbase64", IssueCode.ATTACHMENT_BASE64_INVALID),
        (base64.b64encode(b"PK\x03\x04 truncated"), IssueCode.ATTACHMENT_ZIP_INVALID),
        (b"", IssueCode.REQUIRED),
    ],
    ids=["two-files", "bad-base64", "broken-zip", "empty"],
)
def test_an_unusable_payload_is_an_error_against_its_attachment(
    payload: bytes, code: IssueCode, samples: dict[str, bytes]
) -> None:
    """The package still reads; the payload's problem is an error at its path."""
    result = read_document(with_payload(samples[STRICT], payload), now=NOW)
    path = "AttachmentEncoded/Attachment[1]/ContentTransferEncoded"
    assert [(i.code, i.path) for i in result.report.errors] == [(code, path)]


_FIELD_SHAPED: bytes = (
    """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.11.H40</edXML:OrganId>
          <edXML:OrganAdd>Số 1, Nam Định</edXML:OrganAdd>
        </edXML:From>
        <edXML:To><edXML:OrganId>000.00.00.H40</edXML:OrganId></edXML:To>
        <edXML:DocumentId>5e515fca-3627-4f2e-b517-7169acdc8bda</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>77</edXML:CodeNumber>
          <edXML:CodeNotation>GW-AUTO</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Nam Định</edXML:Place>
          <edXML:PromulgationDate>2025/05/23</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:DocumentType>
          <edXML:Type>1</edXML:Type><edXML:TypeDetail>0</edXML:TypeDetail>
          <edXML:TypeName>Công văn</edXML:TypeName>
        </edXML:DocumentType>
        <edXML:Subject><![CDATA[Kiểm tra <gửi> & nhận]]></edXML:Subject>
        <edXML:SignerInfo><edXML:FullName>Gateway Auto</edXML:FullName></edXML:SignerInfo>
        <edXML:OtherInfo>
          <edXML:Priority>0</edXML:Priority>
          <edXML:Direction>False</edXML:Direction>
          <edXML:Appendixes><edXML:Appendix>Phụ lục</edXML:Appendix></edXML:Appendixes>
        </edXML:OtherInfo>
        <edXML:SteeringType>1</edXML:SteeringType>
        <edXML:ToPlaces><edXML:Place>Các sở</edXML:Place></edXML:ToPlaces>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader>
          <edXML:OrganId>null</edXML:OrganId>
          <edXML:Timestamp>2025/05/23 16:28:42</edXML:Timestamp>
        </edXML:TraceHeader>
        <edXML:TraceHeader>
          <edXML:Timestamp>2025/05/23 16:28:43</edXML:Timestamp>
        </edXML:TraceHeader>
      </edXML:TraceHeaderList>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">
        <edXML:Reference>
          <edXML:ContentId>cid:56fb5bcb</edXML:ContentId>
          <edXML:ContentType>application/pdf</edXML:ContentType>
          <edXML:AttachmentName>test.pdf</edXML:AttachmentName>
        </edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>
    <Attachment>
      <ContentId>cid:56fb5bcb</ContentId>
      <AttachmentName>test.pdf</AttachmentName>
      <ContentType>application/pdf</ContentType>
      <edXML:ContentTransferEncoded xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">"""
    "PAYLOAD</edXML:ContentTransferEncoded>\n    </Attachment>\n  </AttachmentEncoded>\n</edXML>\n"
).encode()


def test_a_package_shaped_like_real_gateway_output_reads_with_warnings_only() -> None:
    """Placeholder codes, UUID key, mislabelled zip, CDATA: accepted, reported, re-exported."""
    payload = base64.b64encode(zip_bytes({"7091b48b.pdf": PDF}))
    result = read_document(_FIELD_SHAPED.replace(b"PAYLOAD", payload), now=NOW)
    assert result.report.ok, result.report.errors
    assert {(i.code, i.path) for i in result.report.issues} == {
        (IssueCode.DOCUMENT_ID_MISMATCH, "MessageHeader/DocumentId"),
        (IssueCode.BOOLEAN_NORMALISED, "MessageHeader/OtherInfo/Direction"),
        (IssueCode.REQUIRED, "TraceHeaderList/TraceHeader[2]/OrganId"),
        (IssueCode.ORGAN_ID_NONSTANDARD, "TraceHeaderList/TraceHeader[1]/OrganId"),
        (IssueCode.BUSINESS_MISSING, "TraceHeaderList/Bussiness"),
        (IssueCode.ATTACHMENT_CONTENT_TYPE_NORMALISED, "edXMLManifest/Reference[1]/ContentType"),
        (
            IssueCode.ATTACHMENT_CONTENT_TYPE_NORMALISED,
            "AttachmentEncoded/Attachment[1]/ContentType",
        ),
    }
    package = result.package
    assert package.header.subject == "Kiểm tra <gửi> & nhận"
    assert package.header.to_places == ("Các sở",)
    assert package.attachments[0].data == PDF
    assert package.attachments[0].archive_name == "7091b48b.pdf"
    again = read_document(edxml_bytes(package, now=NOW), now=NOW)
    assert again.package == package
    assert again.report.normalisations == ()
