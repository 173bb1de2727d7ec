"""What the exchange's use cases need from the outside world.

Each store method is one transaction: it commits everything it was given or nothing (but
store_submissions, which answers each document of a batch on its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from docaxis_client.trust.bindings import Bindings
from docaxis_client.trust.receipts import TransportReceipt
from services.exchange.domain.addresses import Resolution
from services.exchange.domain.delivery import LedgerEvent
from services.exchange.domain.model import (
    AttachmentRef,
    DeliveryState,
    Header,
    Receipt,
    Signature,
    Submission,
)
from services.exchange.domain.peering import Hop
from services.exchange.domain.signature_rules import SignatureRules
from services.exchange.domain.verification import Verification
from services.exchange.service_layer.upload_ports import UploadStore


@dataclass(frozen=True, slots=True)
class AgencyView:
    """What routing needs to know of an agency on the day of sending."""

    code: str
    open: bool
    successor_codes: tuple[str, ...] = ()
    # False for an agency another hub serves (federation): it is known here to route its mail,
    # and never acts on this hub itself.
    served_here: bool = True


class DirectoryLookup(Protocol):
    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        """The agencies among `codes` that the directory knows; unknown codes are left out."""
        ...

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        """Where mail addressed to each of `codes` goes on `on_date`, keyed by code (every code
        is answered; unknown ones with state UNKNOWN). The directory follows successor chains
        (DirectoryService.ResolveRecipients), so all adapters share one implementation."""
        ...

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
        """The signature policy in force for the agency's documents of this type (its own, else
        the deployment default: DirectoryService.GetSignaturePolicy)."""
        ...

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        """The agencies the directory binds these keys to (national-CA certificates name no
        docaxis identity: DirectoryService.ListCertificateBindings); unbound keys are left out."""
        ...


@dataclass(frozen=True, slots=True)
class StoredSubmission:
    receipt: Receipt
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SubmitLookups:
    """What a Submit reads of the store before deciding (DocumentStore.submit_lookups)."""

    # Indexes of the files the sender does not hold (unowned_attachments).
    unowned: list[int]
    # Bytes of the blobs asked for that are stored whole in one piece, by SHA-256: the rest is
    # read with blob_content when needed.
    contents: dict[str, bytes]
    # The request stored earlier under the same consignment id (find_by_consignment).
    earlier: StoredSubmission | None


class DuplicateDocumentError(Exception):
    """A new document whose DocumentId was already accepted."""

    def __init__(self, document_uuid: str) -> None:
        super().__init__(document_uuid)
        self.document_uuid = document_uuid


class AttachmentsGoneError(Exception):
    """An attachment's content was deleted (swept as unused) after it was checked."""


class DuplicateConsignmentError(Exception):
    """Another request with the same (sender, consignment id) committed first."""


class DirectoryChangedError(Exception):
    """The directory changed after the document's directory reads were stamped (its
    `directory_generations` are not the current generation): read them again and retry."""


# Why the store refused one document of a batch (it stored nothing of that document).
StoreRefusal = (
    DuplicateDocumentError
    | DuplicateConsignmentError
    | AttachmentsGoneError
    | DirectoryChangedError
)


