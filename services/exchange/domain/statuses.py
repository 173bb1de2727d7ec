"""Business statuses of a delivery (domain.md §4) and the rules their history must obey.

A status belongs to one (document, recipient) pair. Reports arrive duplicated and out of order,
so the history is kept ordered by each report's own timestamp, and a new report is admitted when
the history with it is still legal: a late 03 stamped before an earlier-received 05 is fine.
Transport acknowledgements are a separate layer (DeliveryState); only 01 links them: it is
recorded automatically when the recipient's DMS acknowledges the delivery.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import ConflictError, FieldViolation, NotFoundError, RejectedError

MAX_DESCRIPTION = 1000
MAX_STATUS_ID = 128
MAX_STAFF_FIELD = 200
# A reporter's clock may run a little ahead of ours; further ahead is a bogus timestamp.
CLOCK_SKEW = dt.timedelta(minutes=5)
# The status_id of the 01 docaxis records itself on acknowledgement.
RESERVED_PREFIX = "docaxis:"
ARRIVAL_STATUS_ID = RESERVED_PREFIX + "arrived"
RECALL_STATUS_ID = RESERVED_PREFIX + "recall"
# The 15 a hub answers for the recipient when a recall from another hub withdraws a copy before
# its receipt (federation: delivery.recall).
RECALL_WITHDRAWN_STATUS_ID = RESERVED_PREFIX + "recall-withdrawn"
# The 02 a hub records for the sender when the next hub refused the copy for good (federation:
# delivery.undeliverable). A transport fact, not the recipient's decision: the ordering rules
# ignore it, so a copy an administrator resends and gets delivered goes on as any other.
UNDELIVERABLE_STATUS_ID = RESERVED_PREFIX + "undeliverable"


class StatusCode(enum.StrEnum):
    """The two-digit edXML status codes, as on the wire."""

    ARRIVED = "01"
    REJECTED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    PROCESSING = "05"
    COMPLETED = "06"
    RECALL_REQUESTED = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"


# Codes a recipient's DMS may report with ReportStatus (13 is the sender's, through Recall).
REPORTABLE: frozenset[StatusCode] = frozenset(StatusCode) - {StatusCode.RECALL_REQUESTED}
RECALL_ANSWERS: frozenset[StatusCode] = frozenset(
    {StatusCode.RECALL_AGREED, StatusCode.RECALL_REFUSED}
)
# The processing codes the ordering rules apply to (01 and the recall codes are outside them).
_BUSINESS: frozenset[StatusCode] = frozenset(
    {
        StatusCode.REJECTED,
        StatusCode.ACCEPTED,
        StatusCode.ASSIGNED,
        StatusCode.PROCESSING,
        StatusCode.COMPLETED,
    }
)
# What the reports ask of a copy (its first such status's time is kept with it): an answer, for
# a document with a due date (the overdue copies), and its registration (the stalled steps). A
# rejection is both.
ANSWERING: frozenset[StatusCode] = frozenset({StatusCode.REJECTED, StatusCode.COMPLETED})
REGISTERING: frozenset[StatusCode] = frozenset({StatusCode.REJECTED, StatusCode.ACCEPTED})
_ONCE: frozenset[StatusCode] = frozenset(
    {StatusCode.ARRIVED, StatusCode.REJECTED, StatusCode.ACCEPTED, StatusCode.COMPLETED}
)
# Ties on the timestamp (one DMS emits 03 and 05 together) order by the code.
_RANK = {code: index for index, code in enumerate(StatusCode)}


class RecallState(enum.StrEnum):
    """Where a recall stands for one recipient."""

    PENDING = "pending"  # asked; the recipient has not answered yet
    AGREED = "agreed"  # 15: the recipient withdrew the document
    REFUSED = "refused"  # 16
    WITHDRAWN_BEFORE_RECEIPT = "withdrawn"  # never received, so withdrawn without asking


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a reporter says happened, with its own idempotency key and timestamp."""

    status_id: str
    code: StatusCode
    occurred_at: dt.datetime
    description: str = ""
    staff: StaffInfo = StaffInfo()


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """A status as recorded: the report, who reported it and when docaxis recorded it."""

    report: StatusReport
    reported_by: str
    recorded_at: dt.datetime

    @property
    def code(self) -> StatusCode:
        return self.report.code

    @property
    def occurred_at(self) -> dt.datetime:
        return self.report.occurred_at


class IllegalTransitionError(RejectedError):
    """The status does not fit the delivery's history (or its transport state)."""

    reason = "ILLEGAL_TRANSITION"


class NotReceivedError(IllegalTransitionError):
    """No status on a copy its recipient has not acknowledged (at a federation hop: whose
    hand-over to the next hub is not recorded yet)."""


class StatusConflictError(ConflictError):
    """A status_id reused for a different report."""


def ordered(history: Sequence[StatusEntry]) -> list[StatusEntry]:
    """The history in the order things happened: by the reporters' timestamps, then by code."""
    return sorted(history, key=lambda e: (e.occurred_at, _RANK[e.code], e.recorded_at))


