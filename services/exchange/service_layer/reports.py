"""Report use cases: overdue copies and monthly statistics, for administrators and agencies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from services.common.clock import Clock, utc_now
from services.common.errors import FieldViolation, PermissionDeniedError, ValidationError
from services.common.identity import Caller, Role
from services.exchange.domain.deadlines import month_bounds, parse_month
from services.exchange.service_layer.report_ports import (
    AgencyMonth,
    OverdueCopy,
    ReportStore,
    StalledCopy,
)

DEFAULT_OVERDUE_LIMIT = 1000
MAX_OVERDUE_LIMIT = 10_000
DEFAULT_ARRIVAL_GRACE_MINUTES = 60
MAX_ARRIVAL_GRACE_MINUTES = 7 * 24 * 60


def _scope(caller: Caller, agencies: Sequence[str]) -> list[str]:
    """The agencies the caller may ask about: any for an administrator, itself for an agency."""
    if caller.role is Role.ADMIN:
        return list(dict.fromkeys(agencies))
    own = caller.require_agency()
    if any(code != own for code in agencies):
        raise PermissionDeniedError(
            "an agency reports on itself only", meta={"caller": own, "asked": ",".join(agencies)}
        )
    return [own]


def _listed_agency(caller: Caller, agency: str) -> str | None:
    """The agency a listing is about; None (every agency) for an administrator naming none."""
    return next(iter(_scope(caller, [agency] if agency else [])), None)


def _wanted(limit: int, problems: list[FieldViolation]) -> int:
    """How many copies a listing returns (0 asks for the default)."""
    if not 0 <= limit <= MAX_OVERDUE_LIMIT:
        problems.append(FieldViolation("limit", f"0 to {MAX_OVERDUE_LIMIT}"))
    return limit or DEFAULT_OVERDUE_LIMIT


class ReportHandlers:
    def __init__(self, store: ReportStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def overdue(
        self, caller: Caller, agency: str, as_of: dt.datetime | None, limit: int
    ) -> tuple[list[OverdueCopy], bool]:
        """Overdue copies and whether the list was cut at `limit`."""
        problems: list[FieldViolation] = []
        wanted = _wanted(limit, problems)
        if problems:
            raise ValidationError("invalid overdue query", problems)
        # An administrator without an agency asks about every agency (the admin console).
        code = _listed_agency(caller, agency)
        copies = await self._store.overdue(code, as_of or self._clock(), wanted + 1)
        return copies[:wanted], len(copies) > wanted

    async def stalled(
        self,
        caller: Caller,
        agency: str,
        as_of: dt.datetime | None,
        arrival_grace_minutes: int,
        limit: int,
    ) -> tuple[list[StalledCopy], bool]:
        """Copies stuck at a step and whether the list was cut at `limit`."""
        problems: list[FieldViolation] = []
        wanted = _wanted(limit, problems)
        if not 0 <= arrival_grace_minutes <= MAX_ARRIVAL_GRACE_MINUTES:
            problems.append(
                FieldViolation("arrival_grace_minutes", f"0 to {MAX_ARRIVAL_GRACE_MINUTES}")
            )
        if problems:
            raise ValidationError("invalid stalled-steps query", problems)
        code = _listed_agency(caller, agency)
        grace = dt.timedelta(minutes=arrival_grace_minutes or DEFAULT_ARRIVAL_GRACE_MINUTES)
        copies = await self._store.stalled(code, as_of or self._clock(), grace, wanted + 1)
        return copies[:wanted], len(copies) > wanted

    async def statistics(
        self, caller: Caller, month: str, agencies: Sequence[str]
    ) -> list[AgencyMonth]:
        try:
            first_day = parse_month(month)
        except ValueError as exc:
            raise ValidationError("invalid month", [FieldViolation("month", str(exc))]) from None
        scope = _scope(caller, agencies)
        start, end = month_bounds(first_day)
        return await self._store.monthly(start, end, scope)
