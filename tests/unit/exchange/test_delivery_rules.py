"""The transport rules of one copy (services/exchange/domain/delivery.py), without any store."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.exchange.domain import delivery
from services.exchange.domain.delivery import Copy, CopyRef
from services.exchange.domain.model import MAX_PUSHES_EXCEEDED, DeliveryState
from services.exchange.domain.statuses import RecallState, StatusCode
from services.exchange.domain.withdrawal import CopyWithdrawnError

REF = CopyRef("d-1", "u-1", "000.00.01.H01,2025/07/01,1/BC", "SENDER", "RECIPIENT")
T0 = dt.datetime(2025, 7, 1, 8, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=1)


def test_the_first_push_is_a_ledger_event_and_a_repeat_is_not() -> None:
    first = delivery.push(REF, Copy(DeliveryState.QUEUED), max_pushes=3, now=T0)
    assert isinstance(first, delivery.Push)
    assert first.first_handover
    assert (first.copy.state, first.copy.push_count, first.copy.pushed_at) == (
        DeliveryState.PUSHED,
        1,
        T0,
    )
    assert [e.data for e in first.events] == [{"delivery": "d-1", "event": "pushed"}]
    again = delivery.push(REF, first.copy, max_pushes=3, now=T1)
    assert isinstance(again, delivery.Push)
    assert not again.first_handover
    assert (again.copy.push_count, again.copy.pushed_at, again.events) == (2, T0, ())


def test_a_push_from_the_queue_records_the_relays_publish_first_once() -> None:
    """The claim of a copy the broker handed over before the relay marked it: queued at the
    relay's time, then pushed; a copy already queued is not, nor one the relay has not
    published yet (no time: a fetch of a copy still in the outbox)."""
    first = delivery.push(REF, Copy(DeliveryState.ACCEPTED), max_pushes=3, now=T1, published_at=T0)
    assert isinstance(first, delivery.Push)
    assert (first.copy.state, first.copy.queued_at, first.copy.pushed_at) == (
        DeliveryState.PUSHED,
        T0,
        T1,
    )
    assert [(e.occurred_at, e.data["event"]) for e in first.events] == [
        (T0, "queued"),
        (T1, "pushed"),
    ]
    again = delivery.push(REF, first.copy, max_pushes=3, now=T1, published_at=T1)
    assert isinstance(again, delivery.Push)
    assert (again.copy.queued_at, again.events) == (T0, ())
    unpublished = delivery.push(REF, Copy(DeliveryState.ACCEPTED), max_pushes=3, now=T1)
    assert unpublished is not None
    assert (unpublished.copy.queued_at, [e.data["event"] for e in unpublished.events]) == (
        None,
        ["pushed"],
    )


def test_the_push_limit_dead_letters_instead_of_pushing() -> None:
    copy = Copy(DeliveryState.PUSHED, push_count=3, pushed_at=T0)
    dead = delivery.push(REF, copy, max_pushes=3, now=T1)
    assert isinstance(dead, delivery.DeadLettered)
    assert (dead.copy.state, dead.copy.dead_letter_reason, dead.copy.push_count) == (
        DeliveryState.DEAD_LETTERED,
        MAX_PUSHES_EXCEEDED,
        3,
    )
    assert dead.events[0].data["event"] == "dead_lettered"
    assert delivery.push(REF, dead.copy, max_pushes=3, now=T1) is None
    assert isinstance(delivery.push(REF, copy, max_pushes=None, now=T1), delivery.Push)


RECEIPT_INVALID = delivery.handover_failure(
    "PEER_RECEIPT_INVALID", "hub national's receipt of u-1 for RECIPIENT: SIGNER_MISMATCH"
)


def test_a_copy_dead_lettered_at_the_limit_carries_its_last_failed_hand_over() -> None:
    """Federation: the next hub's receipts did not verify until the limit. The dead letter's
    reason stays MAX_PUSHES_EXCEEDED (which rule gave up) and its cause goes beside it: in the
    copy (the listing shows it, dead_letter_cause) and the ledger event (the code in clear, the
    detail committed to by hash)."""
    copy = Copy(DeliveryState.PUSHED, push_count=3, pushed_at=T0, last_failure=RECEIPT_INVALID)
    dead = delivery.push(REF, copy, max_pushes=3, now=T1)
    assert isinstance(dead, delivery.DeadLettered)
    assert (dead.copy.dead_letter_reason, dead.copy.last_failure) == (
        MAX_PUSHES_EXCEEDED,
        RECEIPT_INVALID,
    )
    assert delivery.dead_letter_cause(MAX_PUSHES_EXCEEDED, dead.copy.last_failure) == (
        RECEIPT_INVALID
    )
    (event,) = dead.events
    assert event.data == {
        "delivery": "d-1",
        "event": "dead_lettered",
        "reason": MAX_PUSHES_EXCEEDED,
        "push_count": 3,
        "cause": "PEER_RECEIPT_INVALID",
        "cause_detail_sha256": delivery.text_commitment(RECEIPT_INVALID.detail),
    }


def test_a_copy_that_never_failed_a_hand_over_is_dead_lettered_for_the_limit_alone() -> None:
    """A recipient's DMS stream that keeps dropping: MAX_PUSHES_EXCEEDED, nothing beside it."""
    dead = delivery.push(REF, Copy(DeliveryState.PUSHED, push_count=3), max_pushes=3, now=T1)
    assert isinstance(dead, delivery.DeadLettered)
    assert (dead.copy.dead_letter_reason, dead.copy.last_failure) == (MAX_PUSHES_EXCEEDED, None)
    assert delivery.dead_letter_cause(MAX_PUSHES_EXCEEDED, None) is None
    assert dead.events[0].data == {
        "delivery": "d-1",
        "event": "dead_lettered",
        "reason": MAX_PUSHES_EXCEEDED,
        "push_count": 3,
    }


