"""Directory use cases over FakeAgencies: register, get, batch get and paged listing."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest

from services.common.errors import ConflictError, NotFoundError, ValidationError
from services.directory.domain.codes import CodeForm
from services.directory.domain.model import Agency, AgencyKind
from services.directory.service_layer.handlers import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    DirectoryHandlers,
)
from tests.fakes import FakeAgencies

TODAY = dt.date(2025, 8, 1)
PROVINCE = Agency(
    code="000.00.00.H45",
    name="UBND tỉnh Quảng Ninh",
    kind=AgencyKind.PROVINCE,
    valid_from=dt.date(2019, 3, 12),
)
HEALTH = Agency(
    code="000.00.13.H45",
    name="Sở Y tế tỉnh Quảng Ninh",
    kind=AgencyKind.DEPARTMENT,
    valid_from=dt.date(2019, 3, 12),
    parent_code=PROVINCE.code,
)
OLD_DISTRICT = Agency(
    code="000.01.00.H45",
    name="UBND huyện Vân Đồn",
    kind=AgencyKind.DISTRICT,
    valid_from=dt.date(2019, 3, 12),
    parent_code=PROVINCE.code,
    valid_to=dt.date(2025, 6, 30),
    successor_codes=("000.00.40.H45",),
)


@pytest.fixture
def agencies() -> FakeAgencies:
    return FakeAgencies([PROVINCE])


@pytest.fixture
def handlers(agencies: FakeAgencies) -> DirectoryHandlers:
    return DirectoryHandlers(agencies)


def code_of(n: int) -> str:
    return f"{n // 100:03d}.{n % 100:02d}.01.H99"


async def test_registering_a_new_agency_stores_it_with_a_version(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """The first registration creates the record, normalised, and the store numbers it."""
    registration = await handlers.register(dataclasses.replace(HEALTH, name=f" {HEALTH.name} "))
    assert registration.created
    assert registration.agency == HEALTH
    assert registration.agency.version > 0
    assert agencies.rows[HEALTH.code] == HEALTH


async def test_registering_an_identical_record_again_is_a_no_op(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """The second identical registration reports created=False and keeps the stored version."""
    first = await handlers.register(HEALTH)
    again = await handlers.register(dataclasses.replace(HEALTH, code=f"{HEALTH.code} "))
    assert not again.created
    assert again.agency.version == first.agency.version
    assert len(agencies.rows) == 2


async def test_registering_other_details_under_an_existing_code_is_a_conflict(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """ConflictError (DUPLICATE) names the code, and the stored record is unchanged."""
    await handlers.register(HEALTH)
    with pytest.raises(ConflictError) as failure:
        await handlers.register(dataclasses.replace(HEALTH, name="Sở Y tế (đổi tên)"))
    assert failure.value.reason == "DUPLICATE"
    assert failure.value.meta == {"code": HEALTH.code}
    assert agencies.rows[HEALTH.code].name == HEALTH.name


async def test_an_unknown_parent_is_refused_and_nothing_is_stored(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """A parent must be registered first."""
    orphan = dataclasses.replace(HEALTH, parent_code="000.00.00.H99")
    with pytest.raises(ValidationError) as failure:
        await handlers.register(orphan)
    assert [v.field for v in failure.value.violations] == ["agency.parent_code"]
    assert "000.00.00.H99" in failure.value.violations[0].description
    assert HEALTH.code not in agencies.rows


async def test_an_invalid_agency_is_refused_before_the_store_is_consulted(
    handlers: DirectoryHandlers, agencies: FakeAgencies
) -> None:
    """Validation problems come back all at once and nothing is stored."""
    with pytest.raises(ValidationError) as failure:
        await handlers.register(dataclasses.replace(HEALTH, code="x", name=""))
    assert [v.field for v in failure.value.violations] == ["agency.code", "agency.name"]
    assert list(agencies.rows) == [PROVINCE.code]


async def test_the_deployments_code_forms_apply_to_registration() -> None:
    """A directory configured for QCVN 102 only refuses a QĐ 20 identifier."""
    strict = DirectoryHandlers(FakeAgencies(), frozenset({CodeForm.QCVN102}))
    with pytest.raises(ValidationError):
        await strict.register(dataclasses.replace(PROVINCE, code="G01"))
    lenient = DirectoryHandlers(FakeAgencies())
    assert (await lenient.register(dataclasses.replace(PROVINCE, code="G01"))).created


async def test_getting_an_agency_normalises_the_code(handlers: DirectoryHandlers) -> None:
    """Spaces around a code do not matter."""
    assert (await handlers.get(f"  {PROVINCE.code}\n")).name == PROVINCE.name


async def test_getting_an_unknown_agency_is_not_found(handlers: DirectoryHandlers) -> None:
    """NotFoundError carries the code in its metadata."""
    with pytest.raises(NotFoundError) as failure:
        await handlers.get("000.00.00.H99")
    assert failure.value.meta == {"code": "000.00.00.H99"}


async def test_getting_a_malformed_code_is_a_validation_error(handlers: DirectoryHandlers) -> None:
    """The field is named `code`."""
    with pytest.raises(ValidationError) as failure:
        await handlers.get("not a code")
    assert [v.field for v in failure.value.violations] == ["code"]


async def test_a_batch_get_lists_found_agencies_and_unknown_codes_once_each(
    handlers: DirectoryHandlers,
) -> None:
    """Duplicates collapse, order follows the request, unknown codes are reported not raised."""
    await handlers.register(HEALTH)
    found, unknown = await handlers.get_many(
        [HEALTH.code, "000.00.00.H99", f" {PROVINCE.code}", HEALTH.code, "000.00.00.H99"]
    )
    assert [a.code for a in found] == [HEALTH.code, PROVINCE.code]
    assert unknown == ["000.00.00.H99"]


async def test_a_batch_larger_than_the_limit_is_refused(handlers: DirectoryHandlers) -> None:
    """At most MAX_BATCH codes per call."""
    await handlers.get_many([PROVINCE.code] * MAX_BATCH)
    with pytest.raises(ValidationError):
        await handlers.get_many([PROVINCE.code] * (MAX_BATCH + 1))


async def test_paging_through_250_agencies_sees_each_exactly_once() -> None:
    """Pages of 100 give 100, 100 and 50 agencies in code order, then no token."""
    handlers = DirectoryHandlers(FakeAgencies())
    codes = [code_of(n) for n in range(250)]
    for code in reversed(codes):
        await handlers.register(
            Agency(code, f"Cơ quan {code}", AgencyKind.OTHER, dt.date(2020, 1, 1))
        )
    seen: list[str] = []
    sizes: list[int] = []
    token = ""
    for _ in range(10):
        page = await handlers.list(
            parent_code=None, include_closed=False, page_size=100, page_token=token, today=TODAY
        )
        sizes.append(len(page.agencies))
        seen.extend(a.code for a in page.agencies)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [100, 100, 50]
    assert seen == sorted(codes)


async def test_an_exactly_full_last_page_has_no_token(handlers: DirectoryHandlers) -> None:
    """When the agencies fill the page exactly there is no empty extra page."""
    for n in range(DEFAULT_PAGE_SIZE - 1):
        await handlers.register(
            Agency(code_of(n), f"Cơ quan {n}", AgencyKind.OTHER, dt.date(2020, 1, 1))
        )
    page = await handlers.list(
        parent_code=None, include_closed=False, page_size=0, page_token="", today=TODAY
    )
    assert len(page.agencies) == DEFAULT_PAGE_SIZE
    assert page.next_page_token == ""


async def test_closed_agencies_are_listed_only_on_request(handlers: DirectoryHandlers) -> None:
    """include_closed adds agencies whose valid_to has passed; the parent filter applies."""
    await handlers.register(HEALTH)
    await handlers.register(OLD_DISTRICT)

    async def listed(include_closed: bool, today: dt.date) -> list[str]:
        page = await handlers.list(
            parent_code=PROVINCE.code,
            include_closed=include_closed,
            page_size=10,
            page_token="",
            today=today,
        )
        return [a.code for a in page.agencies]

    assert await listed(False, TODAY) == [HEALTH.code]
    assert await listed(True, TODAY) == [HEALTH.code, OLD_DISTRICT.code]
    assert await listed(False, dt.date(2025, 6, 30)) == [HEALTH.code, OLD_DISTRICT.code]


async def test_a_bad_page_size_and_a_bad_token_are_reported_together(
    handlers: DirectoryHandlers,
) -> None:
    """Both list-request problems come back in one ValidationError."""
    with pytest.raises(ValidationError) as failure:
        await handlers.list(
            parent_code=None,
            include_closed=False,
            page_size=MAX_PAGE_SIZE + 1,
            page_token="not base64!",
            today=TODAY,
        )
    assert [v.field for v in failure.value.violations] == ["page_size", "page_token"]


async def test_a_negative_page_size_is_refused(handlers: DirectoryHandlers) -> None:
    """page_size is between 0 (the default) and MAX_PAGE_SIZE."""
    with pytest.raises(ValidationError) as failure:
        await handlers.list(
            parent_code=None, include_closed=False, page_size=-1, page_token="", today=TODAY
        )
    assert [v.field for v in failure.value.violations] == ["page_size"]


async def test_a_parent_or_token_that_is_no_agency_code_is_refused_before_the_query(
    handlers: DirectoryHandlers,
) -> None:
    """A NUL byte (which Postgres text cannot hold) in either is a clear INVALID_ARGUMENT, not
    a database error."""
    forged = base64.urlsafe_b64encode(b"000.00.00.H45\x00").decode()
    with pytest.raises(ValidationError) as failure:
        await handlers.list(
            parent_code="000.00.00.H45\x00",
            include_closed=False,
            page_size=0,
            page_token=forged,
            today=TODAY,
        )
    assert [v.field for v in failure.value.violations] == ["page_token", "parent_code"]
