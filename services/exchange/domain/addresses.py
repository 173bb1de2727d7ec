"""The exchange's view of where mail goes: what it asks the directory, in its own types (the
directory's answers arrive over DirectoryService, or from the directory in the same process
through the composition root), so the exchange depends on no part of the directory's code."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class AddressState(enum.StrEnum):
    """An addressed code's own state on a day."""

    OPEN = "open"
    NOT_YET_VALID = "not_yet_valid"
    CLOSED = "closed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail addressed to `code` goes on a day."""

    code: str
    state: AddressState
    # The open agency that receives it: `code` itself when open, the end of its successor chain
    # when closed; None when it cannot be routed (`problem` says why).
    effective: str | None
    # Codes followed, `code` first and `effective` last (just `code` when open).
    chain: tuple[str, ...] = ()
    # Of `code` itself: its last valid day and its direct successors.
    valid_to: dt.date | None = None
    successor_codes: tuple[str, ...] = ()
    problem: str = ""
    # The peer hub that serves `effective` (federation): mail for it is forwarded there. None:
    # this hub serves it.
    hub: str | None = None

    @property
    def redirected(self) -> bool:
        return self.effective is not None and self.effective != self.code