def test_a_dead_letter_for_another_reason_shows_no_earlier_failure_as_its_cause() -> None:
    """A refusal for good or a closed recipient is its own cause."""
    assert delivery.dead_letter_cause("RECIPIENT_CLOSED", RECEIPT_INVALID) is None
    assert delivery.dead_letter_cause("national:INVALID_ADDRESSEE", RECEIPT_INVALID) is None


@pytest.mark.parametrize(
    ("detail", "kept"),
    [
        (
            "peer hub b: UNAVAILABLE failed to connect to https://ops:hunter2@hub-b.example:8443",
            "peer hub b: UNAVAILABLE failed to connect to https://[redacted]hub-b.example:8443",
        ),
        ("refused: token=abc.def.ghi, retry", "refused: token=[redacted], retry"),
        ("Authorization: Bearer eyJhbGciOi", "Authorization: [redacted]"),
        ("UNAUTHENTICATED Bearer eyJhbGciOi.x", "UNAUTHENTICATED Bearer [redacted]"),
        ("password = s3cret\nnext line", "password = [redacted] next line"),
    ],
)
def test_a_failures_detail_holds_no_credential(detail: str, kept: str) -> None:
    assert delivery.handover_failure("UNAVAILABLE", detail).detail == kept


def test_a_failures_detail_is_bounded() -> None:
    failure = delivery.handover_failure("PEER_RECEIPT_INVALID", "x" * 5000)
    assert len(failure.detail) == delivery.MAX_FAILURE_DETAIL
    assert failure.detail.endswith("…")


@pytest.mark.parametrize(
    "state", [DeliveryState.ACKNOWLEDGED, DeliveryState.WITHDRAWN, DeliveryState.FAILED]
)
def test_a_copy_that_is_done_is_never_pushed(state: DeliveryState) -> None:
    assert delivery.push(REF, Copy(state), max_pushes=None, now=T0) is None


