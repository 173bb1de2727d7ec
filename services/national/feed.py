"""The national axis's agency registry as a peer directory feed: `getSynchronizeUnit` (a delta
with versions and tombstones) read into this hub's directory, every agency served by the
national axis, so local agencies can address them (DirectoryHandlers.pull_peer keeps this hub's
own agencies its own)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from services.common.clock import Clock, utc_now
from services.common.errors import DomainError
from services.directory.domain.codes import CodeForm
from services.directory.domain.model import (
    Agency,
    AgencyKind,
    today_in_vietnam,
    validate_agency,
)
from services.directory.service_layer.handlers import PeerPage
from services.national.client import NationalAxisClient

log = structlog.get_logger(__name__)

# The registry gives no validity dates: an agency it lists is taken as open since long before
# any document docaxis will see; a tombstone closes it the day before it was seen deleted, a day of
# Vietnam as every validity date of the directory (the UTC date, which it read until 2026-12-07,
# is the day before from 00:00 to 07:00 there and closed such an agency a day early).
OPEN_SINCE = dt.date(2000, 1, 1)
_TOP_LEVEL_KINDS = {"G": AgencyKind.MINISTRY, "H": AgencyKind.PROVINCE}


def _kind(code: str) -> AgencyKind:
    if code.startswith("000.00.00.") and len(code) == 13:
        return _TOP_LEVEL_KINDS.get(code[10], AgencyKind.OTHER)
    return AgencyKind.OTHER


class NationalAxisFeed:
    def __init__(
        self,
        hub_code: str,
        client: NationalAxisClient,
        forms: frozenset[CodeForm],
        clock: Clock = utc_now,
    ) -> None:
        self._hub_code = hub_code
        self._client = client
        self._forms = forms
        self._clock = clock

    async def page(self, since_version: int) -> PeerPage:
        data = await self._client.synchronize(since_version)
        agencies: list[tuple[Agency, str | None]] = []
        for raw in data.get("agencies") or []:
            agency = self._agency(raw)
            if agency is not None:
                agencies.append((agency, None))
        next_version = int(data.get("nextVersion") or since_version)
        return agencies, next_version, bool(data.get("more"))

    def _agency(self, raw: dict[str, Any]) -> Agency | None:
        code = str(raw.get("code102") or raw.get("code") or "")
        deleted = str(raw.get("status", "")).lower() == "deleted"
        today = today_in_vietnam(self._clock())
        try:
            return validate_agency(
                Agency(
                    code=code,
                    name=str(raw.get("name") or code)[:200],
                    kind=_kind(code),
                    valid_from=OPEN_SINCE,
                    parent_code=str(raw.get("pid") or "") or None,
                    valid_to=today - dt.timedelta(days=1) if deleted else None,
                    email=str(raw.get("mail") or ""),
                ),
                self._forms,
            )
        except DomainError as exc:
            # A record this hub cannot hold (another code form): skipped, not the whole feed.
            log.warning("national_agency_skipped", hub=self._hub_code, code=code, error=str(exc))
            return None
