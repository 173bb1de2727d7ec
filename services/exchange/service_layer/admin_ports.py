"""What the administrators' use cases (search, timeline, dead letters) need from storage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.exchange.domain.model import BusinessType, DeliveryState
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

    async def resends(self, delivery_ids: Sequence[str]) -> list[Resend]:
        """The resends of these copies, oldest first."""
        ...