def test_an_acknowledgement_counts_once_and_a_withdrawn_copy_is_refused() -> None:
    acked = delivery.acknowledge(REF, Copy(DeliveryState.PUSHED, pushed_at=T0), T1)
    assert (acked.already, acked.acknowledged_at, acked.copy.state) == (
        False,
        T1,
        DeliveryState.ACKNOWLEDGED,
    )
    assert [e.entry_type for e in acked.events] == ["receipt"]
    again = delivery.acknowledge(REF, acked.copy, T1 + dt.timedelta(hours=1))
    assert (again.already, again.acknowledged_at, again.events) == (True, T1, ())
    assert acked.copy.pushed_at == T0
    unpushed = delivery.acknowledge(REF, Copy(DeliveryState.QUEUED), T1)
    assert unpushed.copy.pushed_at == T1  # handed over at the latest when acknowledged
    # Issue 17: withdrawn before receipt, or after it by an agreed recall.
    for copy in (
        Copy(DeliveryState.WITHDRAWN),
        dataclasses.replace(acked.copy, state=DeliveryState.WITHDRAWN),
    ):
        with pytest.raises(CopyWithdrawnError):
            delivery.acknowledge(REF, copy, T1)


def test_a_recall_withdraws_an_unreceived_copy_and_asks_about_a_received_one() -> None:
    unpushed = delivery.recall(REF, Copy(DeliveryState.QUEUED), "sai", T1, notice_id="n")
    assert (unpushed.recall, unpushed.copy.state, unpushed.notify_recipient) == (
        RecallState.WITHDRAWN_BEFORE_RECEIPT,
        DeliveryState.WITHDRAWN,
        False,
    )
    assert "notice" not in unpushed.events[0].data
    assert unpushed.status is None
    pushed = delivery.recall(REF, Copy(DeliveryState.PUSHED, push_count=1, pushed_at=T0), "sai", T1)
    assert pushed.notify_recipient
    assert pushed.copy.state is DeliveryState.WITHDRAWN
    received = Copy(DeliveryState.ACKNOWLEDGED, push_count=1, acknowledged_at=T0)
    asked = delivery.recall(REF, received, "sai", T1, notice_id="n")
    assert (asked.recall, asked.copy.state, asked.events[0].data["notice"]) == (
        RecallState.PENDING,
        DeliveryState.ACKNOWLEDGED,
        "n",
    )
    assert asked.status is not None
    assert asked.status.code is StatusCode.RECALL_REQUESTED
    repeated = delivery.recall(REF, asked.copy, "khác", T1)
    assert (repeated.already, repeated.recall, repeated.events) == (True, RecallState.PENDING, ())


def test_answers_settle_a_pending_recall() -> None:
    pending = Copy(DeliveryState.ACKNOWLEDGED, acknowledged_at=T0, recall=RecallState.PENDING)
    agreed = delivery.answer_recall(pending, StatusCode.RECALL_AGREED)
    assert (agreed.recall, agreed.state) == (RecallState.AGREED, DeliveryState.WITHDRAWN)
    refused = delivery.answer_recall(pending, StatusCode.RECALL_REFUSED)
    assert (refused.recall, refused.state) == (RecallState.REFUSED, DeliveryState.ACKNOWLEDGED)
    assert delivery.answer_recall(pending, StatusCode.ACCEPTED) == pending


def test_only_a_dead_letter_is_resent_and_it_starts_counting_again() -> None:
    """Its push count from zero, its last failed hand-over forgotten (fixed, or remembered
    again when it comes back)."""
    dead = Copy(
        DeliveryState.DEAD_LETTERED,
        push_count=20,
        queued_at=T0,
        dead_lettered_at=T1,
        dead_letter_reason=MAX_PUSHES_EXCEEDED,
        last_failure=RECEIPT_INVALID,
    )
    resent = delivery.resend(
        REF, dead, administrator_serial="1a", administrator_subject="CN=a", reason="r", now=T1
    )
    assert (
        resent.copy.state,
        resent.copy.push_count,
        resent.copy.queued_at,
        resent.copy.last_failure,
    ) == (DeliveryState.QUEUED, 0, T0, None)
    assert resent.events[0].data["push_count"] == 20
    assert "CN=a" not in str(resent.events[0].data)  # committed to by hash only
    with pytest.raises(delivery.NotDeadLetteredError):
        delivery.resend(
            REF, resent.copy, administrator_serial="1a", administrator_subject="", reason="", now=T1
        )


