"""Documents, attachments, signatures and per-recipient deliveries."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from docaxis_client.trust.document import (
    AttachmentFields,
    build_manifest,
    normalise,
    parse_document_id,
)
from docaxis_client.trust.document import document_id_of as _document_id_of
from docaxis_client.trust.manifest import Manifest
from docaxis_client.vietnam import VIETNAM as VIETNAM
from docaxis_client.vietnam import today_in_vietnam as today_in_vietnam
from services.common.errors import FieldViolation, ValidationError
from services.common.text import control_character

MAX_CODE_NUMBER = 11
MAX_CODE_NOTATION = 30
MAX_SUBJECT = 500
MAX_TYPE_NAME = 100
MAX_SIGNER_POSITION = 100
MAX_SIGNER_NAME = 50
MAX_PLACE = 200
MAX_TO_PLACES_TOTAL = 1000
# A national circular goes to every commune-level unit (about 3,300 since 2025) and more.
MAX_RECIPIENTS = 5000
MAX_ATTACHMENTS = 100
MAX_CONSIGNMENT_ID = 128
MAX_ATTACHMENT_NAME = 255  # a file name, as most file systems allow
MAX_ATTACHMENT_DESCRIPTION = 1000
# RFC 6838 §4.2: type-name "/" subtype-name, each a restricted-name of 1 to 127 characters (so
# at most 255 in all); no parameters.
_RESTRICTED_NAME = "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: $ would accept a final \n
_CONSIGNMENT = re.compile(r"[\x21-\x7e]+")

# Why a string is not an agency code in the deployment's accepted forms, or None. Injected: the
# code rules belong to the directory, and the exchange only needs their verdict.
CodeCheck = Callable[[str], str | None]


class BusinessType(enum.IntEnum):
    """edXML BussinessDocType values, as on the wire."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class DeliveryState(enum.StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    PUSHED = "pushed"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"
    # Pushed (or fetched) the deployment's maximum number of times without an acknowledgement:
    # terminal until an administrator resends it (domain.md §10.1).
    DEAD_LETTERED = "dead_lettered"


# Why a copy was dead-lettered: the push limit was reached unacknowledged.
MAX_PUSHES_EXCEEDED = "MAX_PUSHES_EXCEEDED"
# Defaults of the exchange's limits (DOCAXIS_MAX_ATTACHMENT_BYTES, DOCAXIS_MAX_PUSHES).
DEFAULT_MAX_ATTACHMENT_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_PUSHES = 20


def nfc(text: str) -> str:
    """Vietnamese text arrives in NFC and NFD alike; compare, hash and store it as NFC.

    The client library's normalisation, so that what a DMS signs is what docaxis stores.
    """
    return normalise(text)


@dataclass(frozen=True, slots=True)
class Header:
    sender: str
    recipients: tuple[str, ...]
    code_number: str
    code_notation: str
    promulgation_date: dt.date
    subject: str
    promulgation_place: str = ""
    document_type: int = 0
    type_name: str = ""
    content: str = ""
    signer_competence: str = ""
    signer_position: str = ""
    signer_full_name: str = ""
    due_date: dt.date | None = None
    priority: int = 0
    business_type: BusinessType = BusinessType.NEW
    response_for: tuple[str, ...] = ()
    to_places: tuple[str, ...] = ()

    @property
    def document_id(self) -> str:
        """`<sender>,<yyyy/MM/dd>,<number>/<notation>`: the global key of domain.md §3."""
        return document_id_of(
            self.sender, self.promulgation_date, self.code_number, self.code_notation
        )


def document_id_of(sender: str, date: dt.date, number: str, notation: str) -> str:
    # The client library's function: the DocumentId a DMS signs is the one docaxis routes by.
    return _document_id_of(sender, date, number, notation)


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    name: str
    media_type: str
    size: int
    sha256: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    role: str  # "person" | "organization"
    algorithm: str
    value: bytes
    certificate_chain: tuple[bytes, ...]
    signed_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Submission:
    consignment_id: str
    header: Header
    attachments: tuple[AttachmentRef, ...]
    signatures: tuple[Signature, ...] = ()
    # The original edXML file (uploaded like an attachment) when the document came as edXML.
    envelope: AttachmentRef | None = None


