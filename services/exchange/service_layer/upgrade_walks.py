"""A repair of the rows a process of the previous version writes during a rolling upgrade, as a
walk kept in the database: each run asks the store for the walk's next batch (from where it is,
to the earlier of now and the end of the upgrade's window), and once the store says the walk is
past the window the job stops for good. copy_due_dates and notice_hops are two such walks; the
store's statement says what is walked and repaired."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod

import structlog

from services.common.clock import Clock, utc_now

log = structlog.get_logger(__name__)

# How long after the migration a process of the previous version may still write such rows.
UPGRADE_WINDOW = dt.timedelta(days=1)
# A row's transaction may commit a little after the time it keeps: the walk stays this far behind.
COMMIT_LAG = dt.timedelta(minutes=1)


class UpgradeWalk(ABC):
    """Runs the walk a batch at a time until it is past its window."""

    # The log event of a batch that repaired rows.
    repaired_event: str

    def __init__(self, batch: int, clock: Clock = utc_now) -> None:
        self._batch = batch
        self._clock = clock
        self._done = False

    async def run(self) -> int:
        """One batch; how many rows it repaired."""
        if self._done:
            return 0
        repaired, self._done = await self._step(
            self._clock() - COMMIT_LAG, UPGRADE_WINDOW, self._batch
        )
        if repaired:
            log.info(self.repaired_event, count=repaired)
        return repaired

    @abstractmethod
    async def _step(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        """The store's next batch: how many rows repaired, and whether the walk is past the
        window."""
