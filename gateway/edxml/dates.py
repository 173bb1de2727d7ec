"""edXML dates and timestamps: strict `yyyy/MM/dd[ HH:mm:ss]` out, lenient forms in (UTC+7)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# The wire carries no zone; every edXML time is Vietnam wall time (domain.md §2.1).
from docaxis_client.vietnam import VIETNAM as VIETNAM

# [0-9], not \d: \d also matches other scripts' digits, which int() would then accept.
_STRICT_DATE = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}")
_STRICT_TIMESTAMP = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_YMD = r"(?P<y>[0-9]{4})[/-](?P<m>[0-9]{1,2})[/-](?P<d>[0-9]{1,2})"
_DMY = r"(?P<d>[0-9]{1,2})[/.-](?P<m>[0-9]{1,2})[/.-](?P<y>[0-9]{4})"
_TIME = (
    r"(?:[T ]+(?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:[.,][0-9]{1,9})?)?"
    r"\s*(?P<tz>Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
_LENIENT = (re.compile(_YMD + _TIME), re.compile(_DMY + _TIME))


@dataclass(frozen=True, slots=True)
class Parsed:
    """A lenient parse: the value and whether the text was already in the strict form."""

    value: dt.datetime
    strict: bool

    @property
    def date(self) -> dt.date:
        return self.value.date()


def format_date(value: dt.date) -> str:
    """`yyyy/MM/dd`."""
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: dt.datetime) -> str:
    """`yyyy/MM/dd HH:mm:ss` in Vietnam time; a naive value is taken as Vietnam wall time."""
    if value.tzinfo is not None:
        value = value.astimezone(VIETNAM)
    return f"{format_date(value)} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"


def vietnam_today(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(VIETNAM).date()


def _lenient(raw: str) -> dt.datetime | None:
    text = raw.strip()
    for pattern in _LENIENT:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        try:
            value = dt.datetime(
                int(parts["y"]),
                int(parts["m"]),
                int(parts["d"]),
                int(parts["H"] or 0),
                int(parts["M"] or 0),
                int(parts["S"] or 0),
                tzinfo=VIETNAM,
            )
        except ValueError:
            return None
        zone = parts["tz"]
        if zone:
            # An explicit offset wins over the Vietnam-time convention; store Vietnam time.
            offset = dt.timedelta(0)
            if zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            try:
                value = value.replace(tzinfo=dt.timezone(offset)).astimezone(VIETNAM)
            except (ValueError, OverflowError):  # 9999-12-31T23:59:59Z is past year 9999 here
                return None
        return value
    return None


def parse_date(raw: str) -> Parsed | None:
    """`yyyy/MM/dd` strictly; also `dd/MM/yyyy`, ISO, and a timestamp's date part (lenient)."""
    value = _lenient(raw)
    if value is None:
        return None
    text = raw.strip()
    strict = _STRICT_DATE.fullmatch(text) is not None and format_date(value.date()) == text
    return Parsed(value, strict)


def parse_timestamp(raw: str) -> Parsed | None:
    """`yyyy/MM/dd HH:mm:ss` strictly; also `dd/MM/yyyy HH:mm:ss`, ISO 8601, a bare date."""
    value = _lenient(raw)
    if value is None:
        return None
    text = raw.strip()
    strict = _STRICT_TIMESTAMP.fullmatch(text) is not None and format_timestamp(value) == text
    return Parsed(value, strict)
