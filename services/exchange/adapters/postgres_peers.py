"""Federation peers' figures in Postgres (the PeerStates port): the forwarders' reports, and
what waits for each peer hub, is dead-lettered for it, or came from it lately."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from services.exchange.domain.peering import CircuitState
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


# A batch of the walk of the notices a process of an earlier version may have staged without
# their hop (service_layer/notice_hops.py), as postgres_reports walks the copies' due dates: from
# where it was (notice_hop_walk, locked: two processes walk one batch after the other) to the
# earlier of $1 and the end of the upgrade's window ($2 after its start), the first $3 such
# notices waiting in the order of notice_hop_unkept (migration 0039), and every one staged at the
# same time as the last of them (a status's notices share their time), with the hop of those
# without one, computed as postgres_lifecycle.stage_notices computes it (the hop the copy took for
# a notice to its recipient, the one its document came by for one to its sender), written where
# there is one; the walk moves to the last of them (to the end, when there were fewer). Ordered
# by the index's only column, the batch's range probed from the edge found (OFFSET 0), as
# _DATE_COPIES_SQL and for its reasons. No row: no walk (done).
_ROUTE_NOTICES_SQL = """
WITH walk AS MATERIALIZED (
    SELECT walked_to, least($1::timestamptz, began_at + $2::interval) AS until,
        began_at + $2::interval AS window_end
    FROM exchange.notice_hop_walk
    FOR UPDATE
),
edge AS MATERIALIZED (
    SELECT count(*) AS found, max(f.created_at) AS upto
    FROM walk CROSS JOIN LATERAL (
        SELECT created_at FROM exchange.notice
        WHERE NOT hop_kept AND acknowledged_at IS NULL
            AND created_at > walk.walked_to AND created_at < walk.until
        ORDER BY created_at LIMIT $3
    ) f
),
hops AS MATERIALIZED (
    SELECT n.id, (
        SELECT CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END
        FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
        WHERE d.id = n.delivery_id
    ) AS via_hub
    FROM walk CROSS JOIN edge CROSS JOIN LATERAL (
        SELECT id, agency, delivery_id, via_hub FROM exchange.notice
        WHERE NOT hop_kept AND acknowledged_at IS NULL
            AND created_at > walk.walked_to AND created_at <= edge.upto
        OFFSET 0
    ) n
    WHERE n.via_hub IS NULL
),
routed AS (
    UPDATE exchange.notice n SET via_hub = h.via_hub FROM hops h
    WHERE n.id = h.id AND h.via_hub IS NOT NULL AND n.via_hub IS NULL
    RETURNING n.id
),
step AS (
    SELECT CASE WHEN edge.found < $3 THEN walk.until ELSE edge.upto END AS walked_to,
        walk.window_end
    FROM walk CROSS JOIN edge
),
moved AS (
    UPDATE exchange.notice_hop_walk w SET walked_to = step.walked_to FROM step
    WHERE step.walked_to > w.walked_to
)
SELECT (SELECT count(*) FROM routed) AS routed, walked_to >= window_end AS done FROM step
"""


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

    async def route_notices(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        row = await self._pool.fetchrow(_ROUTE_NOTICES_SQL, before, window, limit)
        if row is None:
            return 0, True
        return row["routed"], row["done"]

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
