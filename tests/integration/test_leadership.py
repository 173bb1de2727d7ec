"""Leader election on a Postgres advisory lock: one leader among processes, failover when its
session goes (as when its process is killed), and the lost leader's term ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common import postgres
from services.common.leadership import (
    Elected,
    PerPeer,
    PostgresLeadership,
    Singleton,
    lead_when_elected,
)
from tests.infra import SuiteServices
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(services: SuiteServices) -> str:
    """A database of its own: advisory locks are per database, and the suite's axis holds the
    real jobs' locks in the shared one."""
    return await postgres.recreate_database(services.database_url, "docaxis_leadership")


class Candidate:
    """A Leadership whose term records when it starts and ends."""

    def __init__(self, database_url: str, elected: Elected = Singleton.SWEEPS) -> None:
        self.changes: list[bool] = []
        self.leadership = PostgresLeadership(elected, database_url, check_interval_s=0.05)
        self.leading = False
        self.terms = 0
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _term(self, ended: asyncio.Event) -> None:
        self.terms += 1
        await ended.wait()

    def _changed(self, _: Elected, leading: bool) -> None:
        self.leading = leading
        self.changes.append(leading)

    def start(self) -> None:
        self.task = asyncio.create_task(
            lead_when_elected(
                self.leadership,
                self.stop,
                self._term,
                on_change=self._changed,
                standby_poll_s=0.05,
            )
        )

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task


@pytest.fixture
async def candidates(database: str) -> AsyncIterator[list[Candidate]]:
    started = [Candidate(database) for _ in range(3)]
    for candidate in started:
        candidate.start()
    yield started
    for candidate in started:
        await candidate.halt()


async def leaders(candidates: list[Candidate]) -> list[Candidate]:
    await asyncio.sleep(0)
    return [c for c in candidates if c.leading]


async def test_one_of_several_candidates_leads_and_another_takes_over_when_it_stops(
    candidates: list[Candidate],
) -> None:
    first = (await eventually(lambda: leaders(candidates), lambda found: len(found) == 1))[0]
    await asyncio.sleep(0.3)  # standbys keep trying meanwhile: still exactly one leader
    assert await leaders(candidates) == [first]
    await first.halt()
    assert first.changes == [True, False]
    second = (await eventually(lambda: leaders(candidates), lambda found: len(found) == 1))[0]
    assert second is not first


async def test_a_leader_whose_lock_session_dies_stops_its_term_and_another_leads(
    candidates: list[Candidate], database: str
) -> None:
    """The lock's session ended by the server (what the kernel's closing of a killed process's
    socket or the TCP keepalives amount to): the leader notices, its term ends, another leads,
    and the old one stands by again rather than giving up."""
    first = (await eventually(lambda: leaders(candidates), lambda found: len(found) == 1))[0]
    admin = await asyncpg.connect(database)
    try:
        terminated = await admin.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objid = $1 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            int(Singleton.SWEEPS),
        )
    finally:
        await admin.close()
    assert terminated
    await eventually(
        lambda: asyncio.sleep(0, first.changes), lambda seen: seen[:2] == [True, False]
    )
    now = (await eventually(lambda: leaders(candidates), lambda found: len(found) == 1))[0]
    assert sum(c.terms for c in candidates) >= 2
    assert first.task is not None
    assert not first.task.done()  # standing by again
    if now is first:  # it may win the next election itself: then its first term had ended
        assert first.terms == 2


async def test_each_peer_s_forwarder_has_its_own_leader_and_fails_over_alone(database: str) -> None:
    """Two processes, each standing for both peers' forwarders (as every worker and replica
    does): one leader per peer, whichever process; the peer whose leader stops gets the other
    process, and the other peer's leader goes on."""
    peers = ("national", "province-b")
    assert int(PerPeer.forwarder(peers[0])) != int(PerPeer.forwarder(peers[1]))
    assert {int(PerPeer.forwarder(p)) for p in peers}.isdisjoint(int(s) for s in Singleton)
    by_peer = {p: [Candidate(database, PerPeer.forwarder(p)) for _ in range(2)] for p in peers}
    for group in by_peer.values():
        for candidate in group:
            candidate.start()
    try:
        first: dict[str, Candidate] = {}
        for peer, group in by_peer.items():
            first[peer] = await _the_leader(group)
        await first["national"].halt()
        taken_over = await _the_leader(by_peer["national"])
        assert taken_over is not first["national"]
        assert await leaders(by_peer["province-b"]) == [first["province-b"]]
        assert first["province-b"].changes == [True]
    finally:
        for group in by_peer.values():
            for candidate in group:
                await candidate.halt()


async def _the_leader(group: list[Candidate]) -> Candidate:
    found = await eventually(lambda: leaders(group), lambda leading: len(leading) == 1)
    return found[0]
