"""The strict writer: prefix, spellings, date forms, zip+base64, and refusal of bad packages."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import re
import unicodedata
import zipfile

import pytest

from gateway.edxml import (
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    EdxmlValidationError,
    IssueCode,
    Receiver,
    ReplacementInfo,
    TraceHeader,
    TraceHeaderList,
    edxml_bytes,
    read_document,
    write_edxml,
)
from gateway.edxml.names import NAMESPACE, SIGNATURE_NAMES
from gateway.edxml.safe_xml import Node, XmlLimits, parse
from tests.unit.edxml.builders import NOW, ORIGINAL_ID, PDF, a_document, a_status


def _walk(node: Node) -> list[Node]:
    found = [node]
    for child in node.children:
        if child.local not in SIGNATURE_NAMES:
            found += _walk(child)
    return found


def _update() -> Business:
    return Business(
        doc_type=BusinessDocType.UPDATE,
        reason="Cập nhật văn bản điện tử",
        document_id=ORIGINAL_ID,
        paper=0,
        document_info=BusinessDocumentInfo(
            document_info=True,
            document_receiver=True,
            receivers=(Receiver("000.00.13.H40", 1), Receiver("000.00.12.H40", 0)),
        ),
    )


def _replace() -> Business:
    return Business(
        doc_type=BusinessDocType.REPLACE,
        reason="Thay thế văn bản điện tử",
        paper=1,
        replacements=(ReplacementInfo(ORIGINAL_ID, ("000.00.00.H40", "000.00.12.H40")),),
    )


def test_every_element_inside_the_envelope_carries_the_edxml_prefix() -> None:
    """The national axis's parser needs `edXML:` on the envelope and everything in it."""
    written = edxml_bytes(a_document(business=_update()), now=NOW)
    root = parse(written, limits=XmlLimits()).root
    assert (root.local, root.prefix, root.namespace) == ("edXML", None, NAMESPACE)
    envelope, attachments = root.children
    inside = _walk(envelope)
    assert len(inside) > 80
    assert {(node.prefix, node.namespace) for node in inside} == {("edXML", NAMESPACE)}
    outside = _walk(attachments)
    assert {(node.prefix, node.namespace) for node in outside} == {(None, NAMESPACE)}


@pytest.mark.parametrize("business", [_update(), _replace()], ids=["update", "replace"])
def test_the_standard_s_misspelt_names_are_written_and_never_corrected(
    business: Business,
) -> None:
    """`Bussiness…` as the standard spells it; `Business…` never appears."""
    written = edxml_bytes(a_document(business=business), now=NOW)
    assert b"<edXML:Bussiness>" in written
    assert b"<edXML:BussinessDocType>" in written
    assert b"<edXML:BussinessDocReason>" in written
    assert b"Business" not in written
    if business.doc_type is BusinessDocType.UPDATE:
        assert b"<edXML:BussinessDocumentInfo>" in written
        assert b"<edXML:ReceiverType>1</edXML:ReceiverType>" in written
    else:
        assert b"<edXML:ReplacementInfoList>" in written
        assert b"<edXML:OrganIdList>" in written


@pytest.mark.parametrize("business", [_update(), _replace()], ids=["update", "replace"])
def test_update_and_replace_packages_round_trip(business: Business) -> None:
    """The business blocks of §5 are read back into an equal model with an empty report."""
    package = a_document(business=business)
    result = read_document(edxml_bytes(package, now=NOW), now=NOW)
    assert result.package == package
    assert result.report.issues == ()


def test_dates_are_yyyy_mm_dd_and_timestamps_are_vietnam_time() -> None:
    """PromulgationDate and DueDate as yyyy/MM/dd; a UTC timestamp is written as UTC+7."""
    utc = dt.datetime(2025, 3, 14, 2, 15, 2, tzinfo=dt.UTC)
    package = a_document()
    package = dataclasses.replace(
        package, trace=TraceHeaderList((TraceHeader("000.00.11.H40", utc),), package.trace.business)
    )
    written = edxml_bytes(package, now=NOW).decode()
    assert "<edXML:PromulgationDate>2025/03/14</edXML:PromulgationDate>" in written
    assert "<edXML:DueDate>2025/03/31</edXML:DueDate>" in written
    assert "<edXML:Timestamp>2025/03/14 09:15:02</edXML:Timestamp>" in written
    for value in re.findall(r"<edXML:\w*Date>([^<]*)<", written):
        assert re.fullmatch(r"[0-9]{4}/[0-9]{2}/[0-9]{2}", value)


def test_attachments_are_zipped_then_base64_encoded() -> None:
    """ContentType application/zip, payload starting UEsDB, one entry holding the bytes."""
    written = edxml_bytes(a_document(), now=NOW).decode()
    assert "<ContentType>application/zip</ContentType>" in written
    (payload,) = re.findall(r"<ContentTransferEncoded>([^<]*)</ContentTransferEncoded>", written)
    assert payload.startswith("UEsDB")
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload))) as archive:
        (entry,) = archive.infolist()
        assert entry.filename == "2491-STC-NS.pdf"
        assert entry.compress_type == zipfile.ZIP_DEFLATED
        assert archive.read(entry) == PDF


def test_the_status_layout_follows_the_status_sample() -> None:
    """A status has no body and no attachments, and its From lists only given fields."""
    written = edxml_bytes(a_status(), now=NOW).decode()
    assert "edXMLBody" not in written
    assert "AttachmentEncoded" not in written
    assert "<edXML:Code>2491/STC-NS</edXML:Code>" in written
    assert "<edXML:StatusCode>03</edXML:StatusCode>" in written
    assert "<edXML:OrganAdd" not in written


def test_text_is_written_nfc_and_escaped() -> None:
    """Decomposed Vietnamese is written precomposed; markup characters and CR are escaped."""
    package = a_document()
    decomposed = unicodedata.normalize("NFD", "Về việc <kiểm tra> & báo cáo")
    package = dataclasses.replace(
        package, header=dataclasses.replace(package.header, subject=decomposed)
    )
    written = edxml_bytes(package, now=NOW).decode()
    expected = unicodedata.normalize("NFC", "Về việc &lt;kiểm tra&gt; &amp; báo cáo")
    assert f"<edXML:Subject>{expected}</edXML:Subject>" in written
    assert "Hướng dẫn quyết toán&#13;\nngân sách" in written


def test_the_writer_refuses_a_package_with_errors_and_lists_them_all() -> None:
    """No recipient and a future date: both are reported, and nothing is written."""
    package = a_document()
    header = dataclasses.replace(
        package.header,
        recipients=(),
        promulgation=dataclasses.replace(package.header.promulgation, date=dt.date(2025, 6, 2)),
    )
    out = io.BytesIO()
    with pytest.raises(EdxmlValidationError) as caught:
        write_edxml(dataclasses.replace(package, header=header), out, now=NOW)
    assert caught.value.reason == "VALIDATION"
    assert {issue.code for issue in caught.value.issues} == {
        IssueCode.RECIPIENT_MISSING,
        IssueCode.DATE_IN_FUTURE,
    }
    assert out.getvalue() == b""


def test_the_writer_refuses_characters_xml_cannot_carry() -> None:
    """A control character in a field is an error, not silently dropped."""
    package = a_document()
    header = dataclasses.replace(package.header, content="bad \x07 bell")
    with pytest.raises(EdxmlValidationError) as caught:
        edxml_bytes(dataclasses.replace(package, header=header), now=NOW)
    assert [issue.code for issue in caught.value.issues] == [IssueCode.INVALID_CHARACTER]
