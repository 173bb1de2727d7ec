"""A typed in-memory edXML package (QCVN 102:2016): document packages and status packages."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

from gateway.edxml.names import ZIP_CONTENT_TYPE

# Text fields hold "" when absent or empty: the wire does not tell the two apart reliably, and the
# strict writer emits the standard's empty element for them. Optional numbers, dates and blocks
# use None so that "not given" survives a round trip.


class BusinessDocType(enum.IntEnum):
    """`Bussiness/BussinessDocType`, as on the wire (domain.md §5)."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class PackageKind(enum.StrEnum):
    """The national axis's `messagetype`."""

    DOCUMENT = "edoc"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Organisation:
    """`From` or `To`: an agency and its contact lines."""

    organ_id: str = ""
    organization_in_charge: str = ""
    organ_name: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class DocumentCode:
    """`Code`: number and notation ("số, ký hiệu"), e.g. 7816 / VPCP-TTĐT."""

    number: str = ""
    notation: str = ""


@dataclass(frozen=True, slots=True)
class PromulgationInfo:
    place: str = ""
    date: dt.date | None = None


@dataclass(frozen=True, slots=True)
class DocumentType:
    type_code: int | None = None
    type_detail: int | None = None
    type_name: str = ""


@dataclass(frozen=True, slots=True)
class SignerInfo:
    competence: str = ""
    position: str = ""
    full_name: str = ""


@dataclass(frozen=True, slots=True)
class OtherInfo:
    # 0..4 on the wire (normal .. timed express, uncertain naming).
    priority: int | None = None
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    """The document a reply, recall or status acts on. `code` is "number/notation"."""

    organ_id: str = ""
    code: str = ""
    promulgation_date: dt.date | None = None
    document_id: str = ""


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """`MessageHeader` of a document package (QCVN 102 §1.1–1.14)."""

    sender: Organisation = field(default_factory=Organisation)
    recipients: tuple[Organisation, ...] = ()
    code: DocumentCode = field(default_factory=DocumentCode)
    promulgation: PromulgationInfo = field(default_factory=PromulgationInfo)
    document_type: DocumentType = field(default_factory=DocumentType)
    subject: str = ""
    content: str = ""
    signer: SignerInfo | None = None
    due_date: dt.date | None = None
    to_places: tuple[str, ...] = ()
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int | None = None
    document_id: str = ""


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """One system that handled the package; the sender adds the first."""

    organ_id: str = ""
    # Aware, in Vietnam time (the wire has no zone; domain.md §2.1).
    timestamp: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class Receiver:
    """An update's affected recipient; `receiver_type` 0/1 (removed/added, uncertain)."""

    organ_id: str = ""
    receiver_type: int | None = None


@dataclass(frozen=True, slots=True)
class BusinessDocumentInfo:
    """What an update changes: metadata (`DocumentInfo`) and/or recipients (`DocumentReceiver`)."""

    document_info: bool | None = None
    document_receiver: bool | None = None
    receivers: tuple[Receiver, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplacementInfo:
    """A replaced document and the agencies it had been sent to."""

    document_id: str = ""
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Business:
    """`Bussiness`: what kind of package this is and which original it affects."""

    # None only when the wire value was unusable (reported as an error).
    doc_type: BusinessDocType | None = BusinessDocType.NEW
    reason: str = ""
    # The affected original (revoke, update).
    document_id: str = ""
    paper: int | None = None
    staff: StaffInfo | None = None
    document_info: BusinessDocumentInfo | None = None
    replacements: tuple[ReplacementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceHeaderList:
    trace_headers: tuple[TraceHeader, ...] = ()
    business: Business | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeSignature:
    """The envelope's XML-DSig element exactly as received (domain.md §7: never enforced, kept).

    `raw` runs from the start tag's `<` to the end tag's `>`. `namespaces` lists the in-scope
    declarations (prefix, uri; "" is the default namespace) that `raw` relies on and that differ
    from what the writer declares anyway, so the bytes mean the same thing when written back.
    """

    raw: bytes
    namespaces: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest entry (`edXMLManifest/Reference`)."""

    content_id: str = ""
    content_type: str = ZIP_CONTENT_TYPE
    description: str = ""
    attachment_name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment with its bytes decompressed: the writer zips and base64-encodes them."""

    content_id: str
    name: str
    data: bytes = field(repr=False)
    description: str = ""
    content_type: str = ZIP_CONTENT_TYPE
    # The file name inside the zip when it differs from `name` ("" = same).
    archive_name: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def bare_content_id(content_id: str) -> str:
    """`cid:1`, `<1>` and `1` name the same attachment (the manifest and body disagree)."""
    value = content_id.strip()
    if value[:4].lower() == "cid:":
        value = value[4:]
    return value.strip().removeprefix("<").removesuffix(">")


def reference_for(attachment: Attachment) -> Reference:
    """The manifest entry a strict sender writes for `attachment`."""
    return Reference(
        content_id=f"cid:{bare_content_id(attachment.content_id)}",
        content_type=ZIP_CONTENT_TYPE,
        description=attachment.description,
        attachment_name=attachment.name,
    )


@dataclass(frozen=True, slots=True)
class DocumentPackage:
    """A document package: header, trace, optional envelope signature, manifest, attachments."""

    header: MessageHeader = field(default_factory=MessageHeader)
    trace: TraceHeaderList = field(default_factory=TraceHeaderList)
    signature: EnvelopeSignature | None = None
    references: tuple[Reference, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    kind: ClassVar[PackageKind] = PackageKind.DOCUMENT

    @property
    def business_type(self) -> BusinessDocType:
        """The package's operation; a package without a business block is a new document."""
        business = self.trace.business
        if business is None or business.doc_type is None:
            return BusinessDocType.NEW
        return business.doc_type


@dataclass(frozen=True, slots=True)
class StatusPackage:
    """A status (feedback) package: no body, one `ResponseFor` (domain.md §4)."""

    sender: Organisation = field(default_factory=Organisation)
    response_for: ResponseFor | None = None
    staff: StaffInfo | None = None
    # Two-digit string on the wire ("01" arrived .. "16" retrieve refused).
    status_code: str = ""
    description: str = ""
    timestamp: dt.datetime | None = None
    signature: EnvelopeSignature | None = None

    kind: ClassVar[PackageKind] = PackageKind.STATUS


Package = DocumentPackage | StatusPackage
