"""The canonical document manifest: the edXML header fields and attachment digests signed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from docaxis_client.trust.canonical import JsonValue, canonical_json, nfc
from docaxis_client.trust.errors import ManifestInvalidError

MANIFEST_VERSION = 1

# QĐ 20/2020 allows generic identifiers of up to 35 characters of [0-9A-Z.]; the 13-character
# QCVN 102 form is a special case. Stricter shape rules belong to the directory, not here.
AGENCY_CODE_PATTERN = re.compile(r"[0-9A-Z.]{1,35}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ManifestInvalidError(field, problem)


def _check_document_id(field: str, value: str) -> None:
    # §3 of the domain brief: at most two comma splits, then number/notation at the first "/".
    parts = value.split(",", 2)
    _require(len(parts) == 3 and all(parts), field, "expected '<OrganId>,<yyyy/MM/dd>,<n>/<x>'")
    _require("/" in parts[2], field, "code part must be '<CodeNumber>/<CodeNotation>'")


def _check_iso_date(field: str, value: str) -> None:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ManifestInvalidError(field, "expected an ISO date YYYY-MM-DD") from None
    _require(len(value) == 10, field, "expected an ISO date YYYY-MM-DD")


@dataclass(frozen=True, slots=True)
class AttachmentDigest:
    """One attachment as signed: its name, media type, byte size and SHA-256."""

    name: str
    media_type: str
    size: int
    sha256_hex: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", nfc(self.name))
        object.__setattr__(self, "media_type", nfc(self.media_type))
        _require(bool(self.name), "attachments.name", "must not be empty")
        _require(self.size >= 0, "attachments.size", "must not be negative")
        # Lowercase only: one vendor's uppercase/zero-dropping hex is exactly what we refuse.
        _require(
            _SHA256_HEX.fullmatch(self.sha256_hex) is not None,
            "attachments.sha256_hex",
            "must be 64 lowercase hex digits",
        )

    @classmethod
    def of(cls, name: str, media_type: str, content: bytes) -> Self:
        """Digest ``content`` in memory (fine for the multi-MB packages edXML carries)."""
        return cls(name, media_type, len(content), hashlib.sha256(content).hexdigest())


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the person and organisation signatures cover; strings are stored NFC-normalised."""

    document_id: str
    sender: str
    recipients: tuple[str, ...]
    code_number: str
    code_notation: str
    promulgation_place: str
    promulgation_date: str
    document_type: int
    type_name: str
    subject: str
    signer_competence: str
    signer_position: str
    signer_full_name: str
    due_date: str | None
    priority: int
    business_type: int
    response_for: tuple[str, ...] = ()
    attachments: tuple[AttachmentDigest, ...] = ()
    # digest()'s value once computed: a hub checking a document asks for it once per signature,
    # for the result and for the signers' record (five canonicalisations of the whole header, its
    # recipient list included, where one does). The manifest is frozen, so it cannot go stale.
    _digest: bytes | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise once at construction so equality, routing and hashing all agree.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                object.__setattr__(self, field.name, nfc(value))
            elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
                object.__setattr__(self, field.name, tuple(nfc(item) for item in value))
        self._validate()

    def _validate(self) -> None:
        _check_document_id("document_id", self.document_id)
        for field, code in [("sender", self.sender), *(("recipients", r) for r in self.recipients)]:
            _require(
                AGENCY_CODE_PATTERN.fullmatch(code) is not None, field, f"bad agency code {code!r}"
            )
        _require(bool(self.recipients), "recipients", "at least one recipient is required")
        _require(
            len(set(self.recipients)) == len(self.recipients), "recipients", "duplicate recipient"
        )
        _require(bool(self.code_number), "code_number", "must not be empty")
        _check_iso_date("promulgation_date", self.promulgation_date)
        if self.due_date is not None:
            _check_iso_date("due_date", self.due_date)
        _require(bool(self.subject), "subject", "must not be empty")
        _require(self.priority >= 0, "priority", "must not be negative")
        _require(0 <= self.business_type <= 3, "business_type", "must be 0 (new) .. 3 (replace)")
        for document_id in self.response_for:
            _check_document_id("response_for", document_id)
        names = [attachment.name for attachment in self.attachments]
        _require(len(set(names)) == len(names), "attachments", "duplicate attachment name")

    def as_dict(self) -> dict[str, JsonValue]:
        """The JSON object that is canonicalised; ``v`` versions the layout itself."""
        return {
            "v": MANIFEST_VERSION,
            "document_id": self.document_id,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "code_number": self.code_number,
            "code_notation": self.code_notation,
            "promulgation_place": self.promulgation_place,
            "promulgation_date": self.promulgation_date,
            "document_type": self.document_type,
            "type_name": self.type_name,
            "subject": self.subject,
            "signer_competence": self.signer_competence,
            "signer_position": self.signer_position,
            "signer_full_name": self.signer_full_name,
            "due_date": self.due_date,
            "priority": self.priority,
            "business_type": self.business_type,
            "response_for": list(self.response_for),
            "attachments": [
                {
                    "name": attachment.name,
                    "media_type": attachment.media_type,
                    "size": attachment.size,
                    "sha256": attachment.sha256_hex,
                }
                for attachment in self.attachments
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`as_dict`; refuses unknown versions rather than guessing."""
        if data.get("v") != MANIFEST_VERSION:
            raise ManifestInvalidError("v", f"unsupported manifest version {data.get('v')!r}")
        try:
            return cls(
                document_id=str(data["document_id"]),
                sender=str(data["sender"]),
                recipients=tuple(str(code) for code in data["recipients"]),
                code_number=str(data["code_number"]),
                code_notation=str(data["code_notation"]),
                promulgation_place=str(data["promulgation_place"]),
                promulgation_date=str(data["promulgation_date"]),
                document_type=int(data["document_type"]),
                type_name=str(data["type_name"]),
                subject=str(data["subject"]),
                signer_competence=str(data["signer_competence"]),
                signer_position=str(data["signer_position"]),
                signer_full_name=str(data["signer_full_name"]),
                due_date=None if data["due_date"] is None else str(data["due_date"]),
                priority=int(data["priority"]),
                business_type=int(data["business_type"]),
                response_for=tuple(str(item) for item in data["response_for"]),
                attachments=tuple(
                    AttachmentDigest(
                        name=str(item["name"]),
                        media_type=str(item["media_type"]),
                        size=int(item["size"]),
                        sha256_hex=str(item["sha256"]),
                    )
                    for item in data["attachments"]
                ),
            )
        except KeyError as exc:
            raise ManifestInvalidError(str(exc.args[0]), "missing") from exc

    def canonical_bytes(self) -> bytes:
        """RFC 8785 JSON of :meth:`as_dict`: the exact bytes that get hashed."""
        return canonical_json(self.as_dict())

    def digest(self) -> bytes:
        """SHA-256 of :meth:`canonical_bytes`."""
        digest = self._digest
        if digest is None:
            digest = hashlib.sha256(self.canonical_bytes()).digest()
            object.__setattr__(self, "_digest", digest)
        return digest

    def sha256_hex(self) -> str:
        """Lowercase hex of :meth:`digest`, as it appears in signed payloads and receipts."""
        return self.digest().hex()
