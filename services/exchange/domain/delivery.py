"""The transport life of one copy (domain.md §4, §10): queue, push, acknowledgement, recall,
dead letter and resend, decided here as pure functions; the stores only load a copy, call the
rule and persist what it returns (with its ledger events), the way statuses.admit decides
statuses.

Each rule takes the copy as stored (`Copy`) and returns the copy as it must be stored next,
with the ledger events that record the change: every state change has one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.common.errors import DomainError, RejectedError
from services.exchange.domain.model import MAX_PUSHES_EXCEEDED, DeliveryState
from services.exchange.domain.statuses import (
    ARRIVAL_STATUS_ID,
    RECALL_STATUS_ID,
    RECALL_WITHDRAWN_STATUS_ID,
    UNDELIVERABLE_STATUS_ID,
    RecallState,
    StatusCode,
    StatusEntry,
    StatusReport,
)
from services.exchange.domain.withdrawal import check_acknowledgeable

# What a store keys its copies by (a uuid in Postgres, the delivery id in the fakes).
K = TypeVar("K", bound=Hashable)

# The copies still on their way: pushed (or fetched) again until acknowledged.
PENDING_STATES: frozenset[DeliveryState] = frozenset(
    {DeliveryState.ACCEPTED, DeliveryState.QUEUED, DeliveryState.PUSHED}
)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A fact for the tamper-evident ledger, staged in the same transaction as the change."""

    entry_type: str
    doc_uuid: str
    document_id: str
    occurred_at: dt.datetime
    from_agency: str = ""
    to_agency: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def text_commitment(text: str) -> str:
    """How the ledger commits to free text it may not hold in clear (ledger.md §3): the text
    itself stays in the exchange's tables."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CopyRef:
    """Whose copy of what: the parties every ledger event of the copy names."""

    delivery_id: str
    document_uuid: str
    document_id: str
    sender: str
    recipient: str

    def event(
        self, entry_type: str, at: dt.datetime, data: Mapping[str, Any], *, to: str = ""
    ) -> LedgerEvent:
        return LedgerEvent(
            entry_type=entry_type,
            doc_uuid=self.document_uuid,
            document_id=self.document_id,
            occurred_at=at,
            from_agency=self.sender,
            to_agency=to or self.recipient,
            data={"delivery": self.delivery_id, **data},
        )


# The most of a hand-over failure's detail kept with a copy: enough for an operator to see which
# check failed, bounded whatever a peer's error message holds.
MAX_FAILURE_DETAIL = 200
# What may stand for a credential in an error's text: a URL's user:password@, and a token,
# password or key given as `name=value`, `name: value` or `Bearer value`.
_SECRETS = re.compile(
    r"(?P<url>//)[^/\s:@]+:[^/\s@]+@"
    r"|(?P<name>\b(?:bearer|token|password|passwd|secret|api[_-]?key|authorization)\b[=:\s]+)"
    r"(?:(?:bearer|basic)\s+)?[^\s,;]+",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class HandoverFailure:
    """Why the copy's last hand-over to the next hub failed and it went again: the next hub asked
    for it again, could not be reached, or answered with a receipt that did not prove the
    hand-over (forwarding.Forwarder). Kept with the copy so that the dead letter the push limit
    makes says what an operator must fix. Made by `handover_failure` (the stores read back
    what it made)."""

    reason: str  # the error's reason code, e.g. PEER_RECEIPT_INVALID
    detail: str = ""


def handover_failure(reason: str, detail: str) -> HandoverFailure:
    """The failure as kept with a copy and shown to administrators: the detail on one line,
    without what may be a credential, at most MAX_FAILURE_DETAIL characters."""
    line = " ".join(detail.split())
    line = _SECRETS.sub(lambda m: f"{m.group('url') or m.group('name')}[redacted]", line)
    if len(line) > MAX_FAILURE_DETAIL:
        line = line[: MAX_FAILURE_DETAIL - 1] + "…"
    return HandoverFailure(reason, line)


@dataclass(frozen=True, slots=True)
class Copy:
    """The transport columns of one copy (exchange.delivery)."""

    state: DeliveryState
    push_count: int = 0
    queued_at: dt.datetime | None = None
    pushed_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    dead_lettered_at: dt.datetime | None = None
    dead_letter_reason: str = ""
    recall: RecallState | None = None
    # Its last failed hand-over to the next hub (federation), until a resend or re-route.
    last_failure: HandoverFailure | None = None

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES


def _no_longer_dead(copy: Copy, **changes: Any) -> Copy:
    """The copy without its dead letter, with `changes`: the dead-letter columns are set only
    while the copy is dead-lettered (Track shows them so), and a dead letter acknowledged late
    or withdrawn is over (the ledger keeps that it was one). One replace for both (a copy's
    acknowledgement made two, 3-4 us each)."""
    return dataclasses.replace(copy, dead_lettered_at=None, dead_letter_reason="", **changes)


def dead_letter_event(
    ref: CopyRef,
    reason: str,
    push_count: int,
    at: dt.datetime,
    cause: HandoverFailure | None = None,
) -> LedgerEvent:
    """The ledger's record of a copy delivery gave up on (too many pushes, or a recipient closed
    with nowhere to move its mail), with the failure that made its hand-overs go again when
    there was one (`cause`: its code in clear, its detail, free text, committed to by hash as
    ledger.md §3 asks)."""
    data: dict[str, Any] = {"event": "dead_lettered", "reason": reason, "push_count": push_count}
    if cause is not None:
        data["cause"] = cause.reason
        data["cause_detail_sha256"] = text_commitment(cause.detail)
    return ref.event("delivery", at, data)


def dead_letter_cause(reason: str, last_failure: HandoverFailure | None) -> HandoverFailure | None:
    """The cause shown beside a dead letter: the copy's last failed hand-over when the push limit
    dead-lettered it. A refusal for good or a closed recipient is its own cause (a failure
    remembered from before is not why)."""
    return last_failure if reason == MAX_PUSHES_EXCEEDED else None


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule's verdict: the copy as it must be stored, and the events recording the change."""

    copy: Copy
    events: tuple[LedgerEvent, ...] = ()