def report_problems(
    report: StatusReport, *, now: dt.datetime, relayed: bool = False
) -> list[FieldViolation]:
    """Shape checks, every problem at once. A status a peer hub relays (federation) may carry
    an id docaxis gave it at the recipient's hub."""
    problems: list[FieldViolation] = []
    if not report.status_id:
        problems.append(FieldViolation("status_id", "required (the report's idempotency key)"))
    elif len(report.status_id) > MAX_STATUS_ID or not report.status_id.isprintable():
        problems.append(FieldViolation("status_id", f"1 to {MAX_STATUS_ID} printable characters"))
    elif report.status_id.startswith(RESERVED_PREFIX) and not relayed:
        problems.append(FieldViolation("status_id", f"{RESERVED_PREFIX!r} is docaxis's prefix"))
    if report.code not in REPORTABLE:
        problems.append(FieldViolation("code", "13 is the sender's: use Recall"))
    if report.code is StatusCode.REJECTED and not report.description.strip():
        problems.append(FieldViolation("description", "a rejection (02) states its reason"))
    if len(report.description) > MAX_DESCRIPTION:
        problems.append(FieldViolation("description", f"at most {MAX_DESCRIPTION} characters"))
    for name in ("department", "staff", "email", "mobile"):
        if len(getattr(report.staff, name)) > MAX_STAFF_FIELD:
            problems.append(
                FieldViolation(f"staff.{name}", f"at most {MAX_STAFF_FIELD} characters")
            )
    if report.occurred_at.tzinfo is None:
        problems.append(FieldViolation("occurred_at", "required, with a time zone"))
    elif report.occurred_at > now + CLOCK_SKEW:
        problems.append(FieldViolation("occurred_at", "is in the future"))
    return problems


def find_duplicate(history: Sequence[StatusEntry], report: StatusReport) -> StatusEntry | None:
    """The recorded entry `report` repeats (same status_id, or same code and timestamp), if any.

    Raises StatusConflictError when the status_id was used for another code or timestamp."""
    for entry in history:
        if entry.report.status_id == report.status_id:
            if (entry.code, entry.occurred_at) != (report.code, report.occurred_at):
                raise StatusConflictError(
                    f"status_id {report.status_id} was already used for another report",
                    meta={"status_id": report.status_id, "code": str(entry.code)},
                )
            return entry
        if (entry.code, entry.occurred_at) == (report.code, report.occurred_at):
            return entry
    # 01 is recorded once: a DMS that also reports it repeats what docaxis already knows.
    if report.code is StatusCode.ARRIVED:
        return next((e for e in history if e.code is StatusCode.ARRIVED), None)
    return None


def history_problem(history: Sequence[StatusEntry]) -> str | None:
    """Why a business history is illegal, or None.

    - 02, 03, 06 happen at most once (01 too, by find_duplicate);
    - a rejected (02) delivery has no other processing status (03–06);
    - 06 only after 03;
    - nothing (04, 05) after 06.
    """
    business = [
        e
        for e in ordered(history)
        if e.code in _BUSINESS and e.report.status_id != UNDELIVERABLE_STATUS_ID
    ]
    seen: set[StatusCode] = set()
    for entry in business:
        code = entry.code
        if code in _ONCE and code in seen:
            return f"{code} was already reported"
        if code is StatusCode.REJECTED and seen:
            return "a document already being processed cannot be rejected (02)"
        if StatusCode.REJECTED in seen:
            return "the document was rejected (02): no further processing status"
        if StatusCode.COMPLETED in seen:
            return "the document was completed (06): no further processing status"
        if code is StatusCode.COMPLETED and StatusCode.ACCEPTED not in seen:
            return "completed (06) before accepted (03)"
        seen.add(code)
    return None


def admit(
    history: Sequence[StatusEntry],
    entry: StatusEntry,
    *,
    received: bool,
    withdrawn: bool,
    recall: RecallState | None,
) -> StatusEntry | None:
    """Decides a report against a delivery's history: returns the recorded entry it duplicates,
    None when it is new and legal, or raises IllegalTransitionError.

    `received`: the recipient acknowledged the delivery (no status on a document never received).
    `withdrawn`: the delivery was withdrawn (recalled). `recall`: the recall's state, if any.
    A copy withdrawn before receipt is no longer its recipient's at all: NotFoundError, as for a
    delivery it never had (withdrawal.py).
    """
    if withdrawn and not received:
        raise NotFoundError("no such delivery among those you received")
    duplicate = find_duplicate(history, entry.report)
    if duplicate is not None:
        return duplicate
    code = entry.code
    meta = {"code": str(code)}
    if not received:
        raise NotReceivedError(
            "no status on a document the agency has not received (acknowledged)", meta=meta
        )
    if code in RECALL_ANSWERS:
        if recall is not RecallState.PENDING:
            raise IllegalTransitionError(
                f"{code} answers a recall, and none is pending for this delivery",
                meta={**meta, "recall": str(recall or "none")},
            )
        return None
    if withdrawn:
        raise IllegalTransitionError("the document was withdrawn for this recipient", meta=meta)
    if code is StatusCode.ARRIVED:
        return None
    problem = history_problem([*history, entry])
    if problem is not None:
        raise IllegalTransitionError(problem, meta=meta)
    return None
