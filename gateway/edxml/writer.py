"""The strict edXML writer: `edXML:` prefix, the standard's spellings, yyyy/MM/dd, zip+base64."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence
from typing import IO, Final

from gateway.edxml.attachments import base64_chunks, zip_single
from gateway.edxml.dates import format_date, format_timestamp
from gateway.edxml.errors import EdxmlValidationError
from gateway.edxml.mapping import document_id_of_header, normalise
from gateway.edxml.model import (
    Business,
    BusinessDocumentInfo,
    DocumentPackage,
    EnvelopeSignature,
    MessageHeader,
    Organisation,
    OtherInfo,
    Package,
    ReplacementInfo,
    ResponseFor,
    StaffInfo,
    StatusPackage,
    TraceHeaderList,
)
from gateway.edxml.names import (
    MANIFEST_VERSION,
    NAMESPACE,
    ORGANISATION_FIELDS,
    PREFIX,
    ZIP_CONTENT_TYPE,
)
from gateway.edxml.report import Issue, IssueCode, Severity
from gateway.edxml.validation import check_document, check_status

__all__ = ["edxml_bytes", "write_edxml"]

# Characters XML 1.0 cannot carry at all, even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# \r is escaped because parsers turn a literal CR (and CRLF) into LF.
_TEXT_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)
_FLUSH_AT: Final = 64 * 1024


def edxml_bytes(package: Package, *, now: dt.datetime | None = None) -> bytes:
    """The package as strict edXML. Raises EdxmlValidationError listing every error first."""
    buffer = io.BytesIO()
    write_edxml(package, buffer, now=now)
    return buffer.getvalue()


def write_edxml(package: Package, out: IO[bytes], *, now: dt.datetime | None = None) -> None:
    """Stream the package to `out` as strict edXML; identical packages give identical bytes.

    The package is validated first (the reader's rules; `now` is the clock for future dates):
    nothing is written when it has errors.
    """
    if isinstance(package, DocumentPackage):
        issues = check_document(package, now=now)
    else:
        issues = check_status(package, now=now)
    errors = [issue for issue in issues if issue.severity is Severity.ERROR]
    if errors:
        raise EdxmlValidationError(errors)
    emitter = _Emitter(out)
    emitter.line(0, '<?xml version="1.0" encoding="UTF-8"?>')
    emitter.line(0, f'<edXML xmlns="{NAMESPACE}">')
    emitter.line(1, f'<{PREFIX}:edXMLEnvelope xmlns:{PREFIX}="{NAMESPACE}">')
    signature = package.signature
    declarations = "" if signature is None else _declarations(signature)
    emitter.line(2, f"<{PREFIX}:edXMLHeader{declarations}>")
    if isinstance(package, DocumentPackage):
        _message_header(emitter, package.header)
        _trace(emitter, package.trace)
    else:
        _status_header(emitter, package)
    if signature is not None:
        emitter.raw(3, signature.raw)
    emitter.close(2, "edXMLHeader")
    if isinstance(package, DocumentPackage):
        _body(emitter, package)
    emitter.close(1, "edXMLEnvelope")
    if isinstance(package, DocumentPackage) and package.attachments:
        _attachments(emitter, package)
    emitter.line(0, "</edXML>")
    emitter.flush()


def _declarations(signature: EnvelopeSignature) -> str:
    parts = []
    for prefix, uri in signature.namespaces:
        name = f"xmlns:{prefix}" if prefix else "xmlns"
        parts.append(f' {name}="{uri.translate(_ATTRIBUTE_ESCAPES)}"')
    return "".join(parts)


def _clean(value: str, path: str) -> str:
    """NFC, trimmed, escaped: the strict form the reader reads back without a remark."""
    text = normalise(value)
    bad = _NOT_XML.search(text)
    if bad is not None:
        issue = Issue(
            IssueCode.INVALID_CHARACTER,
            path,
            Severity.ERROR,
            f"U+{ord(bad.group()):04X} cannot be written in XML",
        )
        raise EdxmlValidationError((issue,))
    return text.translate(_TEXT_ESCAPES)


class _Emitter:
    """Indented lines, buffered and written out in pieces (attachments stream straight through)."""

    def __init__(self, out: IO[bytes], *, prefixed: bool = True) -> None:
        self._out = out
        self._parts: list[str] = []
        self._size = 0
        self.prefixed = prefixed

    def name(self, local: str) -> str:
        return f"{PREFIX}:{local}" if self.prefixed else local

    def line(self, depth: int, text: str) -> None:
        self._parts.append("  " * depth + text + "\n")
        self._size += len(text)
        if self._size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._out.write("".join(self._parts).encode("utf-8"))
            self._parts = []
            self._size = 0

    def raw(self, depth: int, data: bytes) -> None:
        self.flush()
        self._out.write(("  " * depth).encode("ascii") + data + b"\n")

    def chunks(self, depth: int, local: str, pieces: Iterable[bytes]) -> None:
        name = self.name(local)
        self.flush()
        self._out.write(f"{'  ' * depth}<{name}>".encode())
        for piece in pieces:
            self._out.write(piece)
        self._out.write(f"</{name}>\n".encode())

    def leaf(self, depth: int, local: str, value: str, path: str = "") -> None:
        name = self.name(local)
        text = _clean(value, path or local)
        self.line(depth, f"<{name}>{text}</{name}>" if text else f"<{name}/>")

    def open(self, depth: int, local: str, attributes: str = "") -> None:
        self.line(depth, f"<{self.name(local)}{attributes}>")

    def close(self, depth: int, local: str) -> None:
        self.line(depth, f"</{self.name(local)}>")

    def empty(self, depth: int, local: str, attributes: str = "") -> None:
        self.line(depth, f"<{self.name(local)}{attributes}/>")


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _date(value: dt.date | None) -> str:
    return "" if value is None else format_date(value)


def _organisation(
    out: _Emitter, depth: int, local: str, org: Organisation, *, complete: bool
) -> None:
    """`complete` writes every child, empty ones too (document packages, as the sample does)."""
    out.open(depth, local)
    for name, attribute in ORGANISATION_FIELDS:
        value: str = getattr(org, attribute)
        if complete or name == "OrganId" or value:
            out.leaf(depth + 1, name, value, f"{local}/{name}")
    out.close(depth, local)


def _message_header(out: _Emitter, header: MessageHeader) -> None:
    out.open(3, "MessageHeader")
    _organisation(out, 4, "From", header.sender, complete=True)
    for recipient in header.recipients:
        _organisation(out, 4, "To", recipient, complete=True)
    out.leaf(4, "DocumentId", header.document_id or document_id_of_header(header) or "")
    out.open(4, "Code")
    out.leaf(5, "CodeNumber", header.code.number)
    out.leaf(5, "CodeNotation", header.code.notation)
    out.close(4, "Code")
    out.open(4, "PromulgationInfo")
    out.leaf(5, "Place", header.promulgation.place)
    out.leaf(5, "PromulgationDate", _date(header.promulgation.date))
    out.close(4, "PromulgationInfo")
    kind = header.document_type
    out.open(4, "DocumentType")
    out.leaf(5, "Type", _number(kind.type_code))
    if kind.type_detail is not None:
        out.leaf(5, "TypeDetail", str(kind.type_detail))
    out.leaf(5, "TypeName", kind.type_name)
    out.close(4, "DocumentType")
    out.leaf(4, "Subject", header.subject)
    out.leaf(4, "Content", header.content)
    if header.signer is not None:
        out.open(4, "SignerInfo")
        out.leaf(5, "Competence", header.signer.competence)
        out.leaf(5, "Position", header.signer.position)
        out.leaf(5, "FullName", header.signer.full_name)
        out.close(4, "SignerInfo")
    out.leaf(4, "DueDate", _date(header.due_date))
    if header.to_places:
        out.open(4, "ToPlaces")
        for place in header.to_places:
            out.leaf(5, "Place", place)
        out.close(4, "ToPlaces")
    if header.other_info is not None:
        _other_info(out, header.other_info)
    for response in header.response_for:
        _response_for(out, 4, response)
    if header.steering_type is not None:
        out.leaf(4, "SteeringType", str(header.steering_type))
    out.close(3, "MessageHeader")


def _other_info(out: _Emitter, other: OtherInfo) -> None:
    out.open(4, "OtherInfo")
    if other.priority is not None:
        out.leaf(5, "Priority", str(other.priority))
    out.leaf(5, "SphereOfPromulgation", other.sphere_of_promulgation)
    out.leaf(5, "TyperNotation", other.typer_notation)
    if other.promulgation_amount is not None:
        out.leaf(5, "PromulgationAmount", str(other.promulgation_amount))
    if other.page_amount is not None:
        out.leaf(5, "PageAmount", str(other.page_amount))
    if other.direction is not None:
        out.leaf(5, "Direction", "true" if other.direction else "false")
    if other.appendixes:
        out.open(5, "Appendixes")
        for appendix in other.appendixes:
            out.leaf(6, "Appendix", appendix)
        out.close(5, "Appendixes")
    else:
        out.empty(5, "Appendixes")
    out.close(4, "OtherInfo")


def _response_for(out: _Emitter, depth: int, response: ResponseFor) -> None:
    out.open(depth, "ResponseFor")
    out.leaf(depth + 1, "OrganId", response.organ_id)
    out.leaf(depth + 1, "Code", response.code)
    out.leaf(depth + 1, "PromulgationDate", _date(response.promulgation_date))
    out.leaf(depth + 1, "DocumentId", response.document_id)
    out.close(depth, "ResponseFor")


def _staff(out: _Emitter, depth: int, staff: StaffInfo, *, status: bool) -> None:
    out.open(depth, "StaffInfo")
    out.leaf(depth + 1, "Department", staff.department)
    out.leaf(depth + 1, "Staff", staff.staff)
    # The two kinds of package order these differently in the field; each keeps its own.
    contacts = (("Mobile", staff.mobile), ("Email", staff.email))
    for name, value in contacts if status else reversed(contacts):
        out.leaf(depth + 1, name, value)
    out.close(depth, "StaffInfo")


def _trace(out: _Emitter, trace: TraceHeaderList) -> None:
    if not trace.trace_headers and trace.business is None:
        out.empty(3, "TraceHeaderList")
        return
    out.open(3, "TraceHeaderList")
    for header in trace.trace_headers:
        out.open(4, "TraceHeader")
        out.leaf(5, "OrganId", header.organ_id)
        if header.timestamp is not None:
            out.leaf(5, "Timestamp", format_timestamp(header.timestamp))
        out.close(4, "TraceHeader")
    if trace.business is not None:
        _business(out, trace.business)
    out.close(3, "TraceHeaderList")


def _business(out: _Emitter, business: Business) -> None:
    # The standard's spelling, always: the national axis rejects "Business…".
    out.open(4, "Bussiness")
    if business.document_id:
        out.leaf(5, "DocumentId", business.document_id)
    out.leaf(5, "BussinessDocType", _number(business.doc_type))
    out.leaf(5, "BussinessDocReason", business.reason)
    if business.document_info is not None:
        _business_document_info(out, business.document_info)
    if business.paper is not None:
        out.leaf(5, "Paper", str(business.paper))
    if business.staff is not None:
        _staff(out, 5, business.staff, status=False)
    if business.replacements:
        _replacements(out, business.replacements)
    out.close(4, "Bussiness")


def _business_document_info(out: _Emitter, info: BusinessDocumentInfo) -> None:
    out.open(5, "BussinessDocumentInfo")
    for name, flag in (
        ("DocumentInfo", info.document_info),
        ("DocumentReceiver", info.document_receiver),
    ):
        if flag is not None:
            out.leaf(6, name, "1" if flag else "0")
    if info.receivers:
        out.open(6, "ReceiverList")
        for receiver in info.receivers:
            out.open(7, "Receiver")
            out.leaf(8, "OrganId", receiver.organ_id)
            if receiver.receiver_type is not None:
                out.leaf(8, "ReceiverType", str(receiver.receiver_type))
            out.close(7, "Receiver")
        out.close(6, "ReceiverList")
    out.close(5, "BussinessDocumentInfo")


def _replacements(out: _Emitter, replacements: Sequence[ReplacementInfo]) -> None:
    out.open(5, "ReplacementInfoList")
    for replacement in replacements:
        out.open(6, "ReplacementInfo")
        out.leaf(7, "DocumentId", replacement.document_id)
        out.open(7, "OrganIdList")
        for organ_id in replacement.organ_ids:
            out.leaf(8, "OrganId", organ_id)
        out.close(7, "OrganIdList")
        out.close(6, "ReplacementInfo")
    out.close(5, "ReplacementInfoList")


def _status_header(out: _Emitter, package: StatusPackage) -> None:
    out.open(3, "MessageHeader")
    _organisation(out, 4, "From", package.sender, complete=False)
    if package.response_for is not None:
        _response_for(out, 4, package.response_for)
    if package.staff is not None:
        _staff(out, 4, package.staff, status=True)
    out.leaf(4, "StatusCode", package.status_code)
    out.leaf(4, "Description", package.description)
    if package.timestamp is not None:
        out.leaf(4, "Timestamp", format_timestamp(package.timestamp))
    out.close(3, "MessageHeader")


def _body(out: _Emitter, package: DocumentPackage) -> None:
    out.open(2, "edXMLBody")
    version = f' version="{MANIFEST_VERSION}"'
    if not package.references:
        out.empty(3, "edXMLManifest", version)
    else:
        out.open(3, "edXMLManifest", version)
        for reference in package.references:
            out.open(4, "Reference")
            out.leaf(5, "ContentId", reference.content_id)
            out.leaf(5, "ContentType", reference.content_type)
            out.leaf(5, "Description", reference.description)
            out.leaf(5, "AttachmentName", reference.attachment_name)
            out.close(4, "Reference")
        out.close(3, "edXMLManifest")
    out.close(2, "edXMLBody")


def _attachments(out: _Emitter, package: DocumentPackage) -> None:
    # Outside the envelope, in the default namespace, without prefix (as the official sample).
    out.prefixed = False
    out.open(1, "AttachmentEncoded")
    for attachment in package.attachments:
        out.open(2, "Attachment")
        out.leaf(3, "ContentId", attachment.content_id)
        out.leaf(3, "AttachmentName", attachment.name)
        out.leaf(3, "Description", attachment.description)
        out.leaf(3, "ContentType", ZIP_CONTENT_TYPE)
        archive = zip_single(normalise(attachment.archive_name or attachment.name), attachment.data)
        out.chunks(3, "ContentTransferEncoded", base64_chunks(archive))
        out.close(2, "Attachment")
    out.close(1, "AttachmentEncoded")
    out.prefixed = True