@dataclass(frozen=True, slots=True)
class NewSubmission:
    """One accepted document to store, with everything its transaction writes."""

    submission: Submission
    receipt: Receipt
    fingerprint: str
    events: Sequence[LedgerEvent]
    verification: Verification | None = None
    # The submitting call's trace (W3C traceparent), kept with the document for its copies.
    traceparent: str | None = None
    # The directory generations its routing and signature policy were read at (kept reads:
    # directory_cache.py); stored only if each is still the current one. Empty: read uncached.
    directory_generations: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class PushItem:
    """A delivery as it is pushed to the recipient's DMS."""

    delivery_id: str
    document_uuid: str
    requested_recipient: str
    header: Header
    attachments: tuple[AttachmentRef, ...]
    signatures: tuple[Signature, ...]
    submitted_at: dt.datetime
    # What the hub verified of the signatures (None for documents stored before it was kept).
    verification: Verification | None
    # The original edXML file when the document came as edXML.
    envelope: AttachmentRef | None
    # This is the copy's first hand-over ever (push or fetch; a resend does not start over):
    # the end of its delivery latency.
    first_handover: bool
    # Federation: the hubs that handed the document on to this one, oldest first, this hub last
    # (edXML TraceHeaders); empty for a document submitted here.
    trace: tuple[Hop, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A copy that reached the push limit unacknowledged and was dead-lettered instead of being
    pushed again."""

    delivery_id: str
    reason: str
    dead_lettered_at: dt.datetime
    push_count: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    acknowledged_at: dt.datetime
    already_acknowledged: bool


@dataclass(frozen=True, slots=True)
class RecipientTrack:
    requested_recipient: str
    effective_recipient: str
    delivery_id: str
    state: DeliveryState
    accepted_at: dt.datetime
    queued_at: dt.datetime | None
    pushed_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    push_count: int
    # Set while the copy is dead-lettered.
    dead_lettered_at: dt.datetime | None = None
    dead_letter_reason: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery with what its transport receipt attests."""

    delivery_id: str
    document_uuid: str
    sender: str
    recipient: str
    header: Header
    attachments: tuple[AttachmentRef, ...]
    acknowledged_at: dt.datetime | None
    # The hub-signed receipt (canonical JSON, with its chain: as served), once issued.
    transport_receipt: bytes | None
    state: DeliveryState


@dataclass(frozen=True, slots=True)
class DocumentTrack:
    document_uuid: str
    header: Header
    attachments: tuple[AttachmentRef, ...]
    submitted_at: dt.datetime
    recipients: tuple[RecipientTrack, ...]
    # The caller is a recipient whose copy was withdrawn after receipt: the header is reduced to
    # the document's identity, and there are no attachments (domain/withdrawal.py).
    withheld: bool = False
    verification: Verification | None = None
    envelope: AttachmentRef | None = None


class DocumentStore(UploadStore, Protocol):
    async def find_by_consignment(
        self, sender: str, consignment_id: str
    ) -> StoredSubmission | None: ...

    async def unowned_attachments(
        self, owner: str, attachments: Sequence[AttachmentRef]
    ) -> list[int]:
        """Indexes of attachments the owner never uploaded completely with that size."""
        ...

    async def submit_lookups(
        self,
        sender: str,
        files: Sequence[AttachmentRef],
        consignment_id: str,
        contents: Collection[str],
    ) -> SubmitLookups:
        """unowned_attachments, find_by_consignment and the bytes of the `contents` blobs the
        sender holds (for the signature checks), in one round trip."""
        ...

    async def store_submissions(self, batch: Sequence[NewSubmission]) -> list[StoreRefusal | None]:
        """Stores each document (with the envelope reference and what its signatures verified
        to), its deliveries (ACCEPTED), their outbox messages and ledger events: all in one
        transaction when none is refused. Each document's outcome, in order: None once stored,
        else the refusal (DuplicateDocumentError, DuplicateConsignmentError,
        AttachmentsGoneError) of that document alone, which stores nothing of it. When one is
        refused the others are stored each in its own transaction, in order (the first of two
        documents with one DocumentId wins). Other errors (the database gone) store nothing.
        """
        ...

    async def begin_pushes(
        self,
        claims: Sequence[tuple[str, str]],
        max_pushes: int | None = None,
        *,
        published: Mapping[str, dt.datetime] | None = None,
    ) -> list[PushItem | DeadLetter | None]:
        """Decides each (delivery id, recipient) claim with delivery.push, in one transaction,
        and returns, in order: the PushItem of a copy marked pushed; None when it must not be
        pushed (acknowledged, withdrawn, dead-lettered, or not this recipient's); the DeadLetter
        of a copy already pushed `max_pushes` times (no limit when None), dead-lettered instead
        (MAX_PUSHES_EXCEEDED) with a `delivery` ledger event. `published`: the relay's time of
        publish of the copies (by delivery id) the broker handed over, recorded as their
        `queued` (delivery.push) when the relay has not recorded it; for the others (a
        pull-mode fetch) the store's own record of the publish, once the relay committed it."""
        ...

    async def acknowledge(
        self, delivery_id: str, recipient: str, now: dt.datetime
    ) -> Acknowledgement | None:
        """None when the recipient has no such delivery. Raises CopyWithdrawnError, storing
        nothing, when the copy was withdrawn (withdrawal.check_acknowledgeable)."""
        ...

    async def track(
        self, *, document_uuid: str | None, document_id: str | None
    ) -> DocumentTrack | None: ...

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None: ...

    async def save_transport_receipt(self, delivery_id: str, receipt: TransportReceipt) -> bytes:
        """Stores the receipt of an acknowledged delivery unless one is already stored; returns
        the stored one as served, its JSON (the first wins, so a receipt once handed out never
        changes)."""
        ...

    async def store_blob(
        self, owner: str, sha256: str, chunks: AsyncIterator[bytes], quota: int | None = None
    ) -> None:
        """Streams verified chunks into storage in one transaction: committed only if the
        iterator finishes without raising, and (content the owner did not hold yet) within the
        owner's `quota` (UploadQuotaExceededError, checked as begin_upload does)."""
        ...

    async def blob_content(self, sha256: str, max_bytes: int) -> bytes:
        """The whole content of a stored blob (at most `max_bytes`; empty when there is none),
        for checking the signatures inside it before a submission is stored."""
        ...

    async def attachment_chunks(
        self, document_uuid: str, sha256: str, offset: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(offset, bytes) pieces of an attachment of the document, from `offset` on."""
        ...
        yield (0, b"")  # pragma: no cover - makes this an async generator for the type checker
