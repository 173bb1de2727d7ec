"""Federation in the directory: which hub serves a code, and pulling a peer's delta feed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.common.errors import ValidationError
from services.directory.domain.hubs import hub_for, level1_of, patterns_of, validate_route
from services.directory.domain.model import Agency, AgencyKind
from services.directory.service_layer.handlers import DirectoryHandlers, PeerPage
from tests.fakes import FakeAgencies, FakeHubRoutes

DAY = dt.date(2025, 8, 1)
COMMUNE_A = Agency("000.01.00.H45", "Xã A", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
DEPARTMENT_B = Agency("000.00.13.H46", "Sở Y tế B", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))
WARD_B_OLD = Agency(
    "000.02.00.H46",
    "Phường cũ B",
    AgencyKind.WARD,
    dt.date(2019, 1, 1),
    valid_to=dt.date(2025, 6, 30),
    successor_codes=("000.03.00.H46",),
)
WARD_B_NEW = Agency("000.03.00.H46", "Phường mới B", AgencyKind.WARD, dt.date(2025, 7, 1))


def test_a_qcvn102_code_is_routed_by_itself_its_level1_part_its_group_then_the_default() -> None:
    assert level1_of("000.00.13.H46") == "H46"
    assert level1_of("H37.DN.001") is None
    assert patterns_of("000.00.13.H46") == ["000.00.13.H46", "H46", "H", "*"]
    assert patterns_of("H37.DN.001") == ["H37.DN.001", "*"]


def test_an_override_beats_a_pulled_record_which_beats_the_shape_rules() -> None:
    routes = {"H46": "province-b", "*": "national"}
    pulled = dataclasses.replace(DEPARTMENT_B, served_by="national")
    assert hub_for(DEPARTMENT_B.code, None, routes) == "province-b"
    assert hub_for("000.00.00.G22", None, routes) == "national"
    assert hub_for(DEPARTMENT_B.code, pulled, routes) == "national"
    assert hub_for(DEPARTMENT_B.code, pulled, {**routes, DEPARTMENT_B.code: "x"}) == "x"
    # An agency served here stays here whatever the shape rules say.
    assert hub_for(DEPARTMENT_B.code, DEPARTMENT_B, routes) is None


def test_a_route_must_name_a_code_pattern_and_a_hub_code() -> None:
    assert validate_route(" H46 ", "province-b") == ("H46", "province-b")
    with pytest.raises(ValidationError) as refused:
        validate_route("h46!", "Province B")
    assert {v.field for v in refused.value.violations} == {"route.pattern", "route.hub_code"}


@pytest.fixture
def agencies() -> FakeAgencies:
    return FakeAgencies([COMMUNE_A])


@pytest.fixture
def hubs(agencies: FakeAgencies) -> FakeHubRoutes:
    return FakeHubRoutes(agencies)


@pytest.fixture
def handlers(agencies: FakeAgencies, hubs: FakeHubRoutes) -> DirectoryHandlers:
    return DirectoryHandlers(agencies, hubs=hubs, own_hub="province-a")


async def test_an_unknown_code_routes_to_its_hub_instead_of_nowhere(
    handlers: DirectoryHandlers,
) -> None:
    await handlers.set_route("*", "national", "admin")
    local, remote = await handlers.resolve([COMMUNE_A.code, DEPARTMENT_B.code], DAY)
    assert (local.effective, local.hub) == (COMMUNE_A.code, None)
    assert (remote.effective, remote.hub, remote.problem) == (DEPARTMENT_B.code, "national", "")


async def test_without_a_route_an_unknown_code_stays_unroutable(
    handlers: DirectoryHandlers,
) -> None:
    (remote,) = await handlers.resolve([DEPARTMENT_B.code], DAY)
    assert remote.effective is None
    assert remote.hub is None


async def test_a_route_to_this_hub_itself_means_served_here(handlers: DirectoryHandlers) -> None:
    await handlers.set_route(COMMUNE_A.code, "province-a", "admin")
    (local,) = await handlers.resolve([COMMUNE_A.code], DAY)
    assert local.hub is None


def feed(*pages: PeerPage) -> tuple[list[int], object]:
    asked: list[int] = []

    async def fetch(since: int) -> PeerPage:
        asked.append(since)
        return pages[len(asked) - 1]

    return asked, fetch


async def test_pulling_a_peer_feed_resolves_its_codes_and_its_merged_codes(
    handlers: DirectoryHandlers, agencies: FakeAgencies, hubs: FakeHubRoutes
) -> None:
    """B's department and a ward B merged reach A through the hub A pulled them from; what the
    peer says A serves (split horizon) and A's own agencies are not taken back."""
    foreign_a = dataclasses.replace(COMMUNE_A, name="Xã A theo B")
    asked, fetch = feed(
        ([(DEPARTMENT_B, None), (WARD_B_NEW, "province-b")], 7, True),
        ([(WARD_B_OLD, "province-b"), (foreign_a, "province-a"), (foreign_a, None)], 9, False),
    )
    changed = await handlers.pull_peer("national", fetch)  # type: ignore[arg-type]
    assert changed == 3
    assert asked == [0, 7]
    assert hubs.since["national"] == 9
    assert agencies.rows[COMMUNE_A.code] == COMMUNE_A
    assert agencies.rows[COMMUNE_A.code].served_by is None
    department, merged = await handlers.resolve([DEPARTMENT_B.code, WARD_B_OLD.code], DAY)
    assert (department.effective, department.hub) == (DEPARTMENT_B.code, "national")
    assert merged.chain == (WARD_B_OLD.code, WARD_B_NEW.code)
    assert (merged.effective, merged.hub) == (WARD_B_NEW.code, "national")
    # Pulled again from where it stopped; an unchanged record is not a change.
    asked_again, fetch_again = feed(([(DEPARTMENT_B, None)], 9, False))
    assert await handlers.pull_peer("national", fetch_again) == 0  # type: ignore[arg-type]
    assert asked_again == [9]


async def test_a_closed_code_whose_successor_is_unknown_routes_by_the_successor(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """A code of A merged into a ward another hub serves, which A never pulled: the mail follows
    the successor to the hub its shape routes to."""
    agencies.seed(dataclasses.replace(WARD_B_OLD, code="000.04.00.H45"))
    await handlers.set_route("H46", "province-b", "admin")
    (merged,) = await handlers.resolve(["000.04.00.H45"], DAY)
    assert (merged.effective, merged.hub) == (WARD_B_NEW.code, "province-b")


async def test_a_route_change_is_a_ledger_fact(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    assert await handlers.set_route("G", "national", "admin") == ("G", "national")
    assert await handlers.set_route("G", "", "admin") == ("G", "")
    assert await handlers.routes() == {}
    assert [e["event"] for e in agencies.ledger[-2:]] == ["hub_route", "hub_route"]
