"""Report periods, deadlines and who may ask for which agency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from docaxis.exchange.v1 import report_service_pb2 as rpb

from services.common.errors import PermissionDeniedError, ValidationError
from services.common.identity import Caller, Role
from services.exchange.domain.deadlines import deadline, month_bounds, parse_month, rate
from services.exchange.entrypoints.report_api import overdue_to_pb, stalled_to_pb
from services.exchange.service_layer.report_ports import (
    AgencyMonth,
    OverdueCopy,
    StalledCopy,
    StalledStep,
)
from services.exchange.service_layer.reports import ReportHandlers
from tests.unit.exchange.builders import HEALTH, NOW, SENDER, fixed_clock

ADMIN = Caller(Role.ADMIN)
AGENCY = Caller(Role.AGENCY, HEALTH)


def test_a_month_is_a_vietnam_calendar_month() -> None:
    start, end = month_bounds(parse_month("2026-10"))
    assert start == dt.datetime(2026, 9, 30, 17, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 10, 31, 17, tzinfo=dt.UTC)
    start, end = month_bounds(parse_month("2026-12"))
    assert (start.astimezone(dt.UTC).day, end.astimezone(dt.UTC).date()) == (
        30,
        dt.date(2026, 12, 31),
    )
    for bad in ("2026-13", "2026-1", "oct", "2026-10-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_month(bad)


def test_a_due_date_ends_at_midnight_in_vietnam() -> None:
    assert deadline(dt.date(2026, 10, 15)) == dt.datetime(2026, 10, 15, 17, tzinfo=dt.UTC)
    assert rate(3, 4) == 75.0
    assert rate(0, 0) is None


class RecordingReportStore:
    def __init__(self, overdue: int = 0) -> None:
        self.asked: list[tuple[object, ...]] = []
        self._overdue = overdue

    async def monthly(
        self, start: dt.datetime, end: dt.datetime, agencies: Sequence[str]
    ) -> list[AgencyMonth]:
        self.asked.append((start, end, list(agencies)))
        return [AgencyMonth(code) for code in agencies]

    async def overdue(
        self, agency: str | None, as_of: dt.datetime, limit: int
    ) -> list[OverdueCopy]:
        self.asked.append((agency, as_of, limit))
        copy = OverdueCopy("d", "u", "id", "s", SENDER, HEALTH, dt.date(2026, 1, 1), NOW)
        return [copy] * min(limit, self._overdue)

    async def stalled(
        self, agency: str | None, as_of: dt.datetime, arrival_grace: dt.timedelta, limit: int
    ) -> list[StalledCopy]:
        self.asked.append((agency, as_of, arrival_grace, limit))
        copy = StalledCopy("d", "u", "id", "s", SENDER, HEALTH, StalledStep.NOT_ARRIVED, NOW, NOW)
        return [copy] * min(limit, self._overdue)


async def test_administrators_ask_about_anyone_and_agencies_about_themselves() -> None:
    store = RecordingReportStore()
    reports = ReportHandlers(store, clock=fixed_clock)
    assert await reports.statistics(ADMIN, "2026-10", [SENDER, HEALTH, SENDER]) == [
        AgencyMonth(SENDER),
        AgencyMonth(HEALTH),
    ]
    assert await reports.statistics(AGENCY, "2026-10", []) == [AgencyMonth(HEALTH)]
    assert await reports.statistics(AGENCY, "2026-10", [HEALTH]) == [AgencyMonth(HEALTH)]
    with pytest.raises(PermissionDeniedError):
        await reports.statistics(AGENCY, "2026-10", [SENDER])
    with pytest.raises(PermissionDeniedError):
        await reports.statistics(Caller(Role.MONITOR), "2026-10", [])
    with pytest.raises(ValidationError) as bad:
        await reports.statistics(ADMIN, "10/2026", [])
    assert [v.field for v in bad.value.violations] == ["month"]


async def test_overdue_defaults_to_now_and_says_when_it_was_cut() -> None:
    store = RecordingReportStore(overdue=5)
    reports = ReportHandlers(store, clock=fixed_clock)
    copies, truncated = await reports.overdue(AGENCY, "", None, 3)
    assert (len(copies), truncated) == (3, True)
    assert store.asked[-1] == (HEALTH, NOW, 4)
    copies, truncated = await reports.overdue(ADMIN, SENDER, NOW, 0)
    assert (len(copies), truncated) == (5, False)
    # An administrator without an agency asks about every agency.
    await reports.overdue(ADMIN, "", None, 0)
    every_agency: tuple[object, ...] = (None, NOW, 1001)
    assert store.asked[-1] == every_agency
    with pytest.raises(ValidationError) as bad:
        await reports.overdue(ADMIN, "", None, -1)
    assert {v.field for v in bad.value.violations} == {"limit"}
    with pytest.raises(PermissionDeniedError):
        await reports.overdue(AGENCY, SENDER, None, 0)


async def test_stalled_steps_default_their_grace_and_limit_and_keep_agencies_to_themselves() -> (
    None
):
    store = RecordingReportStore(overdue=3)
    reports = ReportHandlers(store, clock=fixed_clock)
    copies, truncated = await reports.stalled(AGENCY, "", None, 0, 2)
    assert (len(copies), truncated) == (2, True)
    assert store.asked[-1] == (HEALTH, NOW, dt.timedelta(minutes=60), 3)
    await reports.stalled(ADMIN, "", NOW, 15, 0)
    every_agency: tuple[object, ...] = (None, NOW, dt.timedelta(minutes=15), 1001)
    assert store.asked[-1] == every_agency
    with pytest.raises(ValidationError) as bad:
        await reports.stalled(ADMIN, "", None, -1, 10_001)
    assert {v.field for v in bad.value.violations} == {"arrival_grace_minutes", "limit"}
    with pytest.raises(PermissionDeniedError):
        await reports.stalled(AGENCY, SENDER, None, 0, 0)


def test_a_report_line_names_the_copy_it_is_about() -> None:
    """Overdue and stalled lines share the copy's identity fields, then add their own."""
    overdue = overdue_to_pb(
        OverdueCopy("d", "u", "id", "s", SENDER, HEALTH, dt.date(2026, 1, 1), NOW)
    )
    stalled = stalled_to_pb(
        StalledCopy("d", "u", "id", "s", SENDER, HEALTH, StalledStep.NOT_REGISTERED, NOW, NOW)
    )
    for line in (overdue, stalled):
        assert (
            line.delivery_id,
            line.document_uuid,
            line.document_id,
            line.subject,
            line.sender,
            line.recipient,
        ) == ("d", "u", "id", "s", SENDER, HEALTH)
    assert (overdue.due_date, overdue.accepted_at.ToDatetime(dt.UTC)) == ("2026-01-01", NOW)
    assert (stalled.step, stalled.overdue_from.ToDatetime(dt.UTC)) == (
        rpb.STALLED_STEP_NOT_REGISTERED,
        NOW,
    )
