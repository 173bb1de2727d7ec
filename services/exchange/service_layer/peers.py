"""Federation operations: what an operator sees of each peer (docaxis peers, the console's peers
page). A peer's forwarder reports its circuit, last contact, failures and throughput; storage
knows what waits for the peer, its dead letters and what came from it lately. Both are read from
the database, so every process of the hub answers the same, whichever runs the forwarders.
Generic over the kinds of peer: anything that forwards through a Forwarder reports here."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.exchange.domain.peering import CircuitState

# The window of the throughput figures.
THROUGHPUT_WINDOW = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class PeerReport:
    """A forwarder's view of its peer, as of `reported_at`."""

    hub: str
    kind: str  # "docaxis", "national-axis", ...
    address: str
    circuit: CircuitState
    consecutive_failures: int
    last_contact: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: str
    # Since the forwarder started.
    forwarded: int
    refused: int
    failures: int
    forwarded_per_minute: float
    reported_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PeerQueue:
    """What storage knows of a peer: copies and notices waiting for it, its dead letters, and
    copies accepted from it within THROUGHPUT_WINDOW."""

    hub: str
    depth: int = 0
    oldest_queued_at: dt.datetime | None = None
    dead_letters: int = 0
    received_recently: int = 0


class PeerState(enum.StrEnum):
    UP = "up"
    RETRYING = "retrying"
    DOWN = "down"
    NOT_CONTACTED = "not_contacted"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True, slots=True)
class PeerView:
    hub: str
    state: PeerState
    queue: PeerQueue
    report: PeerReport | None
    oldest_age_s: float
    received_per_minute: float


class PeerStates(Protocol):
    async def record(self, report: PeerReport) -> None:
        """Replaces the peer's report."""
        ...

    async def retain(self, hubs: Sequence[str]) -> None:
        """Forgets the reports of every other peer (no longer configured)."""
        ...

    async def reports(self) -> list[PeerReport]: ...

    async def queues(self, since: dt.datetime) -> list[PeerQueue]:
        """Every hub something waits for, is dead-lettered for, or came from since `since`."""
        ...

    async def dead_lettered(self, hub: str, limit: int) -> tuple[list[str], int]:
        """Up to `limit` delivery ids of copies dead-lettered on their way to `hub`, oldest dead
        letter first, and how many there are in all."""
        ...


def peer_state(report: PeerReport | None) -> PeerState:
    if report is None:
        return PeerState.NOT_CONFIGURED
    if report.circuit is not CircuitState.CLOSED:
        return PeerState.DOWN
    if report.consecutive_failures:
        return PeerState.RETRYING
    if report.last_contact is None:
        return PeerState.NOT_CONTACTED
    return PeerState.UP


def peer_views(
    reports: Sequence[PeerReport], queues: Sequence[PeerQueue], now: dt.datetime
) -> list[PeerView]:
    """Every reported peer and every hub storage holds something for, by hub code."""
    by_hub = {r.hub: r for r in reports}
    queued = {q.hub: q for q in queues}
    minutes = THROUGHPUT_WINDOW.total_seconds() / 60
    views = []
    for hub in sorted(by_hub.keys() | queued.keys()):
        queue = queued.get(hub, PeerQueue(hub))
        oldest = queue.oldest_queued_at
        views.append(
            PeerView(
                hub=hub,
                state=peer_state(by_hub.get(hub)),
                queue=queue,
                report=by_hub.get(hub),
                oldest_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
                received_per_minute=queue.received_recently / minutes,
            )
        )
    return views
