"""Notices a process of the previous version staged to a peer hub during a rolling upgrade
(without their hop, notice.via_hub, migration 0037) become counted by ListPeers once the
notice-hops job has walked them (service_layer/notice_hops.py): the walk of the notices staged
from migration 0039 to a day after, kept in the database, which then stops for good."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres_peers import PostgresPeerStates
from services.exchange.service_layer.notice_hops import NoticeHopRepair
from tests.infra import SuiteServices
from tests.migrations_before import EXCHANGE, migrate_before

pytestmark = pytest.mark.integration

WALKED = "0039_notice_hop_walk.sql"

# Three documents, each with a copy to A001 acknowledged with its 01: D1 came from HUB-C, D2
# and D3 were sent here (by A002). D3's copy to B900 was forwarded to HUB-B.
COPIES = """
INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
    business_type, header, submitted_at, from_hub)
VALUES ('00000000-0000-4000-8000-000000000001', 'D1', 'C100', 'c1', 'f1', 0, '{}', now(), 'HUB-C'),
    ('00000000-0000-4000-8000-000000000002', 'D2', 'A002', 'c2', 'f2', 0, '{}', now(), NULL),
    ('00000000-0000-4000-8000-000000000003', 'D3', 'A002', 'c3', 'f3', 0, '{}', now(), NULL);
INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient, recipient, state,
    accepted_at, acknowledged_at, via_hub)
VALUES ('00000000-0000-4000-8000-000000000011', '00000000-0000-4000-8000-000000000001', 0,
        'A001', 'A001', 'acknowledged', now(), now(), NULL),
    ('00000000-0000-4000-8000-000000000012', '00000000-0000-4000-8000-000000000002', 0,
        'A001', 'A001', 'acknowledged', now(), now(), NULL),
    ('00000000-0000-4000-8000-000000000013', '00000000-0000-4000-8000-000000000003', 0,
        'B900', 'B900', 'forwarded', now(), NULL, 'HUB-B');
INSERT INTO exchange.delivery_status (id, delivery_id, status_id, code, occurred_at, recorded_at,
    reported_by)
VALUES (1, '00000000-0000-4000-8000-000000000011', 's1', '01', now(), now(), 'A001'),
    (2, '00000000-0000-4000-8000-000000000012', 's2', '01', now(), now(), 'A001');
"""

# The 01s' notices to the senders wait, written as a version before 0037 wrote them: no hop
# (and, as every version before 0039, no hop_kept). So does a recall's notice to B900, and a
# notice of D1 that a version between 0037 and 0039 routed (its hop written).
OLD_VERSION_NOTICES = """
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at, via_hub)
SELECT gen_random_uuid(), agency, kind, delivery_id::uuid, status_row,
    now() - k * interval '1 minute', via_hub
FROM (VALUES ('C100', 'status', '00000000-0000-4000-8000-000000000011', 1, NULL, 1),
    ('C100', 'status', '00000000-0000-4000-8000-000000000011', 1, NULL, 2),
    ('C100', 'status', '00000000-0000-4000-8000-000000000011', 1, 'HUB-C', 3),
    ('A002', 'status', '00000000-0000-4000-8000-000000000012', 2, NULL, 4),
    ('B900', 'recall', '00000000-0000-4000-8000-000000000013', NULL, NULL, 5))
    AS v (agency, kind, delivery_id, status_row, via_hub, k);
"""

# A status notice to C100 (on HUB-C) as the previous version stages it, at $1.
OLD_VERSION_NOTICE = """
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at)
VALUES (gen_random_uuid(), 'C100', 'status', '00000000-0000-4000-8000-000000000011', 1, $1)
"""


class CountedWalk:
    """The job's store, counting the batches it was asked for."""

    def __init__(self, store: PostgresPeerStates) -> None:
        self._store = store
        self.batches = 0

    async def route_notices(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        self.batches += 1
        return await self._store.route_notices(before, window, limit)


async def _waiting(peers: PostgresPeerStates) -> dict[str, int]:
    return {q.hub: q.depth for q in await peers.queues(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))}


