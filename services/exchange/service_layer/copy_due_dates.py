"""The due dates of copies a process of the previous version stored during a rolling upgrade.

The overdue report reads the copies by the due date each keeps (migration 0038, written with the
copy by postgres._copies_sql). A process of the version before stores copies without it: those
it stored after 0038's backfill ran would never be reported overdue. This job walks the copies
accepted from a day before the migration was recorded (its backfill ran before that) to a day
after (a rolling upgrade is over well before), a batch per run, giving a due date to those
whose document has one; then it stops for good. Each run reads at most a batch (with each
copy's document), and the walk reads those two days' copies once, never the hub's history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

DEFAULT_BATCH = 500
# How long after the migration a process of the previous version may still store copies.
UPGRADE_WINDOW = dt.timedelta(days=1)
# A copy's transaction may commit a little after its accepted_at: the walk stays this far behind.
COMMIT_LAG = dt.timedelta(minutes=1)


class CopiesSinceUpgrade(Protocol):
    async def upgrade_began(self) -> dt.datetime | None:
        """When migration 0038 was applied (None: not yet)."""
        ...

    async def date_copies(
        self, after: dt.datetime, before: dt.datetime, limit: int
    ) -> tuple[int, dt.datetime | None, bool]:
        """Gives their document's due date to the copies without one among the first `limit`
        accepted after `after` and before `before` (and those accepted with the last of them):
        how many, the last one's time (None: none was), and whether they were the last before
        `before`."""
        ...


class DueDateRepair:
    """Walks the copies accepted within UPGRADE_WINDOW of the migration, then stops (each
    process walks them, from the migration's time: a restart walks them again)."""

    def __init__(
        self,
        store: CopiesSinceUpgrade,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._batch = batch
        self._clock = clock
        self._after: dt.datetime | None = None
        self._window_end: dt.datetime | None = None
        self._done = False

    async def run(self) -> int:
        """One batch; how many copies it gave a due date to."""
        if self._done:
            return 0
        if self._after is None or self._window_end is None:
            applied = await self._store.upgrade_began()
            if applied is None:
                return 0
            # The migration's backfill ran before its indexes were built and it was recorded:
            # on a large hub, a while before.
            self._after = applied - UPGRADE_WINDOW
            self._window_end = applied + UPGRADE_WINDOW
        before = min(self._clock() - COMMIT_LAG, self._window_end)
        dated, last, reached = await self._store.date_copies(self._after, before, self._batch)
        self._after = last or self._after
        if dated:
            log.info("copy_due_dates_repaired", count=dated)
        self._done = reached and before >= self._window_end
        return dated
