"""Notices a process of the previous version staged to a peer hub during a rolling upgrade
(without their hop, notice.via_hub, migration 0037) become counted by ListPeers once the
notice-hops job has walked the waiting notices (service_layer/notice_hops.py)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres_peers import PostgresPeerStates
from services.exchange.service_layer.notice_hops import NoticeHopRepair
from tests.infra import SuiteServices

pytestmark = pytest.mark.integration

# Three documents, each with a copy to A001 acknowledged with its 01: D1 came from HUB-C, D2
# and D3 were sent here (by A002). The 01s' notices to the senders wait, written as the previous
# version wrote them: no hop. So does a recall's notice to a copy forwarded to HUB-B (D3's copy
# to B900), and the notice of D1 that the current version routed (its hop kept).
OLD_VERSION_ROWS = """
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


async def test_notices_staged_without_their_hop_are_counted_once_walked(
    services: SuiteServices,
) -> None:
    """ListPeers counts a notice to a peer that lacks its hop once the job has walked it (and
    not before); a notice to an agency of this hub stays without one."""
    url = await postgres.recreate_database(services.database_url, "docaxis_notice_hops")
    await migrate(url)
    conn = await asyncpg.connect(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=1)
    try:
        await conn.execute(OLD_VERSION_ROWS)
        peers = PostgresPeerStates(pool)

        async def waiting() -> dict[str, int]:
            return {
                q.hub: q.depth for q in await peers.queues(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
            }

        assert await waiting() == {"HUB-C": 1}
        # Batches of two: the walk of the five takes three runs, then begins again.
        repair = NoticeHopRepair(peers, batch=2)
        assert [await repair.run() for _ in range(4)] == [1, 1, 1, 0]
        assert await waiting() == {"HUB-B": 1, "HUB-C": 3}
        # A notice to an agency of this hub keeps no hop.
        assert (
            await conn.fetchval("SELECT count(*) FROM exchange.notice WHERE via_hub IS NULL") == 1
        )
    finally:
        await pool.close()
        await conn.close()
