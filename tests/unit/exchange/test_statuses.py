"""The status rules of domain.md §4: transitions judged on the history ordered by timestamps."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from services.common.errors import NotFoundError
from services.exchange.domain.statuses import (
    IllegalTransitionError,
    RecallState,
    StatusCode,
    StatusConflictError,
    StatusEntry,
    StatusReport,
    admit,
    history_problem,
    ordered,
    report_problems,
)

T0 = dt.datetime(2025, 8, 1, 3, 0, tzinfo=dt.UTC)
RECIPIENT = "000.00.13.H45"


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def entry(code: StatusCode, minutes: int, status_id: str | None = None) -> StatusEntry:
    report = StatusReport(status_id or f"s-{code}-{minutes}", code, at(minutes), "lý do")
    return StatusEntry(report, RECIPIENT, recorded_at=at(100))


def decide(
    history: list[StatusEntry],
    new: StatusEntry,
    *,
    received: bool = True,
    withdrawn: bool = False,
    recall: RecallState | None = None,
) -> StatusEntry | None:
    return admit(history, new, received=received, withdrawn=withdrawn, recall=recall)


ARRIVED = entry(StatusCode.ARRIVED, 0)


@pytest.mark.parametrize(
    "codes",
    [
        [StatusCode.ACCEPTED, StatusCode.ASSIGNED, StatusCode.PROCESSING, StatusCode.COMPLETED],
        [StatusCode.ACCEPTED, StatusCode.COMPLETED],
        [StatusCode.REJECTED],
        [StatusCode.PROCESSING, StatusCode.PROCESSING, StatusCode.ASSIGNED],
        [StatusCode.ASSIGNED, StatusCode.ACCEPTED, StatusCode.COMPLETED],
    ],
)
def test_legal_histories_are_admitted_one_report_at_a_time(codes: list[StatusCode]) -> None:
    history = [ARRIVED]
    for minute, code in enumerate(codes, start=1):
        new = entry(code, minute)
        assert decide(history, new) is None
        history.append(new)
    assert history_problem(history) is None


@pytest.mark.parametrize(
    ("before", "code", "why"),
    [
        ([], StatusCode.COMPLETED, "completed (06) before accepted (03)"),
        ([StatusCode.REJECTED], StatusCode.ACCEPTED, "rejected (02)"),
        ([StatusCode.REJECTED], StatusCode.PROCESSING, "rejected (02)"),
        ([StatusCode.ACCEPTED], StatusCode.REJECTED, "cannot be rejected"),
        ([StatusCode.ACCEPTED, StatusCode.COMPLETED], StatusCode.PROCESSING, "completed (06)"),
        ([StatusCode.ACCEPTED], StatusCode.ACCEPTED, "already reported"),
        ([StatusCode.ACCEPTED, StatusCode.COMPLETED], StatusCode.COMPLETED, "already reported"),
    ],
)
def test_illegal_transitions_are_refused_with_the_reason(
    before: list[StatusCode], code: StatusCode, why: str
) -> None:
    history = [ARRIVED, *(entry(c, i) for i, c in enumerate(before, start=1))]
    with pytest.raises(IllegalTransitionError, match=re.escape(why)) as refused:
        decide(history, entry(code, 50))
    assert refused.value.reason == "ILLEGAL_TRANSITION"
    assert refused.value.meta["code"] == code.value


def test_a_late_accepted_stamped_earlier_than_processing_is_admitted_in_timestamp_order() -> None:
    processing = entry(StatusCode.PROCESSING, 10)
    late_accepted = entry(StatusCode.ACCEPTED, 5)
    history = [ARRIVED, processing]
    assert decide(history, late_accepted) is None
    assert [e.code for e in ordered([*history, late_accepted])] == [
        StatusCode.ARRIVED,
        StatusCode.ACCEPTED,
        StatusCode.PROCESSING,
    ]


def test_a_late_accepted_stamped_after_completion_is_refused() -> None:
    """Order is by the reporters' timestamps: an 03 after the 06 makes the 06 come first."""
    history = [ARRIVED, entry(StatusCode.ACCEPTED, 1), entry(StatusCode.COMPLETED, 5)]
    with pytest.raises(IllegalTransitionError):
        decide(history, entry(StatusCode.PROCESSING, 9))


