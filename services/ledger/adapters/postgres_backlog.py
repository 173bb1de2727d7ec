"""The sequencer's backlog and the log's size, read for the metrics at scrape time."""

from __future__ import annotations

import asyncpg

from services.common.errors import UnavailableError
from services.common.metrics import LedgerBacklog
from services.common.postgres import TRANSIENT_ERRORS

# Staging is drained every batch, so counting it is cheap while the sequencer keeps up (and the
# count is the alert when it does not). The other reads are primary-key lookups.
_BACKLOG_SQL = """
SELECT (SELECT count(*) FROM ledger.pending) AS pending,
       (SELECT staged_at FROM ledger.pending ORDER BY id LIMIT 1) AS oldest_pending,
       (SELECT size FROM ledger.tree_state) AS tree_size,
       (SELECT created_at FROM ledger.checkpoint ORDER BY size DESC LIMIT 1) AS last_checkpoint
"""


class PostgresLedgerBacklog:
    """Needs a pool that may read ledger.pending: the sequencer's role, not the reader's."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def backlog(self) -> LedgerBacklog:
        try:
            row = await self._pool.fetchrow(_BACKLOG_SQL)
        except TRANSIENT_ERRORS as exc:
            raise UnavailableError("the database did not answer the ledger probe") from exc
        assert row is not None  # a SELECT without FROM returns one row
        return LedgerBacklog(
            pending_entries=row["pending"],
            oldest_pending=row["oldest_pending"],
            tree_size=row["tree_size"],
            last_checkpoint=row["last_checkpoint"],
        )