def manifest_of(header: Header, attachments: Sequence[AttachmentRef]) -> Manifest:
    """The canonical manifest the person and organisation signatures must cover: built by the
    client library's builder from what docaxis stores and delivers, so a signature the hub
    accepts is one the recipient can verify from its Delivery. Raises ManifestInvalidError."""
    h = header
    return build_manifest(
        sender=h.sender,
        recipients=h.recipients,
        code_number=h.code_number,
        code_notation=h.code_notation,
        promulgation_place=h.promulgation_place,
        promulgation_date=h.promulgation_date,
        document_type=h.document_type,
        type_name=h.type_name,
        subject=h.subject,
        signer_competence=h.signer_competence,
        signer_position=h.signer_position,
        signer_full_name=h.signer_full_name,
        due_date=h.due_date,
        priority=h.priority,
        business_type=int(h.business_type),
        response_for=h.response_for,
        attachments=[AttachmentFields(a.name, a.media_type, a.size, a.sha256) for a in attachments],
    )


@dataclass(frozen=True, slots=True)
class Route:
    requested_recipient: str
    effective_recipient: str
    delivery_id: str
    # Federation: the peer hub the copy is forwarded to (its next hop); None when this hub
    # delivers it to the recipient itself.
    hub: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    document_uuid: str
    document_id: str
    consignment_id: str
    accepted_at: dt.datetime
    routes: tuple[Route, ...]


def _check_length(
    problems: list[FieldViolation], field: str, value: str, limit: int, *, required: bool
) -> None:
    if required and not value:
        problems.append(FieldViolation(field, "required"))
    elif len(value) > limit:
        problems.append(FieldViolation(field, f"at most {limit} characters, got {len(value)}"))


def submission_problems(
    submission: Submission,
    *,
    code_problem: CodeCheck,
    today: dt.date,
    max_attachment_bytes: int,
) -> list[FieldViolation]:
    """Every problem with a submission at once (domain.md §2.2 limits)."""
    problems: list[FieldViolation] = []
    _consignment_problems(problems, submission)
    _address_problems(problems, submission.header, code_problem)
    _header_problems(problems, submission.header, today)
    _response_problems(problems, submission.header)
    _attachment_problems(problems, submission.attachments, max_attachment_bytes)
    return problems


def _consignment_problems(problems: list[FieldViolation], submission: Submission) -> None:
    if not submission.consignment_id:
        problems.append(FieldViolation("consignment_id", "required"))
    elif len(submission.consignment_id) > MAX_CONSIGNMENT_ID or not _CONSIGNMENT.fullmatch(
        submission.consignment_id
    ):
        problems.append(
            FieldViolation(
                "consignment_id", f"1 to {MAX_CONSIGNMENT_ID} printable ASCII characters"
            )
        )


def _address_problems(
    problems: list[FieldViolation], header: Header, check_code: CodeCheck
) -> None:
    if (why := check_code(header.sender)) is not None:
        problems.append(FieldViolation("header.sender", why))
    if not header.recipients:
        problems.append(FieldViolation("header.recipients", "at least one recipient is required"))
    elif len(header.recipients) > MAX_RECIPIENTS:
        problems.append(FieldViolation("header.recipients", f"at most {MAX_RECIPIENTS}"))
    seen: set[str] = set()
    for index, recipient in enumerate(header.recipients):
        field = f"header.recipients[{index}]"
        if (why := check_code(recipient)) is not None:
            problems.append(FieldViolation(field, why))
        elif recipient in seen:
            problems.append(FieldViolation(field, f"{recipient} is listed twice"))
        seen.add(recipient)


