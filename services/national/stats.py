"""What the connector counts of its national axis: the poller's walks of the mailboxes and the
uploads that failed, shown as the per-peer series of a polled peer (AxisMetrics.
watch_polled_peers) beside the forwarder's docaxis_peer_* series."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from services.common.metrics import PolledPeerSnapshot

MESSAGETYPES = ("edoc", "status")
OUTCOMES = ("stored", "refused", "deferred")
# Always shown, so that rate() has its zero before the first failure.
DIRECTIONS = ("poll", "forward")
USUAL_KINDS = ("UNAVAILABLE", "UNAUTHENTICATED")


@dataclass(slots=True)
class AxisStats:
    hub: str
    polls: int = 0
    fetched: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    errors: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # The poller's pause now; None while no poller runs in this process (another one leads).
    backoff_s: float | None = None
    last_poll_success: float | None = None

    def __post_init__(self) -> None:
        for messagetype in MESSAGETYPES:
            for outcome in OUTCOMES:
                self.fetched[(messagetype, outcome)] += 0
        for direction in DIRECTIONS:
            for kind in USUAL_KINDS:
                self.errors[(direction, kind)] += 0

    def snapshot(self) -> PolledPeerSnapshot:
        return PolledPeerSnapshot(
            hub=self.hub,
            polls=self.polls,
            fetched=dict(self.fetched),
            errors=dict(self.errors),
            backoff_s=self.backoff_s,
            last_success=self.last_poll_success,
        )
