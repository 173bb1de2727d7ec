"""Forwarding to a peer hub: back-off with jitter, the circuit breaker, the trace of hops."""

from __future__ import annotations

import datetime as dt
import random

from services.exchange.domain.peering import (
    MAX_BACKOFF_S,
    CircuitBreaker,
    CircuitState,
    Hop,
    backoff_s,
    outgoing_trace,
    received_trace,
    refusal_retry_at,
)

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """The state, read through a call (mypy narrows the attribute across mutating calls)."""
    return breaker.state


def test_back_off_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(7)  # noqa: S311 - jitter, not secrecy
    assert backoff_s(0, rng) == 0.0
    for failures, ceiling in ((1, 0.5), (2, 1.0), (4, 4.0), (40, MAX_BACKOFF_S)):
        waits = {backoff_s(failures, rng) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered: hubs recovering together do not retry in step


def test_the_circuit_opens_after_failures_in_a_row_and_a_probe_closes_it() -> None:
    rng = random.Random(1)  # noqa: S311 - jitter, not secrecy
    breaker = CircuitBreaker(failures_to_open=3)
    breaker.failed(0.0, rng)
    breaker.failed(0.0, rng)
    assert breaker.state is CircuitState.CLOSED
    breaker.succeeded()  # a success in between starts the count again
    for _ in range(3):
        breaker.failed(10.0, rng)
    assert state_of(breaker) is CircuitState.OPEN
    assert not breaker.may_probe(10.0)  # not before the back-off
    assert breaker.may_probe(breaker.retry_at)
    assert state_of(breaker) is CircuitState.HALF_OPEN
    breaker.failed(100.0, rng)  # a bad probe opens it again, for longer
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.may_probe(breaker.retry_at)
    breaker.succeeded()
    assert (breaker.state, breaker.failures) == (CircuitState.CLOSED, 0)


def test_every_hop_adds_itself_to_the_trace() -> None:
    first = outgoing_trace((), "province-a", T0)
    assert first == [Hop("province-a", T0)]
    later = T0 + dt.timedelta(seconds=3)
    national = received_trace(first, "national", later)
    assert [h.hub for h in national] == ["province-a", "national"]
    assert outgoing_trace(tuple(national), "national", later) == national


def test_a_resumed_breaker_stays_open_for_what_is_left_of_its_back_off() -> None:
    """Persisted state taken over after a restart: open with 4 failures (ceiling 4 s), the last
    one 1 s ago: no probe for 3 s more; a closed one stays closed with its failure count."""
    breaker = CircuitBreaker(failures_to_open=5)
    breaker.resume(CircuitState.OPEN, 4, since_failure_s=1.0, now=100.0)
    assert (breaker.state, breaker.failures) == (CircuitState.OPEN, 4)
    assert not breaker.may_probe(102.9)
    assert breaker.may_probe(103.0)
    breaker = CircuitBreaker()
    breaker.resume(CircuitState.HALF_OPEN, 7, since_failure_s=500.0, now=100.0)
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.may_probe(100.0)
    breaker = CircuitBreaker()
    breaker.resume(CircuitState.CLOSED, 2, since_failure_s=0.0, now=100.0)
    assert (breaker.state, breaker.failures) == (CircuitState.CLOSED, 2)


def test_a_refusal_that_may_pass_is_retried_with_back_off_within_the_window() -> None:
    """INVALID_ADDRESSEE (the next hub's directory may catch up) is handed over again later,
    each time later, until the window from acceptance; any other refusal is final at once."""
    accepted = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    window = dt.timedelta(minutes=10)
    rng = random.Random(7)  # noqa: S311 - jitter, not secrecy
    now = accepted
    previous = dt.timedelta(0)
    for refusals in range(4):
        at = refusal_retry_at(
            "INVALID_ADDRESSEE",
            accepted_at=accepted,
            refusals=refusals,
            now=now,
            window=window,
            rng=rng,
        )
        assert at is not None
        assert at - now > previous / 2  # back-off grows (jitter takes at most half)
        previous, now = at - now, at
    late = accepted + window - dt.timedelta(milliseconds=200)  # the shortest wait is 0.5 s
    assert (
        refusal_retry_at(
            "INVALID_ADDRESSEE", accepted_at=accepted, refusals=0, now=late, window=window, rng=rng
        )
        is None
    )
    assert (
        refusal_retry_at(
            "SIGNATURE_INVALID", accepted_at=accepted, refusals=0, now=now, window=window, rng=rng
        )
        is None
    )
