"""Deadlines and reporting periods, in Vietnam time (UTC+7, no daylight saving).

A document due on a day is on time when completed (06) before that day ends in Vietnam; a month
of statistics is a Vietnam calendar month. Counting rules are in the module of the report.
"""

from __future__ import annotations

import datetime as dt
import re

from services.exchange.domain.model import VIETNAM

_MONTH = re.compile(r"(\d{4})-(\d{2})")


def deadline(due_date: dt.date) -> dt.datetime:
    """The instant a due date ends: midnight after it, in Vietnam."""
    return dt.datetime.combine(due_date + dt.timedelta(days=1), dt.time(), VIETNAM)


def parse_month(raw: str) -> dt.date:
    """`YYYY-MM` as the first day of that month; ValueError otherwise."""
    match = _MONTH.fullmatch(raw)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{raw!r} is not a YYYY-MM month")
    return dt.date(int(match[1]), int(match[2]), 1)


def month_bounds(first_day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a Vietnam calendar month, as aware instants."""
    following = (first_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return (
        dt.datetime.combine(first_day.replace(day=1), dt.time(), VIETNAM),
        dt.datetime.combine(following, dt.time(), VIETNAM),
    )


def rate(part: int, whole: int) -> float | None:
    """part / whole as a percentage, None when there is nothing to measure."""
    return None if whole == 0 else 100.0 * part / whole
