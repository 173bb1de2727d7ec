"""The hops of notices a process of the previous version staged during a rolling upgrade.

ListPeers counts the notices waiting for each peer hub by the hop each keeps (notice.via_hub,
migration 0037, written by postgres_lifecycle.stage_notices as it routes the notice). A process
of a version before 0037 stages the same notices to the same peer without keeping the hop: they
are not counted until acknowledged. Migration 0039 gave their hop to those waiting then, and
marks the notices a process of an earlier version stages from then on (notice.hop_kept false).
This job walks those, as the copies' due dates are walked (copy_due_dates.py): from the
migration's start to a day after (UPGRADE_WINDOW: a rolling upgrade is over well before), a
batch per run, giving a hop to those that go to a peer and lack it; where the walk is is kept in
the database (every process walks the same one, a batch at a time, and a process started later
resumes it), and once past the day it stops for good. Each run reads at most a batch (with each
notice's copy and document): the walk reads the window's notices once, never the hub's history.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.common.clock import Clock, utc_now
from services.exchange.service_layer.upgrade_walks import UpgradeWalk

# A run every 30 s. The walk reads only the notices still waiting (ListPeers counts no other):
# one acknowledged before the walk reaches it has left the walk's index, and a walk behind
# catches up on what is still waiting.
DEFAULT_BATCH = 500


class NoticesWithoutHops(Protocol):
    async def route_notices(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        """The walk's next batch: gives their hop, as stage_notices routes them, to the notices
        without one among the first `limit` waiting notices a process of an earlier version
        staged after where the walk is and before `before` (and those staged with the last of
        them), within `window` of the migration; how many, and whether the walk is past the
        window."""
        ...


class NoticeHopRepair(UpgradeWalk):
    repaired_event = "notice_hops_repaired"

    def __init__(
        self, store: NoticesWithoutHops, batch: int = DEFAULT_BATCH, clock: Clock = utc_now
    ) -> None:
        super().__init__(batch, clock)
        self._store = store

    async def _step(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        return await self._store.route_notices(before, window, limit)
