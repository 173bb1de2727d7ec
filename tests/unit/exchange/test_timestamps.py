"""The protobuf Timestamps of a pushed copy, a receipt and an acknowledgement: the seconds and
nanos `Timestamp.FromDatetime` gives, computed without its Python frames (several a copy)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.internal import well_known_types

from services.exchange.entrypoints.convert import timestamp

ICT = dt.timezone(dt.timedelta(hours=7))
INSTANTS = [
    dt.datetime(2026, 12, 7, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2026, 12, 8, 6, 0, 0, 1, tzinfo=ICT),
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2000, 2, 29, 12, 30, 15, 250000, tzinfo=dt.timezone(-dt.timedelta(hours=5))),
]


@pytest.mark.parametrize("instant", INSTANTS)
def test_a_timestamp_is_what_from_datetime_gives(instant: dt.datetime) -> None:
    want = timestamp_pb2.Timestamp()
    want.FromDatetime(instant.astimezone(dt.UTC))
    got = timestamp(instant)
    assert got is not None
    assert (got.seconds, got.nanos) == (want.seconds, want.nanos)
    assert got.SerializeToString() == want.SerializeToString()


def test_a_timestamp_is_made_without_from_datetime(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_datetime(self: object, value: dt.datetime) -> None:
        raise AssertionError("went through Timestamp.FromDatetime")

    monkeypatch.setattr(well_known_types.Timestamp, "FromDatetime", from_datetime)
    got = timestamp(INSTANTS[1])
    assert got is not None
    assert got.ToDatetime(dt.UTC) == INSTANTS[1]
    assert timestamp(None) is None
