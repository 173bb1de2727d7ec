"""Forwarding to a peer hub (federation): retry back-off with jitter, the circuit breaker of a
peer, and the trace of hops. Pure: the forwarder owns the clock and the randomness.

The breaker is closed while hand-overs succeed. After `failures_to_open` failures in a row it
opens: nothing is taken from the peer's queue (the copies wait there, durable, without counting
attempts), and only after the back-off does a cheap probe (the peer's health) half-open it; a
good probe closes it and forwarding resumes, a bad one opens it again with a longer back-off.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0
# Refusals by the next hub that may pass: its directory does not know the recipient (or the
# sender) yet, and may after its next pull of the hub that serves it. The copy is handed over
# again with back-off, within a time bound from its acceptance (DOCAXIS_PEER_REFUSAL_WINDOW_S);
# any other refusal is final at once.
PASSING_REFUSALS: frozenset[str] = frozenset({"INVALID_ADDRESSEE", "NOT_REGISTERED"})
# An hour: many directory pulls (every 30 s by default) and back-offs, and the sender still
# learns of an address no hub knows within the hour, the day it sent (QĐ 28/2018).
DEFAULT_REFUSAL_WINDOW_S = 3600.0
REFUSAL_BASE_BACKOFF_S = 1.0


def backoff_s(
    failures: int,
    rng: random.Random,
    *,
    base: float = BASE_BACKOFF_S,
    cap: float = MAX_BACKOFF_S,
) -> float:
    """Exponential back-off with jitter: a random time between half and all of
    base·2^(failures-1), capped at `cap`, so that hubs recovering together do not retry in
    step."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** min(failures - 1, 30))
    return rng.uniform(ceiling / 2, ceiling)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    failures_to_open: int = 5
    max_backoff_s: float = MAX_BACKOFF_S
    state: CircuitState = CircuitState.CLOSED
    # Failures in a row (hand-overs while closed, probes while open).
    failures: int = 0
    # When an open circuit may be probed (monotonic seconds).
    retry_at: float = 0.0

    def succeeded(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0

    def failed(self, now: float, rng: random.Random) -> float:
        """Records a failure; returns how long to wait before the next attempt."""
        self.failures += 1
        wait = backoff_s(self.failures, rng, cap=self.max_backoff_s)
        if self.state is not CircuitState.CLOSED or self.failures >= self.failures_to_open:
            self.state = CircuitState.OPEN
            self.retry_at = now + wait
        return wait

    def resume(
        self, state: CircuitState, failures: int, since_failure_s: float, now: float
    ) -> None:
        """The breaker as the previous forwarder of the peer left it (persisted, so that a
        restart or another replica taking over does not hammer a peer that is down): a circuit
        that was not closed is open again until the back-off ceiling of its failures has passed
        since the last failure, then probed."""
        self.failures = max(0, failures)
        if state is CircuitState.CLOSED:
            self.state = CircuitState.CLOSED
            return
        self.state = CircuitState.OPEN
        ceiling = min(self.max_backoff_s, BASE_BACKOFF_S * 2 ** min(max(failures, 1) - 1, 30))
        self.retry_at = now + max(0.0, ceiling - max(0.0, since_failure_s))

    def may_probe(self, now: float) -> bool:
        """An open circuit whose back-off has passed: half-open it for one probe."""
        if self.state is CircuitState.OPEN and now >= self.retry_at:
            self.state = CircuitState.HALF_OPEN
            return True
        return False


@dataclass(frozen=True, slots=True)
class Hop:
    """One hub a document passed through (an edXML TraceHeader), and when."""

    hub: str
    at: dt.datetime


def outgoing_trace(stored: Sequence[Hop], own_hub: str, submitted_at: dt.datetime) -> list[Hop]:
    """The trace a document carries to the next hub: what it came with, or, at the hub it was
    submitted to, that hub and the time it was accepted."""
    return list(stored) or [Hop(own_hub, submitted_at)]


def received_trace(incoming: Sequence[Hop], own_hub: str, now: dt.datetime) -> list[Hop]:
    """The trace a hub stores for a document it accepted from a peer: one hop more."""
    return [*incoming, Hop(own_hub, now)]


def refusal_retry_at(
    reason: str,
    *,
    accepted_at: dt.datetime,
    refusals: int,
    now: dt.datetime,
    window: dt.timedelta,
    rng: random.Random,
    cap_s: float = MAX_BACKOFF_S,
) -> dt.datetime | None:
    """When to hand over again a copy the next hub refused for `reason` after `refusals`
    earlier refusals, or None when the refusal is final: not one that may pass, or the next
    attempt would fall after `window` from the copy's acceptance."""
    if reason not in PASSING_REFUSALS:
        return None
    at = now + dt.timedelta(
        seconds=backoff_s(refusals + 1, rng, base=REFUSAL_BASE_BACKOFF_S, cap=cap_s)
    )
    return at if at <= accepted_at + window else None
