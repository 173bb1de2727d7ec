"""What the deadline and statistics reports need from storage."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AgencyMonth:
    """One agency's figures for one Vietnam calendar month.

    Sender side, over the documents it submitted in the month: `sent` (every business type) and
    `recalled` (documents with a copy withdrawn by a recall, whether agreed or before receipt;
    supersession by an update or replacement is not counted). Recipient side, over the copies
    addressed to it and accepted by docaxis in the month: `received`, `rejected` (a 02),
    `completed` (a 06), `with_due_date` (copies of documents with a due date, neither rejected
    nor withdrawn), `completed_on_time` (a 06 stamped before the due date ended, Vietnam time)
    `arrived_same_day` (a 01 on the Vietnam calendar day the copy was accepted) and
    `registered_same_day` (a 03 on the Vietnam calendar day of its 01).
    """

    agency: str
    sent: int = 0
    recalled: int = 0
    received: int = 0
    rejected: int = 0
    completed: int = 0
    with_due_date: int = 0
    completed_on_time: int = 0
    arrived_same_day: int = 0
    registered_same_day: int = 0


@dataclass(frozen=True, slots=True)
class ReportedCopy:
    """The copy a report line is about, as a person finds it: document, sender and recipient."""

    delivery_id: str
    document_uuid: str
    document_id: str
    subject: str
    sender: str
    recipient: str


@dataclass(frozen=True, slots=True)
class OverdueCopy(ReportedCopy):
    """A copy past its due date with no 06 (nor 02) by the time asked about."""

    due_date: dt.date
    accepted_at: dt.datetime


class StalledStep(enum.StrEnum):
    NOT_ARRIVED = "not_arrived"  # no 01 within the arrival grace
    NOT_REGISTERED = "not_registered"  # no 03 (nor 02) by the end of the 01's working day


@dataclass(frozen=True, slots=True)
class StalledCopy(ReportedCopy):
    """A copy stuck at a step (domain.md §10.2), whatever its due date."""

    step: StalledStep
    waiting_since: dt.datetime
    overdue_from: dt.datetime


class ReportStore(Protocol):
    async def monthly(
        self, start: dt.datetime, end: dt.datetime, agencies: Sequence[str]
    ) -> list[AgencyMonth]:
        """Figures of [start, end) for `agencies` (every agency with activity when empty), by
        agency code; agencies with no activity are left out."""
        ...

    async def overdue(
        self, agency: str | None, as_of: dt.datetime, limit: int
    ) -> list[OverdueCopy]:
        """Copies `agency` (every agency: None) sent or received, accepted by `as_of`, not
        withdrawn, whose due date ended by `as_of` with no 06 or 02 stamped by then; by due
        date, then DocumentId."""
        ...

    async def stalled(
        self, agency: str | None, as_of: dt.datetime, arrival_grace: dt.timedelta, limit: int
    ) -> list[StalledCopy]:
        """Copies `agency` (every agency: None) sent or received, not withdrawn nor
        dead-lettered, stuck at a step as of `as_of`; most overdue first."""
        ...