def queued(ref: CopyRef, copy: Copy, now: dt.datetime) -> Decision | None:
    """The relay published the copy's message. Recorded on the first publish only (a republish
    after a crash finds queued_at set), whatever the state: the DMS may already have been pushed
    the message; only an accepted copy moves to queued."""
    if copy.queued_at is not None:
        return None
    state = DeliveryState.QUEUED if copy.state is DeliveryState.ACCEPTED else copy.state
    return Decision(
        copy=dataclasses.replace(copy, state=state, queued_at=now),
        events=(ref.event("delivery", now, {"event": "queued"}),),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Push(Decision):
    """Hand the copy over (push or pull-mode fetch)."""

    # The copy's first hand-over ever (a resend does not start over): the end of its delivery
    # latency.
    first_handover: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered(Decision):
    """Not handed over again: the push limit is reached; terminal until an administrator resends
    it."""


def push(
    ref: CopyRef,
    copy: Copy,
    *,
    max_pushes: int | None,
    now: dt.datetime,
    published_at: dt.datetime | None = None,
) -> Push | DeadLettered | None:
    """Whether to hand the copy over once more. None when it must not be (acknowledged,
    withdrawn, dead-lettered, failed). A copy already handed over `max_pushes` times without an
    acknowledgement is dead-lettered instead (no limit when None). Only the first push is a
    ledger event: a stream that dropped before the acknowledgement pushes again.

    `published_at`: when the relay published the copy to its queue (the message says so; a
    pull-mode fetch has it from the store's record of the publish), None while it has not. The
    broker hands a message to its consumer before the relay has its confirm, so the relay
    leaves the copy's row alone (it would lock it while this claim waits) and the claim records
    the publish instead, by the rule the relay used (`queued`: once, at the relay's time),
    before the push: queued, then pushed."""
    if not copy.pending:
        return None
    recorded: tuple[LedgerEvent, ...] = ()
    if published_at is not None and (published := queued(ref, copy, published_at)) is not None:
        copy, recorded = published.copy, published.events
    if max_pushes is not None and copy.push_count >= max_pushes:
        dead = dataclasses.replace(
            copy,
            state=DeliveryState.DEAD_LETTERED,
            dead_lettered_at=now,
            dead_letter_reason=MAX_PUSHES_EXCEEDED,
        )
        return DeadLettered(
            copy=dead,
            events=(
                *recorded,
                dead_letter_event(
                    ref, MAX_PUSHES_EXCEEDED, copy.push_count, now, cause=copy.last_failure
                ),
            ),
        )
    pushed = dataclasses.replace(
        copy,
        state=DeliveryState.PUSHED,
        push_count=copy.push_count + 1,
        pushed_at=copy.pushed_at or now,
    )
    events = (ref.event("delivery", now, {"event": "pushed"}),) if pushed.push_count == 1 else ()
    return Push(copy=pushed, events=(*recorded, *events), first_handover=copy.pushed_at is None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledged(Decision):
    acknowledged_at: dt.datetime
    # Acknowledged before: the first acknowledgement stands and nothing changes.
    already: bool = False


def acknowledge(ref: CopyRef, copy: Copy, now: dt.datetime) -> Acknowledged:
    """The recipient's DMS stored the copy: acknowledged once (`receipt` ledger event); again,
    the first acknowledgement is returned. A withdrawn copy (recalled before its acknowledgement,
    or after it with the recipient's agreement) is refused: CopyWithdrawnError, and no receipt
    (withdrawal.py)."""
    check_acknowledgeable(ref.delivery_id, copy.state)
    if copy.acknowledged_at is not None:
        return Acknowledged(copy=copy, acknowledged_at=copy.acknowledged_at, already=True)
    acknowledged = _no_longer_dead(
        copy,
        state=DeliveryState.ACKNOWLEDGED,
        acknowledged_at=now,
        pushed_at=copy.pushed_at or now,
    )
    return Acknowledged(
        copy=acknowledged, events=(ref.event("receipt", now, {}),), acknowledged_at=now
    )


def arrival(ref: CopyRef, decided: Acknowledged, recorded_at: dt.datetime) -> StatusEntry | None:
    """The 01 (arrived) docaxis records for the recipient with a first acknowledgement, at the
    acknowledgement's time. None when the copy was acknowledged before (its 01 was recorded with
    that acknowledgement) or withdrawn before it was received (it never arrived)."""
    if decided.already or decided.copy.state is DeliveryState.WITHDRAWN:
        return None
    return StatusEntry(
        StatusReport(ARRIVAL_STATUS_ID, StatusCode.ARRIVED, decided.acknowledged_at),
        reported_by=ref.recipient,
        recorded_at=recorded_at,
    )


@dataclass(frozen=True, slots=True)
class GroupAcknowledged(Generic[K]):
    """What acknowledge_group decided for a group of claims."""

    # Each claim's answer in order: its acknowledgement, the error that refused it alone, or
    # None when the claimant has no such copy.
    answers: tuple[Acknowledged | DomainError | None, ...]
    # The copies a first acknowledgement changed, as they must be stored, by key.
    copies: Mapping[K, Copy]
    # Their `receipt` ledger events, in the claims' order.
    events: tuple[LedgerEvent, ...]
    # The 01 of each first acknowledgement of a copy that arrived (one per copy), in order.
    arrivals: tuple[tuple[K, CopyRef, StatusEntry], ...]

    def settled(self, ids: Sequence[str]) -> list[str]:
        """Of the claims' delivery ids (`ids`, in the claims' order), those no stream is to hold
        any more: acknowledged, or refused for good (withdrawn); each once."""
        return list(
            dict.fromkeys(
                i for i, answer in zip(ids, self.answers, strict=True) if answer is not None
            )
        )


def acknowledge_group(
    claims: Sequence[tuple[K, str]],
    copies: Mapping[K, tuple[CopyRef, Copy]],
    now: dt.datetime,
) -> GroupAcknowledged[K]:
    """Acknowledges each (key, recipient) claim with `acknowledge`, in order, against the copies
    as stored (`copies`, by key: those that exist): a copy claimed twice is acknowledged once,
    the second claim answered with the first acknowledgement; a claimant that is not the copy's
    recipient has no such copy (None). Each first acknowledgement gets its 01 (`arrival`)."""
    current = {key: copy for key, (_, copy) in copies.items()}
    answers: list[Acknowledged | DomainError | None] = []
    changed: dict[K, Copy] = {}
    events: list[LedgerEvent] = []
    arrivals: list[tuple[K, CopyRef, StatusEntry]] = []
    for key, recipient in claims:
        stored = copies.get(key)
        if stored is None or stored[0].recipient != recipient:
            answers.append(None)
            continue
        ref = stored[0]
        try:
            decided = acknowledge(ref, current[key], now)
        except DomainError as refused:
            answers.append(refused)
            continue
        answers.append(decided)
        if decided.already:
            continue
        current[key] = changed[key] = decided.copy
        events.extend(decided.events)
        arrived = arrival(ref, decided, now)
        if arrived is not None:
            arrivals.append((key, ref, arrived))
    return GroupAcknowledged(tuple(answers), changed, tuple(events), tuple(arrivals))


def status_event(ref: CopyRef, entry: StatusEntry, notice_id: str) -> LedgerEvent:
    """The ledger's record of a status, from the recipient to the sender, with the notice that
    carries it (none when the notice was suppressed: notices.py); the report's own id is
    committed to by hash."""
    data = {
        "delivery": ref.delivery_id,
        "code": entry.code.value,
        "reported_occurred_at": entry.occurred_at.astimezone(dt.UTC).isoformat(),
        "status_id_sha256": text_commitment(entry.report.status_id),
    }
    if notice_id:
        data["notice"] = notice_id
    return LedgerEvent(
        entry_type="status",
        doc_uuid=ref.document_uuid,
        document_id=ref.document_id,
        occurred_at=entry.recorded_at,
        from_agency=ref.recipient,
        to_agency=ref.sender,
        data=data,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Recalled(Decision):
    recall: RecallState
    # Recalled before: its current state is returned and nothing changes.
    already: bool = False
    # The recipient gets a recall notice (it holds or may hold the copy).
    notify_recipient: bool = False
    # The 13 recorded in the copy's history (received copies only).
    status: StatusEntry | None = None
    # The 15 that answers the sender's hub at once (a relayed recall of a copy withdrawn before
    # receipt): recorded in the copy's history and sent back along the hops like any status.
    answer: StatusEntry | None = None


# The description of the 15 a hub answers for a copy it withdrew before its recipient received it.
WITHDRAWN_BEFORE_RECEIPT_ANSWER = "Thu hồi trước khi nơi nhận nhận văn bản"


def recall(
    ref: CopyRef,
    copy: Copy,
    reason: str,
    now: dt.datetime,
    *,
    notice_id: str = "",
    relayed: bool = False,
) -> Recalled:
    """The sender recalls the copy (13). Not yet acknowledged: withdrawn at once, with a recall
    notice only if it was pushed (the DMS may have stored it). Acknowledged: a pending recall,
    a 13 in its history and a recall notice, to be answered with 15 or 16.

    `relayed`: the sender is at another hub (federation), where the copy was handed over to
    this hub and so waits for an answer: a copy withdrawn here before receipt answers 15 at
    once (the recipient never had it, so nobody else will answer).

    `notice_id` is the id the store gives the notice when one is due (named in the event)."""
    if copy.recall is not None:
        return Recalled(copy=copy, recall=copy.recall, already=True)
    received = copy.acknowledged_at is not None
    state = RecallState.PENDING if received else RecallState.WITHDRAWN_BEFORE_RECEIPT
    # pushed_at, not push_count: a resend starts the count again, but the DMS may still hold
    # what it was pushed before its dead letter (re-routing clears pushed_at: the new
    # recipient was never handed the copy).
    notify = received or copy.pushed_at is not None
    data: dict[str, str] = {"reason_sha256": text_commitment(reason)}
    if notify:
        data["notice"] = notice_id
    data["event"] = "requested" if received else "withdrawn_before_receipt"
    changed = (
        dataclasses.replace(copy, recall=state)
        if received
        else _no_longer_dead(copy, recall=state, state=DeliveryState.WITHDRAWN)
    )
    status = (
        StatusEntry(
            StatusReport(RECALL_STATUS_ID, StatusCode.RECALL_REQUESTED, now, reason),
            reported_by=ref.sender,
            recorded_at=now,
        )
        if received
        else None
    )
    answer = (
        StatusEntry(
            StatusReport(
                RECALL_WITHDRAWN_STATUS_ID,
                StatusCode.RECALL_AGREED,
                now,
                WITHDRAWN_BEFORE_RECEIPT_ANSWER,
            ),
            reported_by=ref.recipient,
            recorded_at=now,
        )
        if relayed and not received
        else None
    )
    return Recalled(
        copy=changed,
        events=(ref.event("revoke", now, data),),
        recall=state,
        notify_recipient=notify,
        status=status,
        answer=answer,
    )


def answer_recall(copy: Copy, code: StatusCode) -> Copy:
    """A recipient's admitted 15 (agreed: the copy is withdrawn) or 16 (refused) settles the
    pending recall (statuses.admit has checked one is pending); other codes change nothing."""
    if code is StatusCode.RECALL_AGREED:
        return dataclasses.replace(copy, recall=RecallState.AGREED, state=DeliveryState.WITHDRAWN)
    if code is StatusCode.RECALL_REFUSED:
        return dataclasses.replace(copy, recall=RecallState.REFUSED)
    return copy


class NotDeadLetteredError(RejectedError):
    """Only a dead-lettered copy can be resent."""

    reason = "NOT_DEAD_LETTERED"


def resend(
    ref: CopyRef,
    copy: Copy,
    *,
    administrator_serial: str,
    administrator_subject: str,
    reason: str,
    now: dt.datetime,
) -> Decision:
    """An administrator puts a dead-lettered copy back on the queued path: the next push counts
    from zero; queued_at and pushed_at keep the first time (the ledger has every step). The
    ledger holds no personal data or free text in clear (ledger.md §3): the certificate serial
    names the administrator, the subject and reason are committed to by hash. The copy forgets
    its last failed hand-over: the administrator resends once the cause is fixed, and a failure
    that comes back is remembered again."""
    if copy.state is not DeliveryState.DEAD_LETTERED:
        raise NotDeadLetteredError(
            f"delivery {ref.delivery_id} is {copy.state}, not dead-lettered",
            meta={"delivery_id": ref.delivery_id, "state": str(copy.state)},
        )
    event = ref.event(
        "delivery",
        now,
        {
            "event": "resent",
            "administrator_serial": administrator_serial,
            "administrator_subject_sha256": text_commitment(administrator_subject),
            "reason_sha256": text_commitment(reason),
            "dead_letter_reason": copy.dead_letter_reason,
            "push_count": copy.push_count,
        },
    )
    resent = _no_longer_dead(copy, state=DeliveryState.QUEUED, push_count=0, last_failure=None)
    return Decision(copy=resent, events=(event,))


def dead_letter(ref: CopyRef, copy: Copy, reason: str, now: dt.datetime) -> Decision | None:
    """Delivery gives up on a waiting copy for `reason` (e.g. its recipient closed with nowhere
    to move its mail). None when the copy is no longer waiting."""
    if not copy.pending:
        return None
    dead = dataclasses.replace(
        copy, state=DeliveryState.DEAD_LETTERED, dead_lettered_at=now, dead_letter_reason=reason
    )
    return Decision(copy=dead, events=(dead_letter_event(ref, reason, copy.push_count, now),))


def refused_for_now(
    ref: CopyRef, copy: Copy, hub: str, reason: str, retry_at: dt.datetime, now: dt.datetime
) -> Decision | None:
    """The next hub refused the copy for a reason that may pass (peering.refusal_retry_at): it
    waits to be handed over again at `retry_at`, and that hand-over does not count against the
    push limit (the peer answered: nothing was lost on the way). None when the copy is no
    longer waiting."""
    if not copy.pending:
        return None
    waiting = dataclasses.replace(
        copy, state=DeliveryState.QUEUED, push_count=max(0, copy.push_count - 1)
    )
    event = ref.event(
        "delivery",
        now,
        {"event": "refused", "hub": hub, "reason": reason, "retry_at": retry_at.isoformat()},
    )
    return Decision(copy=waiting, events=(event,))


def undeliverable(ref: CopyRef, hub: str, reason: str, now: dt.datetime) -> StatusEntry:
    """The 02 that tells the sender the next hub refused its copy for good (the copy is
    dead-lettered: an administrator may resend it once the cause is fixed)."""
    return StatusEntry(
        StatusReport(
            UNDELIVERABLE_STATUS_ID,
            StatusCode.REJECTED,
            now,
            f"Không chuyển được văn bản: trục {hub} từ chối ({reason})",
        ),
        reported_by=ref.recipient,
        recorded_at=now,
    )