async def _hopless(conn: asyncpg.Connection) -> int:
    """The notices to C100 (on HUB-C) still without their hop."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM exchange.notice WHERE agency = 'C100' AND via_hub IS NULL"
    )
    return count


@contextlib.asynccontextmanager
async def _hub(
    services: SuiteServices, name: str
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Pool]]:
    """A database of this version holding COPIES: a connection, and a pool for the adapter."""
    url = await postgres.recreate_database(services.database_url, name)
    await migrate(url)
    conn = await asyncpg.connect(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=1)
    try:
        await conn.execute(COPIES)
        yield conn, pool
    finally:
        await pool.close()
        await conn.close()


async def test_notices_staged_without_their_hop_are_counted_once_walked(
    services: SuiteServices,
) -> None:
    """ListPeers counts a notice to a peer that lacks its hop once the job has walked it (and
    not before); a notice to an agency of this hub stays without one."""
    async with _hub(services, "docaxis_notice_hops") as (conn, pool):
        await conn.execute(OLD_VERSION_NOTICES)
        peers = PostgresPeerStates(pool)
        assert await _waiting(peers) == {"HUB-C": 1}
        # Batches of two: the walk of the five takes three runs, then finds none.
        began = await conn.fetchval("SELECT began_at FROM exchange.notice_hop_walk")
        repair = NoticeHopRepair(peers, batch=2, clock=lambda: began + dt.timedelta(hours=1))
        assert [await repair.run() for _ in range(4)] == [1, 1, 1, 0]
        assert await _waiting(peers) == {"HUB-B": 1, "HUB-C": 3}
        # A notice to an agency of this hub keeps no hop.
        assert (
            await conn.fetchval("SELECT count(*) FROM exchange.notice WHERE via_hub IS NULL") == 1
        )


async def test_the_walk_stops_a_day_after_the_migration_and_reads_nothing_after(
    services: SuiteServices,
) -> None:
    """Past the window the job stops for good: it asks for no batch again, and a notice staged
    after the window (by a process that should not run any more) is not read."""
    async with _hub(services, "docaxis_notice_hops_end") as (conn, pool):
        began = await conn.fetchval("SELECT began_at FROM exchange.notice_hop_walk")
        await conn.execute(OLD_VERSION_NOTICE, began + dt.timedelta(hours=1))
        await conn.execute(OLD_VERSION_NOTICE, began + dt.timedelta(hours=25))
        walk = CountedWalk(PostgresPeerStates(pool))
        repair = NoticeHopRepair(walk, batch=10, clock=lambda: began + dt.timedelta(days=2))
        assert [await repair.run() for _ in range(3)] == [1, 0, 0]
        assert walk.batches == 1
        assert await _hopless(conn) == 1
        assert await conn.fetchval(
            "SELECT walked_to = began_at + interval '1 day' FROM exchange.notice_hop_walk"
        )
        # A process started later finds the walk over at its first batch.
        other = NoticeHopRepair(walk, batch=10, clock=lambda: began + dt.timedelta(days=3))
        assert [await other.run() for _ in range(2)] == [0, 0]
        assert walk.batches == 2
        assert await _hopless(conn) == 1


async def test_a_process_started_later_resumes_the_walk_where_it_is(
    services: SuiteServices,
) -> None:
    """The walk's place is kept in the database: another process (or this one restarted) goes
    on from the notice the first stopped at, rather than from the first notice."""
    async with _hub(services, "docaxis_notice_hops_resume") as (conn, pool):
        began = await conn.fetchval("SELECT began_at FROM exchange.notice_hop_walk")
        for hours in (1, 2, 3):
            await conn.execute(OLD_VERSION_NOTICE, began + dt.timedelta(hours=hours))
        peers = PostgresPeerStates(pool)
        now = began + dt.timedelta(hours=4)
        first = NoticeHopRepair(peers, batch=1, clock=lambda: now)
        assert await first.run() == 1
        assert await conn.fetchval("SELECT walked_to FROM exchange.notice_hop_walk") == (
            began + dt.timedelta(hours=1)
        )
        second = NoticeHopRepair(peers, batch=1, clock=lambda: now)
        assert [await second.run() for _ in range(3)] == [1, 1, 0]
        assert await _hopless(conn) == 0
        assert await conn.fetchval("SELECT walked_to FROM exchange.notice_hop_walk") == (
            now - dt.timedelta(minutes=1)
        )


async def test_a_notice_staged_without_its_hop_within_the_window_gets_it(
    services: SuiteServices,
) -> None:
    """A notice a process of the previous version stages after the walk has passed its time's
    start gets its hop from a later batch; one this version stages is not the walk's."""
    async with _hub(services, "docaxis_notice_hops_window") as (conn, pool):
        began = await conn.fetchval("SELECT began_at FROM exchange.notice_hop_walk")
        peers = PostgresPeerStates(pool)
        clock = [began + dt.timedelta(hours=1)]
        repair = NoticeHopRepair(peers, batch=10, clock=lambda: clock[0])
        assert await repair.run() == 0
        await conn.execute(OLD_VERSION_NOTICE, began + dt.timedelta(hours=2))
        # This version's notice to an agency of this hub (hop kept: none).
        await conn.execute(
            """
            INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at,
                hop_kept)
            VALUES (gen_random_uuid(), 'A002', 'status', '00000000-0000-4000-8000-000000000012',
                2, $1, true)
            """,
            began + dt.timedelta(hours=2),
        )
        assert await _waiting(peers) == {}
        clock[0] = began + dt.timedelta(hours=3)
        assert await repair.run() == 1
        assert await _waiting(peers) == {"HUB-C": 1}
        # The walk's index holds the previous version's notice only.
        unkept = "SELECT count(*) FROM exchange.notice WHERE NOT hop_kept"
        assert await conn.fetchval(unkept) == 1


async def test_notices_staged_between_0037_and_0039_get_their_hop_from_its_backfill(
    services: SuiteServices, tmp_path: Path
) -> None:
    """A hub upgraded from before 0037 applies 0037 to 0039 in one go: the notices its processes
    of that version staged after 0037's backfill get their hop from 0039's, and only those
    staged after 0039 are the walk's."""
    url = await postgres.recreate_database(services.database_url, "docaxis_notice_hops_upgrade")
    conn = await asyncpg.connect(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=1)
    try:
        await migrate_before(conn, WALKED, tmp_path)
        await conn.execute(COPIES)
        await conn.execute(OLD_VERSION_NOTICES)
        peers = PostgresPeerStates(pool)
        assert await _waiting(peers) == {"HUB-C": 1}
        # It first (the later ones after it).
        assert (await postgres.apply_migrations(conn, "exchange", EXCHANGE))[:1] == [WALKED]
        assert await _waiting(peers) == {"HUB-B": 1, "HUB-C": 3}
        assert await conn.fetchval("SELECT count(*) FROM exchange.notice WHERE NOT hop_kept") == 0
        began = await conn.fetchval("SELECT began_at FROM exchange.notice_hop_walk")
        await conn.execute(OLD_VERSION_NOTICE, began + dt.timedelta(minutes=5))
        assert await conn.fetchval("SELECT count(*) FROM exchange.notice WHERE NOT hop_kept") == 1
    finally:
        await pool.close()
        await conn.close()
