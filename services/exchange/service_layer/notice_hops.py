"""The hops of notices a process of the previous version staged during a rolling upgrade.

ListPeers counts the notices waiting for each peer hub by the hop each keeps (notice.via_hub,
migration 0037, written by postgres_lifecycle.stage_notices as it routes the notice). A process
of the version before stages the same notices to the same peer without keeping the hop: those it
staged after 0037's backfill ran are not counted until acknowledged. This job gives them their
hop, a batch of the waiting notices per run from where the last run stopped, so that a mixed
version window converges within a cycle of the waiting notices; each run reads at most a batch
(with each notice's copy and document), never the hub's history, and writes only the notices
that go to a peer and lack their hop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

DEFAULT_BATCH = 500


@dataclass(frozen=True, slots=True)
class NoticeKey:
    """A waiting notice's place in the walk: the order of the waiting notices' index."""

    agency: str
    created_at: dt.datetime
    notice_id: str


class WaitingNotices(Protocol):
    async def route_waiting(
        self, after: NoticeKey | None, limit: int
    ) -> tuple[int, NoticeKey | None]:
        """Gives their hop to the notices without one among the `limit` waiting notices after
        `after` (from the first when None), as stage_notices routes them; how many it gave one
        to, and the last notice read (None when the walk reached the end)."""
        ...


class NoticeHopRepair:
    """Walks the waiting notices, a batch per run, over and over (the cursor is this
    process's: a restart begins a new cycle)."""

    def __init__(self, store: WaitingNotices, batch: int = DEFAULT_BATCH) -> None:
        self._store = store
        self._batch = batch
        self._after: NoticeKey | None = None

    async def run(self) -> int:
        routed, self._after = await self._store.route_waiting(self._after, self._batch)
        if routed:
            log.info("notice_hops_repaired", count=routed)
        return routed
