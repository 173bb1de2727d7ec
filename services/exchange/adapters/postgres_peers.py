"""Federation peers' figures in Postgres (the PeerStates port): the forwarders' reports, and
what waits for each peer hub, is dead-lettered for it, or came from it lately."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from services.exchange.domain.peering import CircuitState
from services.exchange.service_layer.notice_hops import NoticeKey
from services.exchange.service_layer.peers import PeerQueue, PeerReport

_COLUMNS = (
    "hub, kind, address, circuit, consecutive_failures, last_contact, last_failure_at, "
    "last_error, forwarded, refused, failures, forwarded_per_minute, reported_at"
)

_RECORD_SQL = f"""
INSERT INTO exchange.peer_state ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (hub) DO UPDATE SET kind = $2, address = $3, circuit = $4,
    consecutive_failures = $5, last_contact = $6, last_failure_at = $7, last_error = $8,
    forwarded = $9, refused = $10, failures = $11, forwarded_per_minute = $12, reported_at = $13
"""  # noqa: S608 - constant fragments

# Copies wait for a peer while their next hop is it and they are not handed over
# (delivery_to_peer), its dead letters are in delivery_dead_letters_via_hub; a notice waits for
# the hop it was routed to (notice.via_hub: a recall the hop its copy took, a status the hop its
# document came by, as postgres_lifecycle.stage_notices routes them; notice_to_peer). Each
# peer's copies lately: per peer (forwarded_copy_from_hub), the peers found one index probe
# each. Every part reads what waits for the peers, or came lately, never the hub's history: the
# notices' part read every notice waiting, with its copy and document, to find those to a peer
# (9,700-12,800 rows in tests/integration/test_adapter_plans.py), and the copies' parts every
# copy ever forwarded.
_QUEUES_SQL = """
WITH RECURSIVE sources (hub) AS (
    (SELECT from_hub FROM exchange.forwarded_copy ORDER BY from_hub LIMIT 1)
    UNION ALL
    SELECT (SELECT f.from_hub FROM exchange.forwarded_copy f WHERE f.from_hub > s.hub
            ORDER BY f.from_hub LIMIT 1)
    FROM sources s WHERE s.hub IS NOT NULL
)
SELECT hub, sum(depth)::bigint AS depth, min(oldest) AS oldest,
    sum(dead)::bigint AS dead, sum(received)::bigint AS received
FROM (
    SELECT via_hub AS hub, count(*) AS depth, min(accepted_at) AS oldest, 0 AS dead,
        0 AS received
    FROM exchange.delivery
    WHERE via_hub IS NOT NULL AND state IN ('accepted', 'queued', 'pushed')
    GROUP BY via_hub
    UNION ALL
    SELECT via_hub, 0, NULL, count(*), 0 FROM exchange.delivery
    WHERE via_hub IS NOT NULL AND state = 'dead_lettered'
    GROUP BY via_hub
    UNION ALL
    SELECT via_hub, count(*), min(created_at), 0, 0 FROM exchange.notice
    WHERE acknowledged_at IS NULL AND via_hub IS NOT NULL
    GROUP BY via_hub
    UNION ALL
    SELECT s.hub, 0, NULL, 0, lately.received
    FROM sources s CROSS JOIN LATERAL (
        SELECT count(*) AS received FROM exchange.forwarded_copy f
        WHERE f.from_hub = s.hub AND f.accepted_at >= $1
    ) lately
    WHERE lately.received > 0
) figures
WHERE hub IS NOT NULL
GROUP BY hub
"""


# A batch of the waiting notices (notice_pending's order, after the cursor), and the hop of those
# without one, computed as postgres_lifecycle.stage_notices computes it (the hop the copy took
# for a notice to its recipient, the one its document came by for one to its sender), written
# where there is one: a notice a process of the previous version staged to a peer (service_layer/
# notice_hops.py). The last row read is the next cursor. The keyset is the index's whole key: a
# range of it however the plan is made.
_ROUTE_WAITING_SQL = """
WITH batch AS MATERIALIZED (
    SELECT id, agency, created_at, via_hub, delivery_id FROM exchange.notice
    WHERE acknowledged_at IS NULL AND (agency, created_at, id) > ($1, $2, $3)
    ORDER BY agency, created_at, id
    LIMIT $4
),
hops AS (
    SELECT b.id, CASE WHEN b.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END AS via_hub
    FROM batch b
    JOIN exchange.delivery d ON d.id = b.delivery_id
    JOIN exchange.document doc ON doc.uuid = d.document_uuid
    WHERE b.via_hub IS NULL
),
routed AS (
    UPDATE exchange.notice n SET via_hub = h.via_hub FROM hops h
    WHERE n.id = h.id AND h.via_hub IS NOT NULL AND n.via_hub IS NULL
    RETURNING n.id
)
SELECT (SELECT count(*) FROM routed) AS routed, (SELECT count(*) FROM batch) AS read,
    last.agency, last.created_at, last.id
