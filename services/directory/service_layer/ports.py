"""What the directory's use cases need from the outside world."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from services.directory.domain.model import Agency


class AgencyExistsError(Exception):
    """`add` found the code already taken (a concurrent registration won)."""


class Agencies(Protocol):
    """The agency store. Codes are never deleted: closing an agency is an update."""

    async def get(self, code: str) -> Agency | None: ...

    async def get_many(self, codes: Sequence[str]) -> dict[str, Agency]: ...

    async def add(self, agency: Agency) -> Agency:
        """Stores a new agency and returns it with its version; AgencyExistsError if the code is
        taken."""
        ...

    async def list(
        self, *, parent_code: str | None, open_on: dt.date | None, after_code: str, limit: int
    ) -> list[Agency]:
        """Agencies ordered by code, strictly after `after_code`; with `open_on`, only those not
        closed on that day."""
        ...
