"""Abuse limits: what one agency may ask of the axis, and how long a connection may sit idle.

Per agency (after authentication, keyed by the agency the call acts for, whether it came
straight from its DMS or through the gateway on its behalf):

- a token bucket per class of call: `submit` (Submit, each document of a SubmitBatch, Recall,
  ReportStatus: what creates documents, statuses and deliveries) and `other` (every other call,
  opening a Receive stream included). A call past its bucket is refused with RESOURCE_EXHAUSTED,
  reason RATE_LIMITED and a RetryInfo saying when the bucket holds enough again;
- a cap on concurrent Receive and ReceiveStream streams: the stream past it is refused with
  RESOURCE_EXHAUSTED, reason CONCURRENCY_LIMITED; the streams already open keep working;
- a cap on every other call in flight at once (uploads a client stalls, downloads it does not
  read, calls waiting on a slow database): the call past it is refused the same way, so that
  one agency's concurrency cannot fill the server while its calls queue.

Per connection (before anyone is authenticated, so also what bounds unauthenticated abuse):
message and metadata sizes, keepalive pings that find half-open connections, idle and maximum
connection ages, concurrent streams per connection, and the TLS handshake's deadline.

Every limit is per process. `docaxis run` with DOCAXIS_WORKERS=N (and N replicas behind one
address) lets an agency that spreads its calls over several connections reach up to N times
each per-agency limit. They are not divided by N: a DMS usually holds one channel, hence one
connection, which the kernel hands to one worker, and dividing would give it a fraction of its
allowance. Sharing the buckets through Postgres would cost a database round trip on every call;
the limits exist to stop a runaway DMS from starving others, which per-process buckets do.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

from services.common.config import ConfigError, read_float, read_int
from services.common.errors import LimitExceededError

RATE_LIMITED = "RATE_LIMITED"
CONCURRENCY_LIMITED = "CONCURRENCY_LIMITED"
RECEIVE_STREAMS = "receive_streams"
CALLS_IN_FLIGHT = "calls_in_flight"


class CallClass(enum.StrEnum):
    """Which bucket a call takes its tokens from."""

    SUBMIT = "submit"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_s` tokens a second, at most `burst` saved up. per_s 0: no limit."""

    per_s: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.per_s == 0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """The limits of one process (module docstring), from DOCAXIS_* variables."""

    # Per agency: submissions (documents, recalls, status reports) and every other call.
    submit_rate: Rate = Rate(per_s=50.0, burst=200.0)
    other_rate: Rate = Rate(per_s=200.0, burst=400.0)
    # Per agency: open Receive/ReceiveStream streams (0: no limit).
    max_receive_streams: int = 16
    # Per agency: every other call still running (an upload whose client stalls, a download it
    # does not read, calls queued behind a slow database), 0: no limit.
    max_calls_in_flight: int = 64
    # Per connection: the largest message either way, and the largest metadata (headers).
    max_message_bytes: int = 8 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    # Per connection: concurrent calls (HTTP/2 streams) a client may have open at once. The
    # gateway multiplexes every agency's REST calls over its connections: keep it generous.
    max_concurrent_streams: int = 1000
    # The server pings after this long without traffic, and closes the connection when the ping
    # is not answered within the timeout: a peer that vanished (half-open TCP) frees its streams.
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    # Clients may ping at most this often when they have no call open (more is a ping flood,
    # answered with GOAWAY).
    min_client_ping_interval_s: float = 5.0
    # A connection without any call open for this long is closed (GOAWAY; clients reconnect
    # when they next call). 0: never.
    max_connection_idle_s: float = 300.0
    # Every connection is closed after this long, its calls given the grace to finish (GOAWAY;
    # rebalances clients across replicas). 0: never, the default, as Receive streams are
    # long-lived and ending them needs the DMS to reconnect.
    max_connection_age_s: float = 0.0
    max_connection_age_grace_s: float = 30.0
    # A TLS handshake must complete this soon after the TCP connection opens.
    handshake_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        default = cls()
        settings = cls(
            submit_rate=_rate(env, "SUBMIT", default.submit_rate),
            other_rate=_rate(env, "OTHER", default.other_rate),
            max_receive_streams=read_int(
                env, "DOCAXIS_MAX_RECEIVE_STREAMS", default.max_receive_streams
            ),
            max_calls_in_flight=read_int(
                env, "DOCAXIS_MAX_CALLS_IN_FLIGHT", default.max_calls_in_flight
            ),
            max_message_bytes=read_int(env, "DOCAXIS_MAX_MESSAGE_BYTES", default.max_message_bytes),
            max_metadata_bytes=read_int(
                env, "DOCAXIS_MAX_METADATA_BYTES", default.max_metadata_bytes
            ),
            max_concurrent_streams=read_int(
                env, "DOCAXIS_MAX_CONCURRENT_STREAMS", default.max_concurrent_streams
            ),
            keepalive_time_s=read_float(env, "DOCAXIS_KEEPALIVE_TIME_S", default.keepalive_time_s),
            keepalive_timeout_s=read_float(
                env, "DOCAXIS_KEEPALIVE_TIMEOUT_S", default.keepalive_timeout_s
            ),
            min_client_ping_interval_s=read_float(
                env, "DOCAXIS_MIN_CLIENT_PING_INTERVAL_S", default.min_client_ping_interval_s
            ),
            max_connection_idle_s=read_float(
                env, "DOCAXIS_MAX_CONNECTION_IDLE_S", default.max_connection_idle_s
            ),
            max_connection_age_s=read_float(
                env, "DOCAXIS_MAX_CONNECTION_AGE_S", default.max_connection_age_s
            ),
            max_connection_age_grace_s=read_float(
                env, "DOCAXIS_MAX_CONNECTION_AGE_GRACE_S", default.max_connection_age_grace_s
            ),
            handshake_timeout_s=read_float(
                env, "DOCAXIS_HANDSHAKE_TIMEOUT_S", default.handshake_timeout_s
            ),
        )
        settings.check()
        return settings

    def check(self) -> None:
        for name, count, minimum in (
            ("DOCAXIS_MAX_RECEIVE_STREAMS", self.max_receive_streams, 0),
            ("DOCAXIS_MAX_CALLS_IN_FLIGHT", self.max_calls_in_flight, 0),
            # An upload chunk (services/exchange/service_layer/uploads.py) must fit.
            ("DOCAXIS_MAX_MESSAGE_BYTES", self.max_message_bytes, 5 * 1024 * 1024),
            ("DOCAXIS_MAX_METADATA_BYTES", self.max_metadata_bytes, 4 * 1024),
            ("DOCAXIS_MAX_CONCURRENT_STREAMS", self.max_concurrent_streams, 1),
        ):
            if count < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {count}")
        for name, seconds, least in (
            ("DOCAXIS_KEEPALIVE_TIME_S", self.keepalive_time_s, 0.01),
            ("DOCAXIS_KEEPALIVE_TIMEOUT_S", self.keepalive_timeout_s, 0.01),
            ("DOCAXIS_MIN_CLIENT_PING_INTERVAL_S", self.min_client_ping_interval_s, 0.0),
            ("DOCAXIS_MAX_CONNECTION_IDLE_S", self.max_connection_idle_s, 0.0),
            ("DOCAXIS_MAX_CONNECTION_AGE_S", self.max_connection_age_s, 0.0),
            ("DOCAXIS_MAX_CONNECTION_AGE_GRACE_S", self.max_connection_age_grace_s, 0.0),
            ("DOCAXIS_HANDSHAKE_TIMEOUT_S", self.handshake_timeout_s, 0.01),
        ):
            if not math.isfinite(seconds) or seconds < least:
                raise ConfigError(f"{name} must be a number of seconds >= {least}")


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate:
    per_s = read_float(env, f"DOCAXIS_{name}_RATE_PER_S", default.per_s)
    burst = read_float(env, f"DOCAXIS_{name}_RATE_BURST", max(default.burst, per_s))
    if not (math.isfinite(per_s) and per_s >= 0):
        raise ConfigError(f"DOCAXIS_{name}_RATE_PER_S must be >= 0 (0: no limit)")
    if per_s > 0 and not (math.isfinite(burst) and burst >= 1):
        raise ConfigError(f"DOCAXIS_{name}_RATE_BURST must be at least 1")
    return Rate(per_s, burst)


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


