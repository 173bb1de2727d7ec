"""Vietnam time: UTC+7 with no daylight saving. Deadlines, reporting months, document dates and
the directory's validity days are all Vietnam calendar days."""

from __future__ import annotations

import datetime as dt
from typing import Final

VIETNAM: Final = dt.timezone(dt.timedelta(hours=7), "ICT")


def today_in_vietnam(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(VIETNAM).date()
