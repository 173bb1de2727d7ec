"""Which status notices queue, coalesce or are suppressed (services/exchange/domain/notices.py)."""

from __future__ import annotations

from services.exchange.domain.notices import NewNotice, NoticeFate, Waiting, fates

QUEUED, COALESCED, SUPPRESSED = NoticeFate.QUEUED, NoticeFate.COALESCED, NoticeFate.SUPPRESSED


def test_notices_queue_up_to_the_bound_and_are_suppressed_past_it() -> None:
    new = [NewNotice("S", f"d-{n}") for n in range(4)]
    assert fates(new, {}, bound=3, coalesce_after=1) == [QUEUED, QUEUED, QUEUED, SUPPRESSED]
    assert fates(new, {"S": Waiting(2, frozenset())}, bound=3, coalesce_after=1) == [
        QUEUED,
        *[SUPPRESSED] * 3,
    ]


def test_a_copys_unhanded_notice_is_replaced_even_at_the_bound() -> None:
    """One replaces one: coalescing never adds to what waits."""
    waiting = {"S": Waiting(3, frozenset({"d-1"}))}
    assert fates(
        [NewNotice("S", "d-1"), NewNotice("S", "d-2")], waiting, bound=3, coalesce_after=1
    ) == [
        COALESCED,
        SUPPRESSED,
    ]


def test_two_statuses_of_one_copy_in_one_batch_coalesce_and_agencies_count_apart() -> None:
    new = [NewNotice("S", "d-1"), NewNotice("S", "d-1"), NewNotice("T", "d-9")]
    assert fates(new, {"S": Waiting(1, frozenset())}, bound=2, coalesce_after=1) == [
        QUEUED,
        COALESCED,
        QUEUED,
    ]


def test_an_agency_keeping_up_gets_every_status_of_a_copy() -> None:
    """Below `coalesce_after` waiting notices nothing coalesces."""
    new = [NewNotice("S", "d-1"), NewNotice("S", "d-1"), NewNotice("S", "d-1")]
    assert fates(new, {}, bound=10, coalesce_after=2) == [QUEUED, QUEUED, COALESCED]


def test_a_status_another_hub_carries_on_is_never_coalesced_nor_suppressed() -> None:
    """The hop is not the sender: a status it held back would be missing at the sender's hub for
    good."""
    waiting = {"S": Waiting(3, frozenset({"d-1"}))}
    new = [NewNotice("S", "d-1"), NewNotice("S", "d-2"), NewNotice("S", "d-3")]
    assert fates(new, waiting, bound=3, coalesce_after=1, forwarded={"d-1", "d-2"}) == [
        QUEUED,
        QUEUED,
        SUPPRESSED,
    ]
