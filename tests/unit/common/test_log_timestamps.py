"""The timestamp of every log line (services/common/logs.py, IsoUtcStamper): the bytes
structlog's ISO UTC TimeStamper wrote for the same instant, whichever second, day or year, in
whatever order the instants come, and from the same clock."""

from __future__ import annotations

import datetime as dt
import random
import types
from collections.abc import Iterator

import pytest
import structlog

from services.common.logs import IsoUtcStamper

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NS = 1_000_000_000


def _structlog_stamp(ns: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `TimeStamper(fmt="iso", utc=True)` writes when `datetime.now(UTC)` reads `ns`
    (floored to the microsecond, as datetime reads the clock)."""
    instant = _EPOCH + dt.timedelta(microseconds=ns // 1000)
    clock = types.SimpleNamespace(
        datetime=types.SimpleNamespace(now=lambda tz: instant.astimezone(tz)),
        timezone=dt.timezone,
    )
    monkeypatch.setattr(structlog.processors, "datetime", clock)
    stamped = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})
    return str(stamped["timestamp"])


def _boundaries() -> Iterator[int]:
    """Instants around the turns of seconds, days, months, years (a leap day, 2038's 32-bit
    rollover), and on whole seconds and microseconds."""
    turns = [
        dt.datetime(2026, 12, 6, 21, 40, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2028, 2, 29, tzinfo=dt.UTC),
        dt.datetime(2028, 3, 1, tzinfo=dt.UTC),
        dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=dt.UTC),
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        _EPOCH + dt.timedelta(seconds=1),
    ]
    for turn in turns:
        base = (turn - _EPOCH) // dt.timedelta(microseconds=1) * 1000
        for offset in (-1_001, -1_000, -999, -1, 0, 1, 999, 1_000, 1_001, 500_000_000):
            yield base + offset


def _random_instants(count: int) -> Iterator[int]:
    rng = random.Random(20261206)  # noqa: S311 - test data, seeded: a failure is reproducible
    start = (dt.datetime(1971, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(seconds=1)
    end = (dt.datetime(2100, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(seconds=1)
    for _ in range(count):
        second = rng.randrange(start, end)
        # Whole seconds and whole microseconds too, where isoformat drops the fraction or not.
        fraction = rng.choice([0, rng.randrange(1_000_000) * 1000, rng.randrange(_NS)])
        yield second * _NS + fraction


def test_every_instant_is_written_as_structlogs_timestamper_wrote_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamper = IsoUtcStamper()
    instants = [*_boundaries(), *_random_instants(20_000)]
    # In order (each second's text reused by the next lines), and shuffled: back and forth
    # between seconds, as a clock stepped back would, and repeated seconds out of turn.
    shuffled = random.Random(7).sample(instants, len(instants))  # noqa: S311 - test data
    orders = [sorted(instants), shuffled]
    for order in orders:
        for ns in order:
            assert stamper.format(ns) == _structlog_stamp(ns, monkeypatch), ns


def test_the_same_second_reuses_its_text_and_a_new_one_does_not() -> None:
    stamper = IsoUtcStamper()
    base = (dt.datetime(2026, 12, 6, 23, 59, 59, tzinfo=dt.UTC) - _EPOCH).total_seconds()
    ns = int(base) * _NS
    assert stamper.format(ns + 999_999_999) == "2026-12-06T23:59:59.999999Z"
    assert stamper.format(ns + 1_000) == "2026-12-06T23:59:59.000001Z"
    assert stamper.format(ns + 999) == "2026-12-06T23:59:59Z"
    assert stamper.format(ns + _NS) == "2026-12-07T00:00:00Z"
    assert stamper.format(ns + _NS - 1) == "2026-12-06T23:59:59.999999Z"


def test_a_line_is_stamped_from_the_clock_datetime_reads() -> None:
    stamper = IsoUtcStamper()
    before = dt.datetime.now(dt.UTC)
    stamped = stamper(None, "info", {})["timestamp"]
    after = dt.datetime.now(dt.UTC)
    assert before <= dt.datetime.fromisoformat(stamped) <= after
