"""The abuse limits' arithmetic and settings: token buckets on a hand-turned clock, stream
slots, DOCAXIS_* variables and the gRPC core options they become."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.common.errors import LimitExceededError
from services.common.grpc_limits import channel_options
from services.common.limits import (
    STREAM_RETRY_AFTER_S,
    AgencyLimits,
    CallClass,
    LimitSettings,
    Rate,
    RateLimiter,
    Slots,
)
from services.common.metrics import LIMITED_AGENCY_LABELS, AxisMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


TWO_A_SECOND = Rate(2.0, 4.0)
UNLIMITED = Rate(0, 0)


def limiter(clock: Clock, other: Rate = UNLIMITED) -> RateLimiter:
    return RateLimiter({CallClass.SUBMIT: TWO_A_SECOND, CallClass.OTHER: other}, clock)


def test_a_bucket_gives_its_burst_then_refuses_saying_when_a_token_is_back() -> None:
    clock = Clock()
    rates = limiter(clock)
    for _ in range(4):
        rates.take("A", CallClass.SUBMIT)
    with pytest.raises(LimitExceededError) as error:
        rates.take("A", CallClass.SUBMIT)
    assert error.value.reason == "RATE_LIMITED"
    assert error.value.limit == "submit"
    assert error.value.meta == {"limit": "submit"}
    assert error.value.retryable
    assert error.value.retry_after_s == pytest.approx(0.5)  # one token at 2 a second
    clock.now += 0.25
    with pytest.raises(LimitExceededError) as error:
        rates.take("A", CallClass.SUBMIT)
    assert error.value.retry_after_s == pytest.approx(0.25)
    clock.now += 0.25
    rates.take("A", CallClass.SUBMIT)


def test_a_refused_call_takes_nothing_and_refills_stop_at_the_burst() -> None:
    clock = Clock()
    rates = limiter(clock)
    rates.take("A", CallClass.SUBMIT, 4)
    for _ in range(3):
        with pytest.raises(LimitExceededError):
            rates.take("A", CallClass.SUBMIT)
    clock.now += 0.5
    rates.take("A", CallClass.SUBMIT)  # the refusals took nothing
    clock.now += 3600
    rates.take("A", CallClass.SUBMIT, 4)
    with pytest.raises(LimitExceededError):
        rates.take("A", CallClass.SUBMIT)


def test_each_agency_and_each_class_has_its_own_bucket() -> None:
    clock = Clock()
    rates = limiter(clock, other=Rate(1.0, 1.0))
    rates.take("A", CallClass.SUBMIT, 4)
    rates.take("B", CallClass.SUBMIT, 4)  # another agency is untouched
    rates.take("A", CallClass.OTHER)  # another class too
    with pytest.raises(LimitExceededError) as error:
        rates.take("A", CallClass.OTHER)
    assert error.value.limit == "other"


def test_a_cost_over_the_burst_waits_for_a_full_bucket_instead_of_never_passing() -> None:
    clock = Clock()
    rates = limiter(clock)
    rates.take("A", CallClass.SUBMIT, 10)
    with pytest.raises(LimitExceededError) as error:
        rates.take("A", CallClass.SUBMIT, 10)
    assert error.value.retry_after_s == pytest.approx(2.0)  # 4 tokens at 2 a second


def test_a_zero_rate_is_no_limit() -> None:
    rates = limiter(Clock())
    for _ in range(10_000):
        rates.take("A", CallClass.OTHER)


def test_stream_slots_refuse_past_the_cap_and_free_on_release() -> None:
    slots = Slots(2, "receive_streams", "Receive streams", STREAM_RETRY_AFTER_S)
    slots.acquire("A")
    slots.acquire("A")
    slots.acquire("B")
    with pytest.raises(LimitExceededError) as error:
        slots.acquire("A")
    assert (error.value.reason, error.value.limit) == ("CONCURRENCY_LIMITED", "receive_streams")
    assert error.value.retry_after_s == STREAM_RETRY_AFTER_S
    assert (slots.held("A"), slots.total) == (2, 3)
    slots.release("A")
    slots.acquire("A")
    for _ in range(3):
        slots.release("A")
    assert (slots.held("A"), slots.total) == (0, 1)


def test_no_stream_cap_when_zero() -> None:
    slots = Slots(0, "calls_in_flight", "calls in flight", 1.0)
    for _ in range(1000):
        slots.acquire("A")
    assert slots.held("A") == 1000


def test_the_defaults_hold_without_variables() -> None:
    settings = LimitSettings.from_env({})
    assert settings == LimitSettings()
    limits = AgencyLimits(settings)
    assert limits.streams.total == limits.calls.total == 0
    assert (settings.max_receive_streams, settings.max_calls_in_flight) == (16, 64)


def test_every_limit_is_read_from_its_variable() -> None:
    settings = LimitSettings.from_env(
        {
            "DOCAXIS_SUBMIT_RATE_PER_S": "5",
            "DOCAXIS_SUBMIT_RATE_BURST": "10",
            "DOCAXIS_OTHER_RATE_PER_S": "0",
            "DOCAXIS_MAX_RECEIVE_STREAMS": "3",
            "DOCAXIS_MAX_CALLS_IN_FLIGHT": "7",
            "DOCAXIS_MAX_MESSAGE_BYTES": str(6 * 1024 * 1024),
            "DOCAXIS_MAX_METADATA_BYTES": "8192",
            "DOCAXIS_MAX_CONCURRENT_STREAMS": "50",
            "DOCAXIS_KEEPALIVE_TIME_S": "30",
            "DOCAXIS_KEEPALIVE_TIMEOUT_S": "5",
            "DOCAXIS_MIN_CLIENT_PING_INTERVAL_S": "10",
            "DOCAXIS_MAX_CONNECTION_IDLE_S": "60",
            "DOCAXIS_MAX_CONNECTION_AGE_S": "3600",
            "DOCAXIS_MAX_CONNECTION_AGE_GRACE_S": "60",
            "DOCAXIS_HANDSHAKE_TIMEOUT_S": "3",
        }
    )
    assert settings.submit_rate == Rate(5.0, 10.0)
    assert settings.other_rate.unlimited
    assert (settings.max_receive_streams, settings.max_calls_in_flight) == (3, 7)
    options = dict(channel_options(settings))
    assert options == {
        "grpc.max_receive_message_length": 6 * 1024 * 1024,
        "grpc.max_send_message_length": 6 * 1024 * 1024,
        "grpc.max_metadata_size": 8192,
        "grpc.max_concurrent_streams": 50,
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.http2.ping_timeout_ms": 5_000,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.min_ping_interval_without_data_ms": 10_000,
        "grpc.max_connection_idle_ms": 60_000,
        "grpc.max_connection_age_ms": 3_600_000,
        "grpc.max_connection_age_grace_ms": 60_000,
        "grpc.server_handshake_timeout_ms": 3_000,
    }


def test_zero_idle_and_age_mean_never() -> None:
    options = dict(channel_options(LimitSettings(max_connection_idle_s=0, max_connection_age_s=0)))
    assert options["grpc.max_connection_idle_ms"] == options["grpc.max_connection_age_ms"]
    assert options["grpc.max_connection_idle_ms"] == 2**31 - 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DOCAXIS_SUBMIT_RATE_PER_S", "-1"),
        ("DOCAXIS_SUBMIT_RATE_PER_S", "nan"),
        ("DOCAXIS_OTHER_RATE_BURST", "0.5"),
        ("DOCAXIS_MAX_RECEIVE_STREAMS", "-1"),
        ("DOCAXIS_MAX_CALLS_IN_FLIGHT", "-2"),
        ("DOCAXIS_MAX_MESSAGE_BYTES", "1024"),
        ("DOCAXIS_MAX_METADATA_BYTES", "100"),
        ("DOCAXIS_MAX_CONCURRENT_STREAMS", "0"),
        ("DOCAXIS_KEEPALIVE_TIME_S", "0"),
        ("DOCAXIS_MAX_CONNECTION_IDLE_S", "-5"),
        ("DOCAXIS_HANDSHAKE_TIMEOUT_S", "inf"),
        ("DOCAXIS_MAX_RECEIVE_STREAMS", "many"),
    ],
)
def test_a_malformed_limit_is_a_configuration_error_naming_it(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        LimitSettings.from_env({key: value})


def test_refusals_are_counted_by_limit_and_agency_with_the_agencies_bounded() -> None:
    metrics = AxisMetrics()
    metrics.limit_refused("submit", "A")
    metrics.limit_refused("submit", "A")
    metrics.limit_refused("receive_streams", "A")
    for n in range(LIMITED_AGENCY_LABELS + 5):
        metrics.limit_refused("other", f"agency-{n}")
    metrics.limit_refused("other", "A")  # named before the cap: still named
    registry = metrics.registry
    name = "docaxis_limit_refusals_total"
    assert registry.get_sample_value(name, {"limit": "submit", "agency": "A"}) == 2
    assert registry.get_sample_value(name, {"limit": "receive_streams", "agency": "A"}) == 1
    assert registry.get_sample_value(name, {"limit": "other", "agency": "A"}) == 1
    assert registry.get_sample_value(name, {"limit": "other", "agency": "other"}) == 6
    agencies = {
        sample.labels["agency"]
        for family in registry.collect()
        if family.name == "docaxis_limit_refusals"
        for sample in family.samples
    }
    assert len(agencies) == LIMITED_AGENCY_LABELS + 1  # the named ones and "other"


def test_the_open_streams_gauge_reads_the_slots() -> None:
    metrics = AxisMetrics()
    slots = Slots(5, "receive_streams", "Receive streams", STREAM_RETRY_AFTER_S)
    metrics.watch_receive_streams(lambda: slots.total)
    slots.acquire("A")
    slots.acquire("B")
    assert metrics.registry.get_sample_value("docaxis_receive_streams_open") == 2
