"""The `Agencies` port's reorganisation and delta-feed methods, against the fake and Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg
import pytest

from services.directory.adapters.postgres import PostgresAgencies
from services.directory.domain.model import Agency, AgencyKind
from services.directory.domain.reorganisation import Reorganisation, ReorganisationKind
from services.directory.service_layer.ports import Agencies, StaleAgencyError
from tests.fakes import FakeAgencies
from tests.integration.contract.conftest import unique

REFORM = dt.date(2025, 7, 1)


def agency(code: str, **changes: Any) -> Agency:
    plain = Agency(code, f"Cơ quan {code}", AgencyKind.WARD, dt.date(2019, 3, 12))
    return dataclasses.replace(plain, **changes)


class ReorganisationsContract:
    async def test_a_reorganisation_closes_its_agencies_under_new_versions(
        self, agencies: Agencies
    ) -> None:
        """The closed agencies come back (and are stored) with a higher version than any
        before; the reorganisation gets an id; the changes appear in the feed in that order."""
        old_a = await agencies.add(agency(unique("A")))
        old_b = await agencies.add(agency(unique("A")))
        new = await agencies.add(agency(unique("N"), valid_from=REFORM))
        mark = await agencies.latest_version()
        assert mark >= new.version
        plan = Reorganisation(
            ReorganisationKind.MERGE, REFORM, (old_a.code, old_b.code), (new.code,), "ghi chú"
        )
        recorded, closed = await agencies.record_reorganisation(
            plan, [plan.closed(old_a), plan.closed(old_b)]
        )
        assert recorded.id > 0
        assert recorded == plan
        assert [(a.code, a.valid_to, a.successor_codes) for a in closed] == [
            (old_a.code, dt.date(2025, 6, 30), (new.code,)),
            (old_b.code, dt.date(2025, 6, 30), (new.code,)),
        ]
        assert mark < closed[0].version < closed[1].version
        stored = await agencies.get(old_a.code)
        assert stored is not None
        assert stored.version == closed[0].version
        assert stored.same_record(closed[0])
        assert await agencies.latest_version() == closed[1].version
        changes = await agencies.changes(mark, 10)
        assert [a.code for a in changes] == [old_a.code, old_b.code]
        assert await agencies.changes(closed[1].version, 10) == []
        assert [a.code for a in await agencies.changes(mark, 1)] == [old_a.code]

    async def test_a_stale_agency_fails_the_whole_reorganisation(self, agencies: Agencies) -> None:
        """One agency read at an old version: StaleAgencyError, and the other is untouched."""
        fresh = await agencies.add(agency(unique("S")))
        stale = await agencies.add(agency(unique("S")))
        plan = Reorganisation(ReorganisationKind.CLOSE, REFORM, (fresh.code, stale.code))
        outdated = dataclasses.replace(plan.closed(stale), version=stale.version - 1)
        with pytest.raises(StaleAgencyError):
            await agencies.record_reorganisation(plan, [plan.closed(fresh), outdated])
        assert await agencies.get(fresh.code) == fresh
        kept = await agencies.get(fresh.code)
        assert kept is not None
        assert kept.version == fresh.version

    async def test_registrations_are_in_the_feed_by_version(self, agencies: Agencies) -> None:
        mark = await agencies.latest_version()
        added = [await agencies.add(agency(unique("F"))) for _ in range(3)]
        assert [a.code for a in await agencies.changes(mark, 10)] == [a.code for a in added]


class TestFakeReorganisations(ReorganisationsContract):
    @pytest.fixture
    def agencies(self) -> Agencies:
        return FakeAgencies()


@pytest.mark.integration
class TestPostgresReorganisations(ReorganisationsContract):
    @pytest.fixture
    def agencies(self, pool: asyncpg.Pool) -> Agencies:
        return PostgresAgencies(pool)