def _header_problems(problems: list[FieldViolation], header: Header, today: dt.date) -> None:
    _check_length(
        problems, "header.code.number", header.code_number, MAX_CODE_NUMBER, required=True
    )
    _check_length(
        problems, "header.code.notation", header.code_notation, MAX_CODE_NOTATION, required=True
    )
    if "," in header.code_number or "/" in header.code_number:
        problems.append(FieldViolation("header.code.number", "must not contain ',' or '/'"))
    if header.promulgation_date > today:
        problems.append(
            FieldViolation(
                "header.promulgation_date", f"{header.promulgation_date} is in the future"
            )
        )
    _check_length(problems, "header.subject", header.subject, MAX_SUBJECT, required=True)
    _check_length(problems, "header.type_name", header.type_name, MAX_TYPE_NAME, required=False)
    _check_length(
        problems, "header.promulgation_place", header.promulgation_place, MAX_PLACE, required=False
    )
    _check_length(
        problems,
        "header.signer.position",
        header.signer_position,
        MAX_SIGNER_POSITION,
        required=False,
    )
    _check_length(
        problems,
        "header.signer.full_name",
        header.signer_full_name,
        MAX_SIGNER_NAME,
        required=False,
    )
    if sum(len(place) for place in header.to_places) > MAX_TO_PLACES_TOTAL:
        problems.append(
            FieldViolation("header.to_places", f"at most {MAX_TO_PLACES_TOTAL} characters in total")
        )
    if header.due_date is not None and header.due_date < header.promulgation_date:
        problems.append(
            FieldViolation("header.due_date", "must not be before the promulgation date")
        )
    if header.document_type < 0:
        problems.append(FieldViolation("header.document_type", "must not be negative"))


def _response_problems(problems: list[FieldViolation], header: Header) -> None:
    if header.business_type is not BusinessType.NEW and not header.response_for:
        problems.append(
            FieldViolation(
                "header.response_for", "a revoke, update or replace names the document it acts on"
            )
        )
    for index, target in enumerate(header.response_for):
        try:
            parse_document_id(target)
        except ValueError as exc:
            problems.append(FieldViolation(f"header.response_for[{index}]", str(exc)))


def _attachment_problems(
    problems: list[FieldViolation], attachments: Sequence[AttachmentRef], max_attachment_bytes: int
) -> None:
    if len(attachments) > MAX_ATTACHMENTS:
        problems.append(FieldViolation("attachments", f"at most {MAX_ATTACHMENTS}"))
    for index, attachment in enumerate(attachments):
        field = f"attachments[{index}]"
        if (why := attachment_name_problem(attachment.name)) is not None:
            problems.append(FieldViolation(f"{field}.name", why))
        if (why := media_type_problem(attachment.media_type)) is not None:
            problems.append(FieldViolation(f"{field}.media_type", why))
        _check_length(
            problems,
            f"{field}.description",
            attachment.description,
            MAX_ATTACHMENT_DESCRIPTION,
            required=False,
        )
        if not _SHA256_HEX.fullmatch(attachment.sha256):
            problems.append(FieldViolation(f"{field}.sha256", "64 lowercase hex digits"))
        if attachment.size <= 0:
            problems.append(FieldViolation(f"{field}.size", "must be positive"))
        elif attachment.size > max_attachment_bytes:
            problems.append(
                FieldViolation(
                    f"{field}.size", f"exceeds the limit of {max_attachment_bytes} bytes"
                )
            )


def attachment_name_problem(name: str) -> str | None:
    """Why `name` cannot be an attachment's file name, or None. Recipients save attachments
    under these names: one bounded line, a name and not a path (issue 17, finding 6)."""
    if not name:
        return "required"
    if len(name) > MAX_ATTACHMENT_NAME:
        return f"at most {MAX_ATTACHMENT_NAME} characters, got {len(name)}"
    if "/" in name or "\\" in name:
        return "a file name, without path separators ('/' or '\\')"
    if (found := control_character(name, one_line=True)) is not None:
        return f"contains the control character {found}"
    if not name.strip(" ."):
        return "a file name, not only dots and spaces"
    return None


def media_type_problem(media_type: str) -> str | None:
    """Why `media_type` is not a type/subtype of the RFC 6838 grammar, or None."""
    if not media_type:
        return "required"
    if not _MEDIA_TYPE.fullmatch(media_type):
        shown = media_type if len(media_type) <= 60 else media_type[:60] + "…"
        return f"{shown!r} is not a media type (type/subtype, RFC 6838)"
    return None


def validate_submission(
    submission: Submission,
    *,
    code_problem: CodeCheck,
    today: dt.date,
    max_attachment_bytes: int,
) -> None:
    problems = submission_problems(
        submission,
        code_problem=code_problem,
        today=today,
        max_attachment_bytes=max_attachment_bytes,
    )
    if problems:
        raise ValidationError("invalid submission", problems)