# Agencies are authenticated, so the buckets are bounded by the directory's size; still, a
# full bucket says nothing a fresh one would not, so they are dropped past this many.
_MAX_BUCKETS = 20_000


class RateLimiter:
    """Token buckets per (agency, call class)."""

    def __init__(
        self, rates: Mapping[CallClass, Rate], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rates = dict(rates)
        self._clock = clock
        self._buckets: dict[tuple[str, CallClass], _Bucket] = {}

    def take(self, agency: str, call: CallClass, cost: int = 1) -> None:
        """Takes `cost` tokens from the agency's bucket of `call`, or raises RATE_LIMITED with
        the wait until it holds them (and takes nothing)."""
        rate = self._rates[call]
        if rate.unlimited:
            return
        cost_f = min(float(cost), rate.burst)  # a batch larger than the burst waits for a full one
        now = self._clock()
        bucket = self._buckets.get((agency, call))
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[(agency, call)] = _Bucket(rate.burst, now)
        bucket.tokens = min(rate.burst, bucket.tokens + (now - bucket.at) * rate.per_s)
        bucket.at = now
        if bucket.tokens >= cost_f:
            bucket.tokens -= cost_f
            return
        wait_s = (cost_f - bucket.tokens) / rate.per_s
        raise LimitExceededError(
            f"agency {agency} is over its rate of {rate.per_s:g} {call.value} calls a second "
            f"(burst {rate.burst:g}); retry in {wait_s:.3f} s",
            reason=RATE_LIMITED,
            limit=call.value,
            retry_after_s=wait_s,
        )

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            rate = self._rates[key[1]]
            if bucket.tokens + (now - bucket.at) * rate.per_s >= rate.burst:
                del self._buckets[key]


class Slots:
    """What an agency holds open at once (Receive streams, calls in flight), at most `limit`
    each (0: no limit); past it CONCURRENCY_LIMITED, `name` in the metadata."""

    def __init__(self, limit: int, name: str, what: str, retry_after_s: float) -> None:
        self._limit = limit
        self._name = name
        self._what = what
        self._retry_after_s = retry_after_s
        self._open: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self._open.values())

    def held(self, agency: str) -> int:
        return self._open.get(agency, 0)

    def acquire(self, agency: str) -> None:
        """Holds one more slot for `agency`, or raises CONCURRENCY_LIMITED."""
        held = self._open.get(agency, 0)
        if self._limit and held >= self._limit:
            raise LimitExceededError(
                f"agency {agency} already has {held} {self._what} open, the most it may; "
                "let one end before starting another",
                reason=CONCURRENCY_LIMITED,
                limit=self._name,
                retry_after_s=self._retry_after_s,
            )
        self._open[agency] = held + 1

    def release(self, agency: str) -> None:
        held = self._open.get(agency, 0) - 1
        if held > 0:
            self._open[agency] = held
        else:
            self._open.pop(agency, None)


# What a refused stream is told to wait: a slot frees when the DMS closes one of its streams,
# which no clock predicts; a few seconds keeps a reconnect loop slow.
STREAM_RETRY_AFTER_S = 5.0
# A call in flight usually ends within a second; an upload that stalls holds its slot longer.
CALL_RETRY_AFTER_S = 1.0


class AgencyLimits:
    """The per-agency limits of one process: rates, Receive streams, calls in flight."""

    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.rates = RateLimiter(
            {CallClass.SUBMIT: settings.submit_rate, CallClass.OTHER: settings.other_rate}, clock
        )
        self.streams = Slots(
            settings.max_receive_streams, RECEIVE_STREAMS, "Receive streams", STREAM_RETRY_AFTER_S
        )
        self.calls = Slots(
            settings.max_calls_in_flight, CALLS_IN_FLIGHT, "calls in flight", CALL_RETRY_AFTER_S
        )
