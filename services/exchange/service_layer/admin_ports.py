"""What the administrators' use cases (search, timeline, dead letters) need from storage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.exchange.domain.delivery import HandoverFailure
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.peering import Hop
from services.exchange.domain.statuses import StatusCode
from services.exchange.service_layer.lifecycle_ports import PageCursor


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    """What identifies a document to a person: DocumentId, number/notation, subject, sender."""

    document_uuid: str
    document_id: str
    code_number: str
    code_notation: str
    subject: str
    sender: str
    submitted_at: dt.datetime
    business_type: BusinessType


@dataclass(frozen=True, slots=True)
class CopySummary:
    delivery_id: str
    requested_recipient: str
    effective_recipient: str
    state: DeliveryState
    # The latest business status by its own timestamp (statuses.ordered), if any.
    latest_status: StatusCode | None


@dataclass(frozen=True, slots=True)
class FoundDocument:
    document: DocumentSummary
    copies: tuple[CopySummary, ...]


@dataclass(frozen=True, slots=True)
class DocumentQuery:
    """Filters of a document search; None means "any". The copy filters (recipient,
    latest_status, state) must all hold for one and the same copy."""

    document_id: str | None = None
    code_number: str | None = None
    code_notation: str | None = None
    sender: str | None = None
    # The code the sender wrote or the agency that receives the copy.
    recipient: str | None = None
    # [submitted_from, submitted_before)
    submitted_from: dt.datetime | None = None
    submitted_before: dt.datetime | None = None
    latest_status: StatusCode | None = None
    state: DeliveryState | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterCopy:
    delivery_id: str
    document: DocumentSummary
    requested_recipient: str
    effective_recipient: str
    reason: str
    dead_lettered_at: dt.datetime
    push_count: int
    # Beside MAX_PUSHES_EXCEEDED: the copy's last failed hand-over to the next hub, what the
    # operator must fix before resending (delivery.dead_letter_cause); None otherwise.
    cause: HandoverFailure | None = None


@dataclass(frozen=True, slots=True)
class Administrator:
    """Who resends: the administrator's client certificate (empty in development mode)."""

    subject: str
    serial: str


@dataclass(frozen=True, slots=True)
class Resend:
    """An administrator put a dead-lettered copy back on the delivery path."""

    delivery_id: str
    resent_at: dt.datetime
    administrator: Administrator
    reason: str
    # The dead letter it undid.
    dead_lettered_at: dt.datetime
    dead_letter_reason: str
    push_count: int


@dataclass(frozen=True, slots=True)
class StatusBack:
    """A status travelling one hop back towards the sender: when it arrived here from the next
    hub, or was handed back to the previous one (None while it waits)."""

    recipient: str
    code: StatusCode
    occurred_at: dt.datetime
    at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class HandOver:
    """A copy whose next hop is a peer hub."""

    delivery_id: str
    recipient: str
    next_hub: str
    state: DeliveryState
    handed_over_at: dt.datetime | None  # when the next hub stored it
    receipt: bytes  # the next hub's signed receipt (empty until then)
    statuses_back: tuple[StatusBack, ...]
    # Why its last hand-over failed, while it is not handed over (a dead letter's cause).
    last_failure: HandoverFailure | None = None


@dataclass(frozen=True, slots=True)
class Arrival:
    """A copy this hub accepted from the previous hub."""

    delivery_id: str
    recipient: str
    from_hub: str
    accepted_at: dt.datetime
    receipt: bytes  # the receipt this hub signed for it
    statuses_back: tuple[StatusBack, ...]


@dataclass(frozen=True, slots=True)
class DocumentHops:
    """A document's path across hubs as this hub knows it."""

    origin_document_uuid: str
    trace: tuple[Hop, ...]
    arrivals: tuple[Arrival, ...]
    hand_overs: tuple[HandOver, ...]


class AdminStore(Protocol):
    async def search(
        self, query: DocumentQuery, after: PageCursor | None, limit: int
    ) -> list[FoundDocument]:
        """Documents matching `query`, newest first by (submitted_at, uuid), strictly before
        `after`; each with every copy, as the sender listed them."""
        ...

    async def dead_letters(
        self, agency: str | None, after: PageCursor | None, limit: int, *, peer: str | None = None
    ) -> list[DeadLetterCopy]:
        """Dead-lettered copies (sent by or addressed to `agency`, any when None; whose next hop
        is the hub `peer`, any when None), newest first by (dead_lettered_at, delivery id),
        strictly before `after`."""
        ...

    async def resend(
        self, delivery_id: str, administrator: Administrator, reason: str, now: dt.datetime
    ) -> Resend | None:
        """In one transaction: the dead-lettered copy goes back to `queued` with its push count
        reset, an outbox row queues it again, the resend is kept and a `delivery` ledger event
        (event `resent`) names the administrator's certificate serial with commitments to its
        subject and the reason. None for an unknown delivery; NotDeadLetteredError, changing
        nothing, when the copy is not dead-lettered."""
        ...

    async def trace_id(self, document_uuid: str) -> str:
        """The trace id of the document's path, "" when none was recorded."""
        ...

    async def hops(self, document_uuid: str) -> DocumentHops | None:
        """The document's trace, the copies it accepted from a peer hub and those it handed
        over to one; None when it came from no peer and went to none."""
        ...

    async def resends(self, delivery_ids: Sequence[str]) -> list[Resend]:
        """The resends of these copies, oldest first."""
        ...
