"""A document's field values as the hub stores them, its DocumentId and its manifest (no I/O).

The one place where the text normalisation, the DocumentId and the manifest of a document are
computed: the client library builds what it signs here, and the hub's domain model builds its
routing key and the manifest it verifies against here too, so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from docaxis_client.trust.errors import ManifestInvalidError
from docaxis_client.trust.manifest import AttachmentDigest, Manifest

__all__ = [
    "AttachmentFields",
    "DocumentIdError",
    "DocumentIdParts",
    "build_manifest",
    "document_id_of",
    "normalise",
    "parse_document_id",
]


def normalise(text: str) -> str:
    """NFC and no surrounding whitespace: how docaxis stores, routes and signs every text field
    (Vietnamese arrives both precomposed and decomposed)."""
    return unicodedata.normalize("NFC", text).strip()


def document_id_of(sender: str, promulgation_date: dt.date, code_number: str, notation: str) -> str:
    """``<sender>,<yyyy/MM/dd>,<number>/<notation>``: the global key of a document (edXML)."""
    return normalise(f"{sender},{promulgation_date:%Y/%m/%d},{code_number}/{notation}")


class DocumentIdError(ValueError):
    """Not `<sender>,<yyyy/MM/dd>,<number>/<notation>`."""


@dataclass(frozen=True, slots=True)
class DocumentIdParts:
    sender: str
    promulgation_date: dt.date
    number: str
    notation: str

    @property
    def code(self) -> str:
        """ "number/notation", as a status's `ResponseFor/Code` writes it."""
        return f"{self.number}/{self.notation}"


def parse_document_id(raw: str) -> DocumentIdParts:
    """At most two comma splits, then number/notation at the first slash (notations hold '/').
    The date must be written as `document_id_of` writes it: the key is compared as text."""
    parts = normalise(raw).split(",", 2)
    if len(parts) != 3 or "/" not in parts[2]:
        raise DocumentIdError(f"{raw!r} is not <sender>,<yyyy/MM/dd>,<number>/<notation>")
    try:
        date = dt.datetime.strptime(parts[1], "%Y/%m/%d").date()
    except ValueError:
        raise DocumentIdError(f"{raw!r}: {parts[1]!r} is not a yyyy/MM/dd date") from None
    if f"{date:%Y/%m/%d}" != parts[1]:
        # strptime accepts 2025/3/4; only one spelling of a key is valid.
        raise DocumentIdError(f"{raw!r}: {parts[1]!r} is not a yyyy/MM/dd date")
    number, notation = parts[2].split("/", 1)
    return DocumentIdParts(parts[0], date, number, notation)


def _date(field: str, raw: dt.date | str) -> dt.date:
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise ManifestInvalidError(field, "expected an ISO date YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True)
class AttachmentFields:
    """An attachment as declared in a submission (the bytes themselves are signed by digest)."""

    name: str
    media_type: str
    size: int
    sha256: str


def build_manifest(
    *,
    sender: str,
    recipients: Sequence[str],
    code_number: str,
    code_notation: str,
    promulgation_place: str,
    promulgation_date: dt.date | str,
    document_type: int,
    type_name: str,
    subject: str,
    signer_competence: str,
    signer_position: str,
    signer_full_name: str,
    due_date: dt.date | str | None,
    priority: int,
    business_type: int,
    response_for: Sequence[str],
    attachments: Iterable[AttachmentFields],
) -> Manifest:
    """The manifest of a document from its field values, normalised as docaxis stores them.

    Dates are parsed and written back in one spelling, so that ``2025-07-01`` typed any way the
    ISO parser accepts signs the same bytes the hub will rebuild from its stored copy.
    """
    date = _date("promulgation_date", promulgation_date)
    due = None if due_date is None or due_date == "" else _date("due_date", due_date)
    sender, number, notation = normalise(sender), normalise(code_number), normalise(code_notation)
    return Manifest(
        document_id=document_id_of(sender, date, number, notation),
        sender=sender,
        recipients=tuple(normalise(code) for code in recipients),
        code_number=number,
        code_notation=notation,
        promulgation_place=normalise(promulgation_place),
        promulgation_date=date.isoformat(),
        document_type=document_type,
        type_name=normalise(type_name),
        subject=normalise(subject),
        signer_competence=normalise(signer_competence),
        signer_position=normalise(signer_position),
        signer_full_name=normalise(signer_full_name),
        due_date=None if due is None else due.isoformat(),
        priority=priority,
        business_type=business_type,
        response_for=tuple(normalise(target) for target in response_for),
        attachments=tuple(
            AttachmentDigest(normalise(a.name), a.media_type.strip(), a.size, a.sha256.strip())
            for a in attachments
        ),
    )
