"""What waits for each recipient agency, read for the metrics at scrape time."""

from __future__ import annotations

import asyncpg

from services.common.errors import UnavailableError
from services.common.metrics import AgencyQueue
from services.common.postgres import TRANSIENT_ERRORS

# Each branch matches a partial index's predicate exactly (delivery_pending, notice_pending), so
# both are index-only scans over what is unacknowledged, not over the whole history.
_QUEUES_SQL = """
SELECT agency, sum(depth)::bigint AS depth, min(oldest) AS oldest FROM (
    SELECT recipient AS agency, count(*) AS depth, min(accepted_at) AS oldest
    FROM exchange.delivery WHERE state IN ('accepted', 'queued', 'pushed')
    GROUP BY recipient
    UNION ALL
    SELECT agency, count(*), min(created_at)
    FROM exchange.notice WHERE acknowledged_at IS NULL
    GROUP BY agency
) waiting
GROUP BY agency
"""


class PostgresQueueProbe:
    """Deliveries and notices not yet acknowledged, per recipient agency (what ListPending
    would list)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def queues(self) -> list[AgencyQueue]:
        try:
            rows = await self._pool.fetch(_QUEUES_SQL)
        except TRANSIENT_ERRORS as exc:
            raise UnavailableError("the database did not answer the queue probe") from exc
        return [AgencyQueue(r["agency"], r["depth"], r["oldest"]) for r in rows]
