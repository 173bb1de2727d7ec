"""Between edXML package models and the plain values docaxis protos carry (no grpc, no services)."""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from docaxis.common.v1 import common_pb2

from docaxis_client.trust.document import (
    DocumentIdError,
    DocumentIdParts,
    document_id_of,
    normalise,
    parse_document_id,
)
from gateway.edxml.dates import VIETNAM
from gateway.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    DocumentCode,
    DocumentPackage,
    DocumentType,
    MessageHeader,
    Organisation,
    OtherInfo,
    PromulgationInfo,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
    TraceHeaderList,
    reference_for,
)

__all__ = [
    "DocumentIdError",
    "DocumentIdParts",
    "StatusValues",
    "affected_document_ids",
    "attachment_ref",
    "business_type_from_proto",
    "business_type_to_proto",
    "compose_document_id",
    "date_from_iso",
    "document_header",
    "document_id_of_header",
    "document_package",
    "iso_date",
    "media_type_for",
    "normalise",
    "parse_document_id",
    "priority_from_proto",
    "priority_to_proto",
    "status_package",
    "status_values",
]

# Office formats are missing from the standard library's built-in table, and the system table
# differs between machines: a fixed table keeps the mapping deterministic.
_MEDIA_TYPES: Final[dict[str, str]] = {
    ".pdf": "application/pdf",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ppt": "application/vnd.ms-powerpoint",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".rtf": "application/rtf",
    ".txt": "text/plain",
    ".xml": "application/xml",
    ".zip": "application/zip",
    ".rar": "application/vnd.rar",
    ".7z": "application/x-7z-compressed",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
_OCTET_STREAM: Final = "application/octet-stream"


def compose_document_id(sender: str, promulgation_date: dt.date, number: str, notation: str) -> str:
    """`<sender>,<yyyy/MM/dd>,<number>/<notation>`, NFC: the global key (domain.md §3).

    The client library's function, so the key a DMS signs is the one the hub routes by.
    """
    return document_id_of(sender, promulgation_date, number, notation)


def document_id_of_header(header: MessageHeader) -> str | None:
    """The DocumentId the header's From, date and Code make, or None when one is missing."""
    if not (header.sender.organ_id and header.promulgation.date and header.code.number):
        return None
    return compose_document_id(
        header.sender.organ_id,
        header.promulgation.date,
        header.code.number,
        header.code.notation,
    )


def business_type_to_proto(value: BusinessDocType) -> common_pb2.BusinessType.ValueType:
    """Wire 0..3 to BUSINESS_TYPE_NEW..REPLACE (the proto keeps zero for "not given")."""
    return common_pb2.BusinessType.ValueType(int(value) + 1)


def business_type_from_proto(value: int) -> BusinessDocType:
    if value == common_pb2.BUSINESS_TYPE_UNSPECIFIED:
        raise ValueError("business type not given")
    return BusinessDocType(value - 1)


def priority_to_proto(value: int | None) -> common_pb2.Priority.ValueType:
    """Wire 0..4 to PRIORITY_NORMAL..TIMED_EXPRESS; None to PRIORITY_UNSPECIFIED."""
    if value is None:
        return common_pb2.PRIORITY_UNSPECIFIED
    if not 0 <= value <= 4:
        raise ValueError(f"priority {value} not in 0..4")
    return common_pb2.Priority.ValueType(value + 1)


def priority_from_proto(value: int) -> int | None:
    if value == common_pb2.PRIORITY_UNSPECIFIED:
        return None
    if not common_pb2.PRIORITY_NORMAL <= value <= common_pb2.PRIORITY_TIMED_EXPRESS:
        raise ValueError(f"unknown priority {value}")
    return value - 1


def iso_date(value: dt.date | None) -> str:
    """`YYYY-MM-DD`, or "" for none (proto3 strings have no null)."""
    return value.isoformat() if value is not None else ""


def date_from_iso(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(normalise(value))
    return tuple(seen)


def affected_document_ids(package: DocumentPackage) -> tuple[str, ...]:
    """The DocumentIds the package answers or acts on (DocumentHeader.response_for).

    A new document answers its `ResponseFor`s. A recall, update or replacement acts on
    `Bussiness/DocumentId`, the `ResponseFor`s and the replaced documents; a recall that names
    none acts on its own DocumentId (it reuses the original's, domain.md §5).
    """
    replies = [response.document_id for response in package.header.response_for]
    business = package.trace.business
    kind = package.business_type
    if kind is BusinessDocType.NEW or business is None:
        return _unique(replies)
    targets = _unique(
        [
            business.document_id,
            *replies,
            *(replacement.document_id for replacement in business.replacements),
        ]
    )
    if not targets and kind is BusinessDocType.REVOKE:
        own = package.header.document_id or document_id_of_header(package.header)
        return _unique([own or ""])
    return targets


def document_header(package: DocumentPackage) -> common_pb2.DocumentHeader:
    """The DocumentHeader a package submits (the gateway then adds attachments and signatures)."""
    header = package.header
    signer = header.signer
    return common_pb2.DocumentHeader(
        sender=header.sender.organ_id,
        recipients=[recipient.organ_id for recipient in header.recipients],
        code=common_pb2.DocumentCode(number=header.code.number, notation=header.code.notation),
        promulgation_place=header.promulgation.place,
        promulgation_date=iso_date(header.promulgation.date),
        document_type=header.document_type.type_code or 0,
        type_name=header.document_type.type_name,
        subject=header.subject,
        content=header.content,
        signer=(
            common_pb2.Signer(
                competence=signer.competence,
                position=signer.position,
                full_name=signer.full_name,
            )
            if signer is not None
            else None
        ),
        due_date=iso_date(header.due_date),
        priority=priority_to_proto(
            header.other_info.priority if header.other_info is not None else None
        ),
        business_type=business_type_to_proto(package.business_type),
        response_for=affected_document_ids(package),
        # Output only in docaxis; when set it must equal the composed key, so send that one.
        document_id=document_id_of_header(header) or "",
        to_places=header.to_places,
    )


def media_type_for(name: str) -> str:
    """The media type of the file inside the zip, from its name (the wire only says zip)."""
    extension = posixpath.splitext(name.replace("\\", "/"))[1].lower()
    return _MEDIA_TYPES.get(extension, _OCTET_STREAM)


def attachment_ref(attachment: Attachment) -> common_pb2.AttachmentRef:
    return common_pb2.AttachmentRef(
        name=attachment.name,
        media_type=media_type_for(attachment.name),
        size=attachment.size,
        sha256=attachment.sha256,
        description=attachment.description,
    )


def document_package(
    header: common_pb2.DocumentHeader,
    attachments: Iterable[Attachment] = (),
    *,
    sent_at: dt.datetime,
    organisations: Mapping[str, Organisation] | None = None,
    staff: StaffInfo | None = None,
    reason: str = "",
    document_type_detail: int | None = 0,
    hops: Sequence[tuple[str, dt.datetime]] = (),
) -> DocumentPackage:
    """A docaxis document as an edXML package, ready for the strict writer.

    `organisations` supplies the names and contact lines the header does not carry, keyed by
    agency code; unknown agencies go out with their code only. The trace is the sender's
    TraceHeader at `sent_at`, then one per hub in `hops` (hub code, when it took the document
    over), oldest first: every system that handled the package (domain.md §2.2).
    """
    known = organisations or {}

    def organisation(code: str) -> Organisation:
        return known.get(code) or Organisation(organ_id=code)

    kind = business_type_from_proto(header.business_type)
    targets = list(header.response_for)
    promulgation = date_from_iso(header.promulgation_date)
    document_id = header.document_id
    if not document_id and promulgation is not None:
        document_id = compose_document_id(
            header.sender, promulgation, header.code.number, header.code.notation
        )
    signer = (
        SignerInfo(
            competence=header.signer.competence,
            position=header.signer.position,
            full_name=header.signer.full_name,
        )
        if header.HasField("signer")
        else None
    )
    message = MessageHeader(
        sender=organisation(header.sender),
        recipients=tuple(organisation(code) for code in header.recipients),
        code=DocumentCode(header.code.number, header.code.notation),
        promulgation=PromulgationInfo(header.promulgation_place, promulgation),
        document_type=DocumentType(header.document_type, document_type_detail, header.type_name),
        subject=header.subject,
        content=header.content,
        signer=signer,
        due_date=date_from_iso(header.due_date),
        to_places=tuple(header.to_places),
        other_info=OtherInfo(priority=priority_from_proto(header.priority)),
        # A reply's originals; for the business operations the Bussiness block names them.
        response_for=(
            tuple(_response_for(target) for target in targets)
            if kind is BusinessDocType.NEW
            else ()
        ),
        steering_type=0,
        document_id=document_id,
    )
    business = Business(
        doc_type=kind,
        reason=reason or _DEFAULT_REASONS[kind],
        document_id=targets[0] if kind in _SINGLE_TARGET and targets else "",
        paper=0,
        staff=staff,
        document_info=(
            BusinessDocumentInfo(document_info=True, document_receiver=False)
            if kind is BusinessDocType.UPDATE
            else None
        ),
        replacements=(
            tuple(ReplacementInfo(target, tuple(header.recipients)) for target in targets)
            if kind is BusinessDocType.REPLACE
            else ()
        ),
    )
    files = tuple(attachments)
    return DocumentPackage(
        header=message,
        trace=TraceHeaderList(
            trace_headers=(
                TraceHeader(header.sender, sent_at.astimezone(VIETNAM)),
                *(TraceHeader(hub, at.astimezone(VIETNAM)) for hub, at in hops),
            ),
            business=business,
        ),
        references=tuple(reference_for(attachment) for attachment in files),
        attachments=files,
    )


_SINGLE_TARGET: Final = frozenset({BusinessDocType.REVOKE, BusinessDocType.UPDATE})
# The wording the official SDK and DMSs put in BussinessDocReason when a user gives none.
_DEFAULT_REASONS: Final[dict[BusinessDocType, str]] = {
    BusinessDocType.NEW: "Văn bản điện tử mới",
    BusinessDocType.REVOKE: "Thu hồi văn bản điện tử",
    BusinessDocType.UPDATE: "Cập nhật văn bản điện tử",
    BusinessDocType.REPLACE: "Thay thế văn bản điện tử",
}


def _response_for(document_id: str) -> ResponseFor:
    try:
        parts = parse_document_id(document_id)
    except DocumentIdError:
        return ResponseFor(document_id=document_id)
    return ResponseFor(
        organ_id=parts.sender,
        code=parts.code,
        promulgation_date=parts.promulgation_date,
        document_id=normalise(document_id),
    )


@dataclass(frozen=True, slots=True)
class StatusValues:
    """What a status package says, as the tracking side stores it."""

    document_id: str
    original_sender: str
    reporter: str
    status_code: str
    description: str
    # ISO 8601 with the Vietnam offset, e.g. 2025-03-15T08:01:44+07:00; "" when absent.
    reported_at: str


def status_values(package: StatusPackage) -> StatusValues:
    response = package.response_for or ResponseFor()
    return StatusValues(
        document_id=normalise(response.document_id),
        original_sender=response.organ_id,
        reporter=package.sender.organ_id,
        status_code=package.status_code,
        description=package.description,
        reported_at=package.timestamp.isoformat() if package.timestamp is not None else "",
    )


def status_package(
    *,
    reporter: Organisation,
    document_id: str,
    status_code: str,
    description: str,
    at: dt.datetime,
    staff: StaffInfo | None = None,
) -> StatusPackage:
    """A status about `document_id` (ResponseFor filled from the key), for the strict writer."""
    return StatusPackage(
        sender=reporter,
        response_for=_response_for(document_id),
        staff=staff,
        status_code=status_code,
        description=description,
        timestamp=at.astimezone(VIETNAM),
    )