FROM (SELECT agency, created_at, id FROM batch ORDER BY agency DESC, created_at DESC, id DESC
      LIMIT 1) last
RIGHT JOIN (SELECT) one ON true
"""
# Before every waiting notice: no agency code is empty.
_FIRST = NoticeKey("", dt.datetime.min.replace(tzinfo=dt.UTC), str(uuid.UUID(int=0)))


class PostgresPeerStates:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, report: PeerReport) -> None:
        await self._pool.execute(
            _RECORD_SQL,
            report.hub,
            report.kind,
            report.address,
            report.circuit.value,
            report.consecutive_failures,
            report.last_contact,
            report.last_failure_at,
            report.last_error,
            report.forwarded,
            report.refused,
            report.failures,
            report.forwarded_per_minute,
            report.reported_at,
        )

    async def retain(self, hubs: Sequence[str]) -> None:
        await self._pool.execute(
            "DELETE FROM exchange.peer_state WHERE NOT hub = ANY($1::text[])", list(hubs)
        )

    async def reports(self) -> list[PeerReport]:
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM exchange.peer_state")  # noqa: S608
        return [
            PeerReport(
                hub=r["hub"],
                kind=r["kind"],
                address=r["address"],
                circuit=CircuitState(r["circuit"]),
                consecutive_failures=r["consecutive_failures"],
                last_contact=r["last_contact"],
                last_failure_at=r["last_failure_at"],
                last_error=r["last_error"],
                forwarded=r["forwarded"],
                refused=r["refused"],
                failures=r["failures"],
                forwarded_per_minute=r["forwarded_per_minute"],
                reported_at=r["reported_at"],
            )
            for r in rows
        ]

    async def queues(self, since: dt.datetime) -> list[PeerQueue]:
        rows = await self._pool.fetch(_QUEUES_SQL, since)
        return [
            PeerQueue(
                hub=r["hub"],
                depth=r["depth"],
                oldest_queued_at=r["oldest"],
                dead_letters=r["dead"],
                received_recently=r["received"],
            )
            for r in rows
        ]

    async def route_waiting(
        self, after: NoticeKey | None, limit: int
    ) -> tuple[int, NoticeKey | None]:
        start = after or _FIRST
        row = await self._pool.fetchrow(
            _ROUTE_WAITING_SQL,
            start.agency,
            start.created_at,
            uuid.UUID(start.notice_id),
            limit,
        )
        assert row is not None  # one row, whatever the batch held
        if row["read"] < limit:
            return row["routed"], None
        return row["routed"], NoticeKey(row["agency"], row["created_at"], str(row["id"]))

    async def dead_lettered(self, hub: str, limit: int) -> tuple[list[str], int]:
        rows = await self._pool.fetch(
            """
            SELECT id, count(*) OVER () AS total FROM exchange.delivery
            WHERE via_hub = $1 AND state = 'dead_lettered'
            ORDER BY dead_lettered_at, id
            LIMIT $2
            """,
            hub,
            limit,
        )
        return [str(r["id"]) for r in rows], (rows[0]["total"] if rows else 0)
