"""Reorganisations over FakeAgencies: recording, resolving successor chains, the delta feed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence

import pytest

from services.common.errors import ValidationError
from services.directory.domain.model import Agency, AgencyKind
from services.directory.domain.reorganisation import (
    MAX_CHAIN,
    AddressState,
    Reorganisation,
    ReorganisationKind,
)
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.fakes import FakeAgencies

REFORM = dt.date(2025, 7, 1)
AFTER = dt.date(2025, 8, 1)
BEFORE = dt.date(2025, 6, 1)


def agency(code: str, *, valid_from: dt.date = dt.date(2019, 3, 12), **changes: object) -> Agency:
    plain = Agency(code, f"UBND {code}", AgencyKind.WARD, valid_from)
    return dataclasses.replace(plain, **changes)  # type: ignore[arg-type]


WARD_16 = agency("000.08.08.H29")
XOM_CUI = agency("000.09.08.H29")
PHU_DINH = agency("000.00.71.H29", valid_from=REFORM)
DISTRICT_8 = agency("000.00.08.H29", kind=AgencyKind.DISTRICT)


@pytest.fixture
def agencies() -> FakeAgencies:
    return FakeAgencies([WARD_16, XOM_CUI, PHU_DINH, DISTRICT_8])


@pytest.fixture
def directory(agencies: FakeAgencies) -> DirectoryHandlers:
    return DirectoryHandlers(agencies)


def merge(*old: str, into: str, on: dt.date = REFORM) -> Reorganisation:
    return Reorganisation(ReorganisationKind.MERGE, on, old, (into,), "Nghị quyết 1685/NQ-UBTVQH15")


async def test_a_merge_closes_the_old_codes_the_day_before_with_the_successor(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """Both wards close on 30 June with Phú Định as successor, under new versions, and the
    change is one `directory` ledger event."""
    before = {code: agencies.rows[code].version for code in (WARD_16.code, XOM_CUI.code)}
    recorded = await directory.record_reorganisation(
        merge(WARD_16.code, XOM_CUI.code, into=PHU_DINH.code)
    )
    assert recorded.created
    assert recorded.reorganisation.id == 1
    for code in (WARD_16.code, XOM_CUI.code):
        stored = agencies.rows[code]
        assert stored.valid_to == dt.date(2025, 6, 30)
        assert stored.successor_codes == (PHU_DINH.code,)
        assert stored.version > before[code]
    assert [a.code for a in recorded.agencies] == [WARD_16.code, XOM_CUI.code, PHU_DINH.code]
    assert agencies.ledger[-1] == {
        "event": "reorganised",
        "reorganisation": 1,
        "kind": "merge",
        "effective_date": "2025-07-01",
        "old_codes": [WARD_16.code, XOM_CUI.code],
        "new_codes": [PHU_DINH.code],
        "versions": {
            WARD_16.code: agencies.rows[WARD_16.code].version,
            XOM_CUI.code: agencies.rows[XOM_CUI.code].version,
        },
    }


async def test_recording_the_same_reorganisation_again_changes_nothing(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    first = await directory.record_reorganisation(merge(WARD_16.code, into=PHU_DINH.code))
    version = agencies.rows[WARD_16.code].version
    again = await directory.record_reorganisation(merge(WARD_16.code, into=PHU_DINH.code))
    assert first.created
    assert not again.created
    assert agencies.rows[WARD_16.code].version == version
    assert len(agencies.reorganisations) == 1


async def test_a_conflicting_reorganisation_of_a_closed_code_is_refused(
    directory: DirectoryHandlers,
) -> None:
    """An old code already closed otherwise cannot be closed again (history is not rewritten)."""
    await directory.record_reorganisation(merge(WARD_16.code, into=PHU_DINH.code))
    with pytest.raises(ValidationError) as failure:
        await directory.record_reorganisation(
            Reorganisation(ReorganisationKind.CLOSE, REFORM, (WARD_16.code,))
        )
    assert [v.field for v in failure.value.violations] == ["reorganisation.old_codes[0]"]
    assert "already closed on 2025-06-30" in failure.value.violations[0].description


@pytest.mark.parametrize(
    ("kind", "old", "new", "fields"),
    [
        (ReorganisationKind.MERGE, ("000.08.08.H29",), (), ["reorganisation.new_codes"]),
        (
            ReorganisationKind.CLOSE,
            ("000.08.08.H29",),
            ("000.00.71.H29",),
            ["reorganisation.new_codes"],
        ),
        (
            ReorganisationKind.SPLIT,
            ("000.08.08.H29",),
            ("000.00.71.H29",),
            ["reorganisation.new_codes"],
        ),
        (
            ReorganisationKind.RENAME,
            ("000.08.08.H29", "000.09.08.H29"),
            ("000.00.71.H29",),
            ["reorganisation.old_codes"],
        ),
        (ReorganisationKind.MERGE, (), ("000.00.71.H29",), ["reorganisation.old_codes"]),
        (
            ReorganisationKind.MERGE,
            ("000.08.08.H29", "bad"),
            ("000.08.08.H29",),
            ["reorganisation.old_codes[1]", "reorganisation.new_codes"],
        ),
    ],
)
async def test_each_kind_has_its_shape_and_every_problem_is_reported(
    directory: DirectoryHandlers,
    kind: ReorganisationKind,
    old: tuple[str, ...],
    new: tuple[str, ...],
    fields: list[str],
) -> None:
    with pytest.raises(ValidationError) as failure:
        await directory.record_reorganisation(Reorganisation(kind, REFORM, old, new))
    assert [v.field for v in failure.value.violations] == fields


async def test_unknown_codes_and_a_successor_not_open_on_the_day_are_refused(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """The successor must be registered and open from the effective date."""
    with pytest.raises(ValidationError) as failure:
        await directory.record_reorganisation(
            merge("000.77.08.H29", into=PHU_DINH.code, on=dt.date(2025, 6, 1))
        )
    assert [v.field for v in failure.value.violations] == [
        "reorganisation.old_codes[0]",
        "reorganisation.new_codes[0]",
    ]
    assert not agencies.reorganisations


async def test_a_concurrent_change_is_retried_on_fresh_reads(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """The store refuses a stale version; the handler reads again and succeeds."""
    real = agencies.record_reorganisation
    calls = 0

    async def bump_first(
        reorganisation: Reorganisation, closed: Sequence[Agency]
    ) -> tuple[Reorganisation, list[Agency]]:
        nonlocal calls
        calls += 1
        if calls == 1:  # another writer bumps the version between read and write
            agencies.rows[WARD_16.code] = dataclasses.replace(
                agencies.rows[WARD_16.code], version=1000
            )
        return await real(reorganisation, closed)

    agencies.record_reorganisation = bump_first  # type: ignore[method-assign]
    recorded = await directory.record_reorganisation(merge(WARD_16.code, into=PHU_DINH.code))
    assert recorded.created
    assert calls == 2


async def test_a_closed_code_resolves_along_its_chain_to_the_open_agency(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """A→B→C: the chain is followed on a day after the closures; before them each code is
    itself."""
    agencies.seed(
        agency("000.00.11.H40", valid_to=dt.date(2025, 6, 30), successor_codes=("000.00.12.H37",)),
        agency("000.00.12.H37", valid_to=dt.date(2025, 9, 30), successor_codes=("000.00.13.H37",)),
        agency("000.00.13.H37", valid_from=dt.date(2025, 10, 1)),
    )
    (late,) = await directory.resolve(["000.00.11.H40"], dt.date(2025, 11, 1))
    assert late.state is AddressState.CLOSED
    assert late.effective == "000.00.13.H37"
    assert late.chain == ("000.00.11.H40", "000.00.12.H37", "000.00.13.H37")
    assert late.valid_to == dt.date(2025, 6, 30)
    assert late.redirected
    (between,) = await directory.resolve(["000.00.11.H40"], AFTER)
    assert between.effective == "000.00.12.H37"
    (early,) = await directory.resolve(["000.00.11.H40"], BEFORE)
    assert (early.state, early.effective, early.redirected) == (
        AddressState.OPEN,
        "000.00.11.H40",
        False,
    )
    assert await directory.effective_agency("000.00.11.H40", dt.date(2025, 11, 1)) == (
        "000.00.13.H37"
    )


async def test_codes_that_lead_nowhere_say_why(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """Closed without successor, split, unknown, not yet valid, a cycle, an unknown successor."""
    closed = dt.date(2025, 6, 30)
    agencies.seed(
        agency("000.00.01.H98", valid_to=closed),
        agency(
            "000.00.02.H98", valid_to=closed, successor_codes=("000.00.71.H29", "000.08.08.H29")
        ),
        agency("000.00.03.H98", valid_to=closed, successor_codes=("000.00.04.H98",)),
        agency("000.00.04.H98", valid_to=closed, successor_codes=("000.00.03.H98",)),
        agency("000.00.05.H98", valid_to=closed, successor_codes=("000.00.06.H98",)),
        agency("000.00.07.H98", valid_from=dt.date(2030, 1, 1)),
    )
    found = {
        r.code: r
        for r in await directory.resolve(
            [f"000.00.0{n}.H98" for n in (1, 2, 3, 5, 7)] + ["000.00.09.H98"], AFTER
        )
    }
    assert {code: r.effective for code, r in found.items()} == dict.fromkeys(found)
    assert found["000.00.01.H98"].problem == "000.00.01.H98 closed on 2025-06-30 without successor"
    assert "several successors" in found["000.00.02.H98"].problem
    assert found["000.00.03.H98"].problem == "successor cycle through 000.00.03.H98"
    assert found["000.00.05.H98"].problem == "successor 000.00.06.H98 is not a registered agency"
    assert found["000.00.07.H98"].state is AddressState.NOT_YET_VALID
    assert found["000.00.09.H98"].state is AddressState.UNKNOWN


async def test_a_chain_longer_than_the_bound_is_refused(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    codes = [f"{n:03d}.00.00.H97" for n in range(MAX_CHAIN + 3)]
    agencies.seed(
        *(
            agency(code, valid_to=dt.date(2025, 6, 30), successor_codes=(following,))
            for code, following in itertools.pairwise(codes)
        ),
        agency(codes[-1]),
    )
    (resolution,) = await directory.resolve([codes[0]], AFTER)
    assert resolution.effective is None
    assert resolution.problem == f"successor chain longer than {MAX_CHAIN}"


async def test_the_delta_feed_returns_exactly_the_changes_since_a_version(
    directory: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """Pages by version; a reorganisation shows its closed codes (tombstones with successors)
    once, as they are now; nothing changed means an empty page at the same version."""
    start = await directory.sync(since_version=0, page_size=2)
    assert [a.code for a in start.agencies] == [WARD_16.code, XOM_CUI.code]
    assert start.more
    assert start.latest_version == 4
    rest = await directory.sync(since_version=start.next_since_version, page_size=0)
    assert [a.code for a in rest.agencies] == [PHU_DINH.code, DISTRICT_8.code]
    assert not rest.more
    mark = rest.next_since_version
    await directory.record_reorganisation(merge(WARD_16.code, XOM_CUI.code, into=PHU_DINH.code))
    await directory.record_reorganisation(
        Reorganisation(ReorganisationKind.CLOSE, REFORM, (DISTRICT_8.code,))
    )
    changed = await directory.sync(since_version=mark, page_size=10)
    assert [(a.code, a.valid_to, a.successor_codes) for a in changed.agencies] == [
        (WARD_16.code, dt.date(2025, 6, 30), (PHU_DINH.code,)),
        (XOM_CUI.code, dt.date(2025, 6, 30), (PHU_DINH.code,)),
        (DISTRICT_8.code, dt.date(2025, 6, 30), ()),
    ]
    assert changed.latest_version == changed.next_since_version == mark + 3
    idle = await directory.sync(since_version=changed.next_since_version, page_size=10)
    assert (idle.agencies, idle.next_since_version, idle.more) == ([], mark + 3, False)
    with pytest.raises(ValidationError):
        await directory.sync(since_version=-1, page_size=1001)
