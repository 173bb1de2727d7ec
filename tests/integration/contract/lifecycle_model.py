"""What the exchange's lifecycle should do, written down independently of the code under test:
the copies, statuses and notices of domain.md §4, §5 and §10 as plain data, and the rules that
change them. lifecycle_machine.py predicts every answer with it and compares.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.statuses import RecallState, StatusCode
from services.exchange.service_layer.lifecycle_ports import ItemKind

# Copies still on their way: pushed (or fetched) until acknowledged.
WAITING = frozenset({DeliveryState.ACCEPTED, DeliveryState.QUEUED, DeliveryState.PUSHED})
# Processing statuses and the ones that happen at most once (domain.md §4).
BUSINESS = (
    StatusCode.REJECTED,
    StatusCode.ACCEPTED,
    StatusCode.ASSIGNED,
    StatusCode.PROCESSING,
    StatusCode.COMPLETED,
)
ONCE = frozenset({StatusCode.REJECTED, StatusCode.ACCEPTED, StatusCode.COMPLETED})
RANK = {code: index for index, code in enumerate(StatusCode)}


@dataclass(frozen=True, slots=True)
class Status:
    status_id: str
    code: StatusCode
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    reported_by: str


@dataclass(slots=True)
class Notice:
    """An item other than a document waiting for an agency: a status for a sender, a recall
    request for a recipient."""

    agency: str
    kind: ItemKind
    delivery_id: str
    document_uuid: str
    created_at: dt.datetime
    # Who it is from, as pending lists show it: the reporter of a status, the recall's sender.
    source: str
    status_id: str = ""
    withdrawn: bool = False
    acknowledged: bool = False


@dataclass(slots=True)
class Copy:
    delivery_id: str
    document_uuid: str
    sender: str
    requested: str
    recipient: str
    state: DeliveryState = DeliveryState.ACCEPTED
    push_count: int = 0
    pushed: bool = False
    queued: bool = False
    # Outbox rows of this copy not yet relayed.
    unpublished: int = 1
    acknowledged_at: dt.datetime | None = None
    dead_letter_reason: str = ""
    recall: RecallState | None = None
    recall_reason: str = ""
    statuses: list[Status] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def received(self) -> bool:
        return self.acknowledged_at is not None

    def history(self) -> list[Status]:
        """In the order things happened: the reporters' timestamps, then the code."""
        return sorted(self.statuses, key=_order)


@dataclass(slots=True)
class Document:
    uuid: str
    document_id: str
    sender: str
    business_type: BusinessType
    submitted_at: dt.datetime
    copies: list[Copy]

    def copy_for(self, recipient: str) -> Copy | None:
        return next((c for c in self.copies if c.recipient == recipient), None)


class Refused(Exception):
    """The model's word that a report must be refused: `kind` names the error expected."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def duplicate_of(copy: Copy, status_id: str, code: StatusCode, at: dt.datetime) -> Status | None:
    """The recorded status a report repeats: same id (a different report under it is a
    conflict), or same code and time; 01 is recorded once."""
    for status in copy.statuses:
        if status.status_id == status_id:
            if (status.code, status.occurred_at) != (code, at):
                raise Refused("conflict")
            return status
        if (status.code, status.occurred_at) == (code, at):
            return status
    if code is StatusCode.ARRIVED:
        return next((s for s in copy.statuses if s.code is StatusCode.ARRIVED), None)
    return None


def business_problem(history: list[Status]) -> bool:
    """02, 03 and 06 once; 02 only first and nothing after it; 06 only after 03; nothing after
    06 (domain.md §4), over the history in the order things happened."""
    seen: set[StatusCode] = set()
    for status in history:
        code = status.code
        if code not in BUSINESS:
            continue
        if code in ONCE and code in seen:
            return True
        if code is StatusCode.REJECTED and seen:
            return True
        if seen & {StatusCode.REJECTED, StatusCode.COMPLETED}:
            return True
        if code is StatusCode.COMPLETED and StatusCode.ACCEPTED not in seen:
            return True
        seen.add(code)
    return False


def admit(copy: Copy, status: Status) -> Status | None:
    """The status a report repeats, None when it is to be recorded, or Refused."""
    if copy.state is DeliveryState.WITHDRAWN and not copy.received:
        raise Refused("not_found")  # withdrawn before receipt: no longer the recipient's
    duplicate = duplicate_of(copy, status.status_id, status.code, status.occurred_at)
    if duplicate is not None:
        return duplicate
    if not copy.received:
        raise Refused("illegal")
    if status.code in (StatusCode.RECALL_AGREED, StatusCode.RECALL_REFUSED):
        if copy.recall is not RecallState.PENDING:
            raise Refused("illegal")
        return None
    if copy.state is DeliveryState.WITHDRAWN:
        raise Refused("illegal")
    if business_problem(sorted([*copy.statuses, status], key=_order)):
        raise Refused("illegal")
    return None


def _order(status: Status) -> tuple[dt.datetime, int, dt.datetime]:
    return (status.occurred_at, RANK[status.code], status.recorded_at)
