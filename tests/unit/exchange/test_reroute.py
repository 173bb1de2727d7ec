"""The re-routing sweep's decisions, with fakes of its store and the directory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from docaxis_client.trust.bindings import Bindings
from services.exchange.domain.addresses import AddressState, Resolution
from services.exchange.domain.signature_rules import SignatureRules
from services.exchange.service_layer.ports import AgencyView
from services.exchange.service_layer.reroute import RECIPIENT_CLOSED, Moved, Rerouter

NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
OPEN, MERGED, SUCCESSOR, GONE, ONLY_NOTICES, ALSO_MERGED, ELSEWHERE, MOVED_AWAY = (
    "000.00.01.H45",
    "000.00.02.H45",
    "000.00.03.H45",
    "000.00.04.H45",
    "000.00.05.H45",
    "000.00.06.H45",
    "000.00.07.H46",
    "000.00.08.H45",
)


@dataclass
class FakeStore:
    waiting: list[str]
    # Per agency: (copies that can move, copies that cannot, notices).
    mail: dict[str, tuple[int, int, int]]
    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def waiting_agencies(self) -> list[str]:
        return list(self.waiting)

    async def reroute(
        self, olds: Sequence[str], new: str, hub: str | None, now: dt.datetime
    ) -> dict[str, tuple[int, int]]:
        self.calls.append(("reroute", *olds, new, hub or ""))
        moved = {}
        for old in olds:
            movable, stuck, notices = self.mail[old]
            self.mail[old] = (0, stuck, 0)
            moved[old] = (movable, notices)
        return moved

    async def dead_letter_waiting(self, agency: str, reason: str, now: dt.datetime) -> int:
        self.calls.append(("dead_letter", agency, reason))
        movable, stuck, notices = self.mail[agency]
        self.mail[agency] = (0, 0, notices)
        return movable + stuck


class FakeDirectory:
    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        raise AssertionError("the sweep resolves, it does not look up")

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        assert on_date == dt.date(2026, 11, 23)  # Vietnam's day
        table = {
            OPEN: Resolution(OPEN, AddressState.OPEN, OPEN),
            MERGED: Resolution(MERGED, AddressState.CLOSED, SUCCESSOR),
            GONE: Resolution(GONE, AddressState.CLOSED, None, problem="closed"),
            ONLY_NOTICES: Resolution(ONLY_NOTICES, AddressState.CLOSED, None, problem="closed"),
            ALSO_MERGED: Resolution(ALSO_MERGED, AddressState.CLOSED, SUCCESSOR),
            MOVED_AWAY: Resolution(MOVED_AWAY, AddressState.CLOSED, ELSEWHERE, hub="national"),
        }
        return {code: table[code] for code in codes}

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
        raise AssertionError("the sweep moves mail, it verifies no signature")

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        raise AssertionError("the sweep moves mail, it verifies no signature")


async def test_closed_agencies_mail_moves_or_is_dead_lettered_and_open_ones_are_left() -> None:
    store = FakeStore(
        [OPEN, MERGED, GONE, ONLY_NOTICES],
        {OPEN: (1, 0, 1), MERGED: (2, 1, 3), GONE: (0, 2, 0), ONLY_NOTICES: (0, 0, 4)},
    )
    rerouter = Rerouter(store, FakeDirectory(), clock=lambda: NOW)
    assert await rerouter.sweep() == [
        Moved(MERGED, SUCCESSOR, deliveries=2, notices=3, dead_lettered=1),
        Moved(GONE, "", dead_lettered=2),
    ]
    assert ("reroute", MERGED, SUCCESSOR, "") in store.calls
    assert not [call for call in store.calls if GONE in call and call[0] == "reroute"]
    assert ("dead_letter", OPEN, RECIPIENT_CLOSED) not in store.calls
    # Notices for an agency closed without successor cannot go anywhere: a later sweep with
    # nothing else to do reports nothing.
    assert await rerouter.sweep() == []


async def test_codes_closed_into_one_successor_move_together_in_code_order() -> None:
    """Two codes merged into one move in one call (the store orders their copies by acceptance
    and keeps the first listed copy of a document), whatever order the store found them in."""
    store = FakeStore(
        [ALSO_MERGED, OPEN, MERGED],
        {OPEN: (1, 0, 0), MERGED: (1, 0, 0), ALSO_MERGED: (2, 1, 0)},
    )
    rerouter = Rerouter(store, FakeDirectory(), clock=lambda: NOW)
    assert await rerouter.sweep() == [
        Moved(MERGED, SUCCESSOR, deliveries=1),
        Moved(ALSO_MERGED, SUCCESSOR, deliveries=2, dead_lettered=1),
    ]
    assert [c for c in store.calls if c[0] == "reroute"] == [
        ("reroute", MERGED, ALSO_MERGED, SUCCESSOR, "")
    ]


async def test_a_successor_another_hub_serves_is_the_moved_copies_next_hop() -> None:
    store = FakeStore([MOVED_AWAY], {MOVED_AWAY: (3, 0, 0)})
    rerouter = Rerouter(store, FakeDirectory(), clock=lambda: NOW)
    assert await rerouter.sweep() == [Moved(MOVED_AWAY, ELSEWHERE, deliveries=3)]
    assert store.calls[0] == ("reroute", MOVED_AWAY, ELSEWHERE, "national")
