"""The `Agencies` port: one set of tests, run against FakeAgencies and PostgresAgencies."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg
import pytest

from services.directory.adapters.postgres import PostgresAgencies
from services.directory.domain.model import Agency, AgencyKind
from services.directory.service_layer.ports import Agencies, AgencyExistsError
from tests.fakes import ConstraintViolation, FakeAgencies
from tests.integration.contract.conftest import unique

# What each implementation raises when a write breaks a constraint of the store.
REFUSED = (ConstraintViolation, AgencyExistsError, asyncpg.IntegrityConstraintViolationError)


def agency(code: str, **changes: Any) -> Agency:
    plain = Agency(code, f"Cơ quan {code}", AgencyKind.DEPARTMENT, dt.date(2019, 3, 12))
    return dataclasses.replace(plain, **changes)


class AgenciesContract:
    """What DirectoryHandlers relies on. Codes are unique per test and share a prefix, so that
    `after_code=prefix` starts a listing at this test's agencies in a shared database."""

    async def test_an_added_agency_comes_back_whole_with_a_version(
        self, agencies: Agencies
    ) -> None:
        """Every field survives the store; the version is assigned by it."""
        root = await agencies.add(agency(unique("R")))
        stored = await agencies.add(
            Agency(
                code=f"{root.code}.01",
                name="UBND huyện Vân Đồn (Quảng Ninh)",
                kind=AgencyKind.DISTRICT,
                valid_from=dt.date(2019, 3, 12),
                parent_code=root.code,
                valid_to=dt.date(2025, 6, 30),
                successor_codes=("000.00.40.H45", "000.00.41.H45"),
                email="vandon@quangninh.gov.vn",
            )
        )
        assert stored.version > 0
        assert stored.successor_codes == ("000.00.40.H45", "000.00.41.H45")
        fetched = await agencies.get(stored.code)
        assert fetched is not None
        assert fetched.same_record(stored)
        assert fetched.version == stored.version

    async def test_an_unknown_code_is_none(self, agencies: Agencies) -> None:
        """get answers None, get_many leaves the code out."""
        code = unique("U")
        assert await agencies.get(code) is None
        assert await agencies.get_many([code]) == {}
        assert await agencies.get_many([]) == {}

    async def test_get_many_returns_the_known_codes_keyed_by_code(self, agencies: Agencies) -> None:
        """Repeated codes are harmless; unknown codes are simply absent."""
        first = await agencies.add(agency(unique("M")))
        second = await agencies.add(agency(unique("M")))
        found = await agencies.get_many([second.code, unique("M"), first.code, second.code])
        assert found == {first.code: first, second.code: second}
        assert {a.version for a in found.values()} == {first.version, second.version}

    async def test_versions_grow_with_every_addition(self, agencies: Agencies) -> None:
        """A later agency has a higher version (clients use it to notice changes)."""
        versions = [(await agencies.add(agency(unique("V")))).version for _ in range(3)]
        assert versions == sorted(set(versions))

    async def test_adding_an_existing_code_is_refused_and_keeps_the_first(
        self, agencies: Agencies
    ) -> None:
        """The code is the key: a second add of it fails and changes nothing."""
        first = await agencies.add(agency(unique("D")))
        with pytest.raises(REFUSED):
            await agencies.add(dataclasses.replace(first, name="Khác"))
        again = await agencies.get(first.code)
        assert again is not None
        assert (again.name, again.version) == (first.name, first.version)

    async def test_adding_under_an_unknown_parent_is_refused(self, agencies: Agencies) -> None:
        """The parent must exist in the store."""
        code = unique("P")
        with pytest.raises(REFUSED):
            await agencies.add(agency(code, parent_code=unique("P")))
        assert await agencies.get(code) is None

    async def test_a_validity_that_ends_before_it_starts_is_refused(
        self, agencies: Agencies
    ) -> None:
        """valid_to may equal valid_from but not precede it."""
        same_day = await agencies.add(
            agency(unique("T"), valid_from=dt.date(2025, 1, 1), valid_to=dt.date(2025, 1, 1))
        )
        assert same_day.valid_to == dt.date(2025, 1, 1)
        with pytest.raises(REFUSED):
            await agencies.add(
                agency(unique("T"), valid_from=dt.date(2025, 1, 2), valid_to=dt.date(2025, 1, 1))
            )

    async def test_a_listing_is_ordered_by_code_point_and_starts_after_the_given_code(
        self, agencies: Agencies
    ) -> None:
        """Order is by code point ('.' < digits < letters), strictly after `after_code`, and
        `limit` bounds it."""
        prefix = unique("L")
        suffixes = ["Z", "0", "A", "00", "9", "A0", "B"]
        for suffix in suffixes:
            await agencies.add(agency(f"{prefix}.{suffix}"))
        expected = sorted(f"{prefix}.{suffix}" for suffix in suffixes)
        listed = await agencies.list(
            parent_code=None, open_on=None, after_code=prefix, limit=len(suffixes)
        )
        assert [a.code for a in listed] == expected
        rest = await agencies.list(parent_code=None, open_on=None, after_code=expected[2], limit=3)
        assert [a.code for a in rest] == expected[3:6]
        assert await agencies.list(parent_code=None, open_on=None, after_code=prefix, limit=0) == []

    async def test_a_listing_can_be_limited_to_one_parents_children(
        self, agencies: Agencies
    ) -> None:
        """Only direct children, not the parent itself nor grandchildren."""
        root = await agencies.add(agency(unique("H")))
        child = await agencies.add(agency(f"{root.code}.1", parent_code=root.code))
        await agencies.add(agency(f"{root.code}.1.1", parent_code=child.code))
        other = await agencies.add(agency(f"{root.code}.2", parent_code=root.code))
        listed = await agencies.list(parent_code=root.code, open_on=None, after_code="", limit=10)
        assert [a.code for a in listed] == [child.code, other.code]

    async def test_open_on_leaves_out_only_agencies_closed_before_that_day(
        self, agencies: Agencies
    ) -> None:
        """Closing on the day itself still counts as open; not-yet-valid agencies are listed."""
        root = await agencies.add(agency(unique("O")))
        day = dt.date(2025, 7, 1)
        closed = await agencies.add(
            agency(f"{root.code}.A", parent_code=root.code, valid_to=day - dt.timedelta(days=1))
        )
        closing = await agencies.add(agency(f"{root.code}.B", parent_code=root.code, valid_to=day))
        future = await agencies.add(
            agency(f"{root.code}.C", parent_code=root.code, valid_from=day + dt.timedelta(days=1))
        )
        open_ = await agencies.add(agency(f"{root.code}.D", parent_code=root.code))

        async def codes(open_on: dt.date | None) -> list[str]:
            listed = await agencies.list(
                parent_code=root.code, open_on=open_on, after_code="", limit=10
            )
            return [a.code for a in listed]

        assert await codes(day) == [closing.code, future.code, open_.code]
        assert await codes(None) == [closed.code, closing.code, future.code, open_.code]


class TestFakeAgencies(AgenciesContract):
    @pytest.fixture
    def agencies(self) -> Agencies:
        return FakeAgencies()


@pytest.mark.integration
class TestPostgresAgencies(AgenciesContract):
    @pytest.fixture
    def agencies(self, pool: asyncpg.Pool) -> Agencies:
        return PostgresAgencies(pool)
