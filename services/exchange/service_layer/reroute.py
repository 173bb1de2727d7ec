"""Mail waiting for an agency that a reorganisation has since closed.

Submit resolves recipients on the day of sending, so new mail never goes to a closed code. But a
copy accepted before the merger, and not yet acknowledged, still waits for the old code, whose
DMS can no longer even authenticate: it would wait forever, never pushed, never dead-lettered.
So the exchange sweeps, every `DOCAXIS_REROUTE_INTERVAL_S`, the agencies that have copies or
notices waiting, and for each one the directory now says is closed:

- with a successor (merge, rename, a chain of them): the waiting copies move to the agency that
  receives the old code's mail today, queued afresh there (push count and first push time
  reset: it was never handed them) or at the peer hub that serves it (federation: the copy's
  next hop becomes the successor's), and the waiting notices too; each moved copy is a
  `routing` ledger event. The closed codes that move to one successor move together, in one
  transaction, their copies queued in the order they were accepted; of a document addressed to
  two of them, the copy of the code the sender listed first moves;
- without one (closed, or split so that the mail is ambiguous), and for a copy whose successor
  already holds a copy of the same document: the copy is dead-lettered (`RECIPIENT_CLOSED`),
  which its sender sees in Track and administrators in the console.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from services.common.clock import Clock, utc_now
from services.exchange.domain.addresses import AddressState
from services.exchange.domain.model import today_in_vietnam
from services.exchange.service_layer.ports import DirectoryLookup

log = structlog.get_logger(__name__)

RECIPIENT_CLOSED = "RECIPIENT_CLOSED"


@dataclass(frozen=True, slots=True)
class Moved:
    """What one sweep did for one closed code."""

    old: str
    # The agency that now receives the old code's mail; empty when there is none.
    new: str
    deliveries: int = 0
    notices: int = 0
    dead_lettered: int = 0


class RerouteStore(Protocol):
    async def waiting_agencies(self) -> list[str]:
        """Agencies with copies not yet acknowledged (accepted, queued or pushed) or notices not
        yet acknowledged, in code order."""
        ...

    async def reroute(
        self, olds: Sequence[str], new: str, hub: str | None, now: dt.datetime
    ) -> dict[str, tuple[int, int]]:
        """In one transaction: the waiting copies and notices of the closed codes `olds` become
        `new`'s, queued to `new` (outbox; to the peer hub `hub` when another hub serves `new`)
        in the order they were accepted, each copy ledgered. At most one copy of a document
        moves (the first the sender listed), none of a document `new` already has a copy of:
        the others stay. Returns (copies, notices) moved per old code."""
        ...

    async def dead_letter_waiting(self, agency: str, reason: str, now: dt.datetime) -> int:
        """`agency`'s waiting copies become dead-lettered with `reason` (ledgered); how many."""
        ...


class Rerouter:
    def __init__(
        self,
        store: RerouteStore,
        directory: DirectoryLookup,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock

    async def sweep(self) -> list[Moved]:
        waiting = await self._store.waiting_agencies()
        if not waiting:
            return []
        now = self._clock()
        resolutions = await self._directory.resolve(waiting, today_in_vietnam(now))
        closed = [
            resolutions[code]
            for code in sorted(waiting)
            if code in resolutions and resolutions[code].state is AddressState.CLOSED
        ]
        # Closed codes with a successor, grouped by it (and the hub that serves it).
        successors: dict[tuple[str, str | None], list[str]] = {}
        for resolution in closed:
            new = resolution.effective or ""
            if new and new != resolution.code:
                successors.setdefault((new, resolution.hub), []).append(resolution.code)
        counts: dict[str, tuple[int, int]] = {}
        for (new, hub), olds in sorted(successors.items(), key=lambda kv: kv[0][0]):
            counts.update(await self._store.reroute(olds, new, hub, now))
        moved: list[Moved] = []
        for resolution in closed:
            code, new = resolution.code, resolution.effective or ""
            copies, notices = counts.get(code, (0, 0))
            # What could not move: no successor, or the successor already has the document.
            dead = await self._store.dead_letter_waiting(code, RECIPIENT_CLOSED, now)
            if not (copies or notices or dead):
                # Only notices wait, for an agency closed without successor: nobody can take
                # them, and saying so on every sweep would drown the log.
                continue
            log.warning(
                "mail_for_closed_agency",
                agency=code,
                successor=new,
                hub=resolution.hub or "",
                copies_moved=copies,
                notices_moved=notices,
                dead_lettered=dead,
                problem=resolution.problem,
            )
            moved.append(Moved(code, new, copies, notices, dead))
        return moved
