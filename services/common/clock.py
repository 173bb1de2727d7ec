"""The one default clock: what a service reads when no test passes it a clock of its own.

Every service that keeps time takes a `Clock` in its constructor (tests pass a fixed or stepped
one) and defaults to `utc_now`; one definition keeps those defaults from drifting (naive
datetimes, local time) one module at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current instant, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)