def test_accepted_and_processing_reported_together_order_by_code() -> None:
    """One DMS emits 03 and 05 with one timestamp on registration."""
    together = [entry(StatusCode.PROCESSING, 3), entry(StatusCode.ACCEPTED, 3)]
    assert [e.code for e in ordered(together)] == [StatusCode.ACCEPTED, StatusCode.PROCESSING]
    history = [ARRIVED, together[0]]
    assert decide(history, together[1]) is None
    assert decide([*history, together[1]], entry(StatusCode.COMPLETED, 3)) is None


def test_duplicates_by_status_id_or_by_code_and_time_return_the_first_entry() -> None:
    first = entry(StatusCode.ACCEPTED, 1, status_id="dms-1")
    history = [ARRIVED, first]
    same_id = entry(StatusCode.ACCEPTED, 1, status_id="dms-1")
    same_event = entry(StatusCode.ACCEPTED, 1, status_id="dms-other")
    assert decide(history, same_id) is first
    assert decide(history, same_event) is first
    # Even when the history has moved on, a duplicate stays a duplicate, not an illegal report.
    later = [*history, entry(StatusCode.COMPLETED, 9)]
    assert decide(later, same_id) is first


def test_a_status_id_reused_for_another_report_is_a_conflict() -> None:
    history = [ARRIVED, entry(StatusCode.ACCEPTED, 1, status_id="dms-1")]
    with pytest.raises(StatusConflictError) as conflict:
        decide(history, entry(StatusCode.PROCESSING, 2, status_id="dms-1"))
    assert conflict.value.reason == "DUPLICATE"


def test_a_second_arrival_repeats_the_first() -> None:
    assert decide([ARRIVED], entry(StatusCode.ARRIVED, 7)) is ARRIVED


def test_a_copy_withdrawn_before_receipt_is_not_found_for_its_recipient() -> None:
    with pytest.raises(NotFoundError):
        decide([], entry(StatusCode.RECALL_AGREED, 1), received=False, withdrawn=True)


def test_nothing_is_reported_on_a_copy_not_received_or_withdrawn() -> None:
    with pytest.raises(IllegalTransitionError, match="not received"):
        decide([], entry(StatusCode.ACCEPTED, 1), received=False)
    with pytest.raises(IllegalTransitionError, match="withdrawn"):
        decide([ARRIVED], entry(StatusCode.ACCEPTED, 1), withdrawn=True)


def test_recall_answers_need_a_pending_recall() -> None:
    agree = entry(StatusCode.RECALL_AGREED, 4)
    with pytest.raises(IllegalTransitionError, match="none is pending"):
        decide([ARRIVED], agree)
    with pytest.raises(IllegalTransitionError, match="none is pending"):
        decide([ARRIVED], agree, recall=RecallState.REFUSED)
    assert decide([ARRIVED], agree, recall=RecallState.PENDING) is None
    # Processing statuses do not block an answer, nor an answer the processing rules.
    done = [ARRIVED, entry(StatusCode.ACCEPTED, 1), entry(StatusCode.COMPLETED, 2)]
    assert decide(done, entry(StatusCode.RECALL_REFUSED, 5), recall=RecallState.PENDING) is None


def test_report_problems_are_listed_together() -> None:
    report = StatusReport("", StatusCode.REJECTED, at(60), description=" ")
    fields = {p.field for p in report_problems(report, now=T0)}
    assert fields == {"status_id", "description", "occurred_at"}
    sender_code = StatusReport("docaxis:x", StatusCode.RECALL_REQUESTED, T0)
    fields = {p.field for p in report_problems(sender_code, now=T0)}
    assert fields == {"status_id", "code"}
    naive = StatusReport("ok", StatusCode.ACCEPTED, dt.datetime(2025, 8, 1))
    assert [p.field for p in report_problems(naive, now=T0)] == ["occurred_at"]
    assert report_problems(StatusReport("ok", StatusCode.ACCEPTED, at(4)), now=T0) == []


def test_the_02_docaxis_records_for_an_undeliverable_copy_does_not_end_its_history() -> None:
    """A transport fact, not the recipient's refusal: a copy resent and delivered afterwards
    takes 03 and 06 as any other; a recipient's own 02 still ends it."""
    undeliverable = entry(StatusCode.REJECTED, 0, status_id="docaxis:undeliverable")
    later = [entry(StatusCode.ACCEPTED, 5), entry(StatusCode.COMPLETED, 6)]
    assert history_problem([undeliverable, *later]) is None
    assert history_problem([entry(StatusCode.REJECTED, 0), *later]) is not None