def test_queued_is_recorded_on_the_first_publish_only() -> None:
    first = delivery.queued(REF, Copy(DeliveryState.ACCEPTED), T0)
    assert first is not None
    assert (first.copy.state, first.copy.queued_at) == (
        DeliveryState.QUEUED,
        T0,
    )
    assert delivery.queued(REF, first.copy, T1) is None
    # Pushed before the relay's commit: keeps its state, still gets its queued time.
    raced = delivery.queued(REF, Copy(DeliveryState.PUSHED, push_count=1), T0)
    assert raced is not None
    assert raced.copy.state is DeliveryState.PUSHED


def test_a_closed_recipients_waiting_copy_is_dead_lettered() -> None:
    decided = delivery.dead_letter(REF, Copy(DeliveryState.PUSHED, push_count=2), "CLOSED", T1)
    assert decided is not None
    assert decided.copy.dead_letter_reason == "CLOSED"
    assert decided.events[0].data == {
        "delivery": "d-1",
        "event": "dead_lettered",
        "reason": "CLOSED",
        "push_count": 2,
    }
    assert delivery.dead_letter(REF, Copy(DeliveryState.ACKNOWLEDGED), "CLOSED", T1) is None


def test_a_dead_letter_acknowledged_late_or_withdrawn_is_no_longer_one() -> None:
    """The dead-letter columns are set only while the copy is dead-lettered: Track showed a copy
    acknowledged (or withdrawn) after its dead letter with the dead letter's time and reason
    still set (found by the lifecycle state machine)."""
    dead = Copy(
        DeliveryState.DEAD_LETTERED,
        push_count=3,
        pushed_at=T0,
        dead_lettered_at=T0,
        dead_letter_reason=MAX_PUSHES_EXCEEDED,
    )
    acknowledged = delivery.acknowledge(REF, dead, T1).copy
    assert (acknowledged.state, acknowledged.acknowledged_at) == (DeliveryState.ACKNOWLEDGED, T1)
    assert (acknowledged.dead_lettered_at, acknowledged.dead_letter_reason) == (None, "")
    withdrawn = delivery.recall(REF, dead, "Thu hồi", T1).copy
    assert withdrawn.state is DeliveryState.WITHDRAWN
    assert (withdrawn.dead_lettered_at, withdrawn.dead_letter_reason) == (None, "")


def test_a_copy_pushed_before_its_resend_is_recalled_with_a_notice() -> None:
    """A resend starts the push count again, but the DMS may hold what it was pushed before the
    dead letter: recalling the copy before its next push still tells the recipient (the recall
    decided on the push count and said nothing; found by the lifecycle state machine)."""
    dead = Copy(
        DeliveryState.DEAD_LETTERED,
        push_count=3,
        pushed_at=T0,
        dead_lettered_at=T0,
        dead_letter_reason=MAX_PUSHES_EXCEEDED,
    )
    resent = delivery.resend(
        REF, dead, administrator_serial="5a7e", administrator_subject="CN=qt", reason="x", now=T1
    ).copy
    assert (resent.state, resent.push_count) == (DeliveryState.QUEUED, 0)
    recalled = delivery.recall(REF, resent, "Thu hồi", T1, notice_id="n")
    assert (recalled.recall, recalled.notify_recipient) == (
        RecallState.WITHDRAWN_BEFORE_RECEIPT,
        True,
    )
    assert recalled.events[0].data["notice"] == "n"


def test_a_recall_from_another_hub_answers_15_for_a_copy_withdrawn_before_receipt() -> None:
    """The sender's hub handed the copy over and waits for an answer: nobody else gives it."""
    pushed = Copy(DeliveryState.PUSHED, push_count=1, pushed_at=T0)
    withdrawn = delivery.recall(REF, pushed, "sai", T1, notice_id="n", relayed=True)
    assert withdrawn.copy.state is DeliveryState.WITHDRAWN
    assert withdrawn.answer is not None
    assert (withdrawn.answer.code, withdrawn.answer.reported_by) == (
        StatusCode.RECALL_AGREED,
        "RECIPIENT",
    )
    assert delivery.recall(REF, pushed, "sai", T1).answer is None  # the sender is here
    received = Copy(DeliveryState.ACKNOWLEDGED, push_count=1, acknowledged_at=T0)
    assert delivery.recall(REF, received, "sai", T1, relayed=True).answer is None  # it decides
