"""Federation's ports: how documents, statuses and recalls reach the next hub (PeerTransport:
docaxis's own FederationService over gRPC today; a national-axis connector is another adapter of
the same port), where the attachments of a document being forwarded here come from (BlobSource),
and what forwarding needs of storage (FederationStore)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import DomainError
from services.exchange.domain.delivery import HandoverFailure, LedgerEvent
from services.exchange.domain.model import Receipt, Submission
from services.exchange.domain.peering import Hop
from services.exchange.domain.statuses import StatusEntry
from services.exchange.domain.verification import Verification


@dataclass(frozen=True, slots=True)
class OutboundDocument:
    """A copy handed over to the next hub. (origin_document_uuid, recipient) is its key at every
    hop: handing it over again is answered as the first time."""

    item_id: str  # the copy's delivery id here
    origin_document_uuid: str
    source_document_uuid: str  # the document's uuid here (the next hub fetches blobs by it)
    recipient: str
    requested_recipient: str
    submission: Submission
    trace: tuple[Hop, ...]


@dataclass(frozen=True, slots=True)
class OutboundStatus:
    """A recipient's status going back towards the sender."""

    item_id: str  # the notice id here
    origin_document_uuid: str
    recipient: str
    entry: StatusEntry


@dataclass(frozen=True, slots=True)
class OutboundRecall:
    """The sender's recall going towards the recipient."""

    item_id: str  # the notice id here
    origin_document_uuid: str
    recipient: str
    sender: str
    reason: str
    requested_at: dt.datetime


OutboundItem = OutboundDocument | OutboundStatus | OutboundRecall


@dataclass(frozen=True, slots=True)
class HopOutcome:
    """The next hub's answer to one item: stored (with its signed receipt for a document), or
    refused; a retryable refusal is handed over again later."""

    item_id: str
    receipt: bytes = b""
    error: DomainError | None = None
    retryable: bool = False


class PeerTransport(Protocol):
    """One peer hub, as the forwarder sees it."""

    @property
    def hub_code(self) -> str: ...

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        """Hands the items over in order and returns each one's outcome, in order, once the peer
        answered all; raises UnavailableError when the peer cannot be reached (nothing known
        about any item: all are handed over again)."""
        ...

    async def probe(self) -> bool:
        """Whether the peer answers at all now (an open circuit's cheap test)."""
        ...


class BlobSource(Protocol):
    """The attachments of documents a peer is forwarding here."""

    def chunks(self, hub_code: str, source_document_uuid: str, sha256: str) -> AsyncIterator[bytes]:
        """The bytes, in order; UnavailableError when the peer cannot be reached."""
        ...


@dataclass(frozen=True, slots=True)
class ForwardedIn:
    """A copy accepted from a peer: what to store, in one transaction."""

    origin_document_uuid: str
    # The recipient as the peer named it: with the origin, the copy's key at every hop.
    recipient: str
    from_hub: str
    trace: tuple[Hop, ...]
    hop_receipt: bytes


# When to hand over again a copy the next hub refused, given the copy's acceptance time, how many
# times it was refused before and now; None when the refusal is final (peering.refusal_retry_at).
RetryRule = Callable[[dt.datetime, int, dt.datetime], dt.datetime | None]


class FederationStore(Protocol):
    async def hop_info(
        self, document_uuids: Sequence[str]
    ) -> dict[str, tuple[str, tuple[Hop, ...]]]:
        """Each document's origin uuid (its own when submitted here) and stored trace."""
        ...

    async def accepted_receipt(self, origin_document_uuid: str, recipient: str) -> bytes | None:
        """The receipt this hub signed when it accepted the copy before, if it did."""
        ...

    async def accept_forwarded(
        self,
        submission: Submission,
        receipt: Receipt,
        fingerprint: str,
        events: Sequence[LedgerEvent],
        verification: Verification,
        forwarded: ForwardedIn,
    ) -> bytes:
        """In one transaction: the document (unless another copy of the same origin document
        brought it already: then only the copy of `receipt.routes[0]`), its outbox row, ledger
        events and the accepted copy's key. Returns the receipt to answer: `forwarded`'s, or the
        first one when the copy had been accepted already (a retry or a duplicate forward)."""
        ...

    async def handed_over(self, delivery_id: str, hub_code: str, receipt: bytes) -> bool:
        """The copy was stored by the next hub: acknowledged here (no 01: that comes back from
        the recipient's hub), with the next hub's receipt and a `delivery` ledger event
        (`forwarded`). False when the copy is no longer waiting (withdrawn meanwhile)."""
        ...

    async def handover_failed(self, failures: Mapping[str, HandoverFailure]) -> None:
        """The hand-overs of these copies (by delivery id) failed and they go again: each copy
        remembers why, for the dead letter the push limit may make of it (delivery.push).
        Copies no longer waiting are left as they are. Called only when a hand-over fails."""
        ...

    async def refused(
        self, delivery_id: str, hub_code: str, reason: str, retry_at: RetryRule
    ) -> dt.datetime | None:
        """The next hub refused the copy. If `retry_at` gives a time, the copy waits to be
        handed over again then (requeue_refused; the hand-over does not count against the push
        limit) and that time is returned. Otherwise the refusal is final: dead-lettered with the
        reason (resendable by an administrator), and a 02 (delivery.undeliverable) for the
        sender. None as well when the copy is no longer waiting."""
        ...

    async def requeue_refused(self, hub_code: str, limit: int) -> dt.datetime | None:
        """Queues again (for the peer's forwarder) up to `limit` copies refused for now whose
        time has come; returns the time of the next one still waiting, if any."""
        ...

    async def local_copy(self, origin_document_uuid: str, recipient: str) -> tuple[str, str] | None:
        """(document uuid, delivery id) here of the origin document's copy for `recipient`."""
        ...

    async def in_transit(self, delivery_id: str) -> bool:
        """Whether the copy is being handed over to its next hub: still waiting for it (or for
        its answer to be recorded), or recorded as handed over just now."""
        ...

    async def forwards_to(self, document_uuid: str, hub_code: str) -> bool:
        """Whether a copy of the document is forwarded to that peer (it may fetch its blobs)."""
        ...
