"""The due dates of copies a process of the previous version stored during a rolling upgrade.

The overdue report reads the copies by the due date each keeps (migration 0038, written with the
copy by postgres._copies_sql). A process of the version before stores copies without it: those
it stored after 0038's backfill read their document would never be reported overdue. This job
walks the copies accepted from the migration's start to a day after (a rolling upgrade is over
well before), a batch per run, giving a due date to those whose document has one; where the
walk is is kept in the database (every process walks the same one, a batch at a time, and a
process started later resumes it), and once past the day it stops for good. Each run reads at
most a batch (with each copy's document): the walk reads that day's copies once, never the
hub's history.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.common.clock import Clock, utc_now
from services.exchange.service_layer.upgrade_walks import UpgradeWalk

# Above a busy hub's copies a second, at the job's interval (30 s: 500 copies a second at most).
DEFAULT_BATCH = 15_000


class CopiesWithoutDueDates(Protocol):
    async def date_copies(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        """The walk's next batch: gives their document's due date to the copies without one
        among the first `limit` accepted after where the walk is and before `before` (and
        those accepted with the last of them), within `window` of the migration; how many, and
        whether the walk is past the window."""
        ...


class DueDateRepair(UpgradeWalk):
    repaired_event = "copy_due_dates_repaired"

    def __init__(
        self, store: CopiesWithoutDueDates, batch: int = DEFAULT_BATCH, clock: Clock = utc_now
    ) -> None:
        super().__init__(batch, clock)
        self._store = store

    async def _step(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        return await self._store.date_copies(before, window, limit)
