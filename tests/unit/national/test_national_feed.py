"""The national axis's registry read as a peer feed: a tombstone closes the agency on the Vietnam
day before it was seen deleted, whatever the UTC date is then."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from services.directory.domain.codes import DEFAULT_FORMS
from services.national.client import NationalAxisClient
from services.national.feed import NationalAxisFeed

DELETED = "000.00.00.H48"


class _Registry:
    """The axis's getSynchronizeUnit: one page, one agency deleted."""

    async def synchronize(self, version: int) -> dict[str, Any]:
        record = {"code102": DELETED, "name": "UBND tỉnh Thử 48", "status": "deleted"}
        return {"agencies": [record], "nextVersion": version + 1, "more": False}


async def _closed_on(now: dt.datetime) -> dt.date | None:
    registry = cast(NationalAxisClient, _Registry())
    feed = NationalAxisFeed("vdxp", registry, DEFAULT_FORMS, clock=lambda: now)
    ((agency, _hub),), _next, _more = await feed.page(0)
    assert agency.code == DELETED
    return agency.valid_to


async def test_a_tombstone_seen_after_midnight_in_vietnam_closes_the_agency_the_day_before() -> (
    None
):
    """At 01:00 on Tuesday 8 December in Vietnam (18:00 on the 7th in UTC) the agency is closed
    from the 8th: its last valid day is Monday the 7th, not the 6th (the UTC date's day before)."""
    assert await _closed_on(dt.datetime(2026, 12, 7, 18, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 7)


async def test_a_tombstone_seen_in_the_vietnamese_afternoon_closes_the_agency_the_day_before() -> (
    None
):
    """At 15:00 in Vietnam (08:00 UTC), both calendars agree."""
    assert await _closed_on(dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 6)
