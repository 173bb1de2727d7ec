"""What the lifecycle use cases (statuses, notices, recalls, pull mode) need from storage.

Each store method is one transaction: it commits everything it was given or nothing. A notice is
an item for one agency's DMS other than a document: a status for the sender, a recall request for
a recipient. Notices travel like deliveries: an outbox row to the agency's inbox queue, pushed on
the Receive stream or listed and fetched in pull mode, until the agency acknowledges them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from docaxis_client.trust.receipts import TransportReceipt
from services.common.errors import DomainError
from services.exchange.domain.model import BusinessType
from services.exchange.domain.statuses import RecallState, StatusEntry
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord


class ItemKind(enum.StrEnum):
    DELIVERY = "delivery"
    STATUS = "status"
    RECALL = "recall"


@dataclass(frozen=True, slots=True)
class StatusNoticeItem:
    """A recipient's status, as pushed to the document's sender."""

    notice_id: str
    document_uuid: str
    document_id: str
    delivery_id: str
    recipient: str
    entry: StatusEntry


@dataclass(frozen=True, slots=True)
class RecallNoticeItem:
    """The sender's recall request (13), as pushed to a recipient that must answer 15 or 16."""

    notice_id: str
    document_uuid: str
    document_id: str
    delivery_id: str
    sender: str
    reason: str
    requested_at: dt.datetime
    # Pushed but not acknowledged when recalled: already withdrawn, no answer expected.
    withdrawn: bool = False


NoticeItem = StatusNoticeItem | RecallNoticeItem


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    entry: StatusEntry
    # The report repeated one already recorded (returned as first recorded).
    already_recorded: bool


@dataclass(frozen=True, slots=True)
class RecallOutcome:
    recipient: str
    delivery_id: str
    state: RecallState
    # A recall of this copy had been requested before: its current state is returned.
    already_requested: bool


@dataclass(frozen=True, slots=True)
class DeliveryLifecycle:
    """What Track shows of one copy beyond transport: statuses in order, and any recall."""

    delivery_id: str
    statuses: tuple[StatusEntry, ...]
    recall: RecallState | None = None
    recall_reason: str = ""
    recall_requested_at: dt.datetime | None = None
    recall_answered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One unacknowledged item for an agency, as pull mode lists it."""

    kind: ItemKind
    item_id: str
    document_uuid: str
    created_at: dt.datetime
    # The document's sender; for a status notice, the agency that reported the status.
    sender: str


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a listing stopped: items strictly after (created_at, item_id) come next."""

    created_at: dt.datetime
    item_id: str


@dataclass(frozen=True, slots=True)
class DocumentLink:
    """A document as another one's Track refers to it."""

    document_uuid: str
    document_id: str
    sender: str
    business_type: BusinessType
    submitted_at: dt.datetime


# Signs the hub's transport receipt of an acknowledged copy (None: no receipt for it); the store
# encodes it as it stores it (without the hub's chain: adapters/receipt_chains.py).
ReceiptIssuer = Callable[[DeliveryRecord], TransportReceipt | None]


class LifecycleStore(Protocol):
    async def acknowledge_deliveries(
        self,
        claims: Sequence[tuple[str, str]],
        now: dt.datetime,
        receipts: ReceiptIssuer,
    ) -> list[Acknowledgement | DomainError | None]:
        """Acknowledges each (delivery id, recipient) claim, in one transaction, with
        delivery.acknowledge (the error it refuses a claim with, e.g. CopyWithdrawnError, is
        that claim's answer and changes nothing): for each first acknowledgement its `receipt`
        ledger event, its 01 (delivery.arrival) with a status notice to the sender and a
        `status` ledger event; and for every acknowledged copy without one, the transport
        receipt `receipts` signs. Returns
        each claim's acknowledgement in order, None where the recipient has no such delivery."""
        ...

    async def acknowledge_notices(
        self, claims: Sequence[tuple[str, str]], now: dt.datetime
    ) -> list[Acknowledgement | None]:
        """Acknowledges each (notice id, agency) claim in one transaction; None where the agency
        has no such notice."""
        ...

    async def record_status(
        self,
        delivery_id: str,
        entry: StatusEntry,
        *,
        recipient: str | None = None,
        notify: str | None = None,
        notify_hub: str | None = None,
    ) -> StatusOutcome | None:
        """Admits `entry` against the delivery's history under a row lock (statuses.admit) and
        records it with a notice (and outbox row) for the sender and a `status` ledger event.
        15/16 also settle the pending recall (15 withdraws the copy). None when `recipient`
        (default: the reporter, `entry.reported_by`) is not the delivery's recipient. The notice
        goes to `notify` (default: the sender), e.g. the sender's successor after a merger, through
        the peer hub `notify_hub` when another hub serves it. Raises IllegalTransitionError or
        StatusConflictError, storing nothing."""
        ...

    async def request_recall(
        self,
        document_uuid: str,
        sender: str,
        reason: str,
        recipients: Sequence[str],
        now: dt.datetime,
    ) -> list[RecallOutcome] | None:
        """Recalls the copies of `recipients` (every copy when empty). A copy not yet
        acknowledged is withdrawn at once (with a recall notice if it was pushed: the DMS may
        have stored it); an acknowledged one gets a pending recall, a 13 in its history and a
        recall notice for its recipient. Copies already recalled keep their state. None when
        `sender` did not send such a document."""
        ...

    async def begin_notices(self, claims: Sequence[tuple[str, str]]) -> list[NoticeItem | None]:
        """Counts a push or fetch of each (notice id, agency) claim, in one transaction, and
        returns the notices in order; None where it is acknowledged or not the agency's."""
        ...

    async def pending(
        self, agency: str, after: PageCursor | None, limit: int
    ) -> list[PendingEntry]:
        """Unacknowledged deliveries (neither withdrawn nor failed) and notices for `agency`,
        oldest first, strictly after `after`."""
        ...

    async def lifecycles(self, document_uuid: str) -> dict[str, DeliveryLifecycle]:
        """Per delivery id of the document: its statuses (ordered) and recall."""
        ...

    async def links(
        self, document_uuid: str, agency: str | None
    ) -> tuple[list[DocumentLink], list[DocumentLink]]:
        """(in_reply_to, replies) of a document, each oldest first and limited to documents
        `agency` sent or has a copy of (every document when None, for administrators): every
        document with a DocumentId the document's response_for names, and every other document
        whose response_for names its DocumentId."""
        ...

    async def versions(self, document_id: str) -> list[DocumentLink]:
        """Documents with this DocumentId, and updates naming it in response_for, oldest first
        (submission time, then uuid)."""
        ...
