"""The agency record: validation that reports every problem, and open/closed by date."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from docaxis.directory.v1 import directory_service_pb2 as pb

from services.common.errors import FieldViolation, ValidationError
from services.directory.domain.codes import CodeForm
from services.directory.domain.model import (
    MAX_NAME_LENGTH,
    Agency,
    AgencyKind,
    today_in_vietnam,
    validate_agency,
)
from services.directory.entrypoints.grpc_api import agency_to_pb

HEALTH = Agency(
    code="000.00.13.H45",
    name="Sở Y tế tỉnh Quảng Ninh",
    kind=AgencyKind.DEPARTMENT,
    valid_from=dt.date(2019, 3, 12),
    parent_code="000.00.00.H45",
    email="syt@quangninh.gov.vn",
)


def fields(error: ValidationError) -> list[str]:
    return [v.field for v in error.violations]


def test_a_valid_agency_comes_back_normalised() -> None:
    """Codes and name are NFC-normalised and trimmed, the email trimmed; nothing else changes."""
    messy = dataclasses.replace(
        HEALTH,
        code=" 000.00.13.H45 ",
        name=" So\u031b\u0309 Y tế tỉnh Quảng Ninh ",  # NFD "Sở"
        parent_code="000.00.00.H45\t",
        email=" syt@quangninh.gov.vn ",
    )
    assert validate_agency(messy) == HEALTH


def test_every_problem_with_an_agency_is_reported_at_once() -> None:
    """Code, name, parent, successors and dates are all checked before refusing."""
    broken = Agency(
        code="bad code",
        name="   ",
        kind=AgencyKind.WARD,
        valid_from=dt.date(2025, 7, 1),
        parent_code="also bad",
        valid_to=dt.date(2025, 6, 30),
        successor_codes=("000.00.01.H45", "nope"),
    )
    with pytest.raises(ValidationError) as failure:
        validate_agency(broken)
    assert failure.value.reason == "VALIDATION"
    assert fields(failure.value) == [
        "agency.code",
        "agency.name",
        "agency.parent_code",
        "agency.successor_codes[1]",
        "agency.valid_to",
    ]


def test_an_open_agency_with_successors_and_a_self_reference_are_refused() -> None:
    """Only a closed agency has successors, and an agency is neither its own parent nor
    successor."""
    selfish = dataclasses.replace(
        HEALTH, parent_code=HEALTH.code, successor_codes=(HEALTH.code,), valid_to=None
    )
    with pytest.raises(ValidationError) as failure:
        validate_agency(selfish)
    assert failure.value.violations == (
        FieldViolation("agency.parent_code", "an agency cannot be its own parent"),
        FieldViolation("agency.successor_codes[0]", "an agency cannot succeed itself"),
        FieldViolation("agency.successor_codes", "only a closed agency (valid_to) has successors"),
    )


def test_the_name_is_limited_to_200_characters() -> None:
    """200 characters pass, 201 do not."""
    assert validate_agency(dataclasses.replace(HEALTH, name="x" * MAX_NAME_LENGTH))
    with pytest.raises(ValidationError) as failure:
        validate_agency(dataclasses.replace(HEALTH, name="x" * (MAX_NAME_LENGTH + 1)))
    assert fields(failure.value) == ["agency.name"]


def test_the_configured_code_forms_apply_to_every_code_of_the_record() -> None:
    """With QCVN 102 only, a QĐ 20 parent or successor is refused as well as the code."""
    generic = dataclasses.replace(
        HEALTH,
        code="G01.SYT",
        parent_code="G01",
        valid_to=dt.date(2025, 6, 30),
        successor_codes=("G02",),
    )
    assert validate_agency(generic).code == "G01.SYT"
    with pytest.raises(ValidationError) as failure:
        validate_agency(generic, frozenset({CodeForm.QCVN102}))
    assert fields(failure.value) == [
        "agency.code",
        "agency.parent_code",
        "agency.successor_codes[0]",
    ]


def test_an_agency_is_open_through_its_last_day_and_closed_the_day_after() -> None:
    """valid_to is inclusive; valid_from marks the first open day."""
    closing = dataclasses.replace(HEALTH, valid_to=dt.date(2025, 6, 30))
    assert not closing.is_closed_on(dt.date(2025, 6, 30))
    assert closing.is_open_on(dt.date(2025, 6, 30))
    assert closing.is_closed_on(dt.date(2025, 7, 1))
    assert not closing.is_open_on(dt.date(2025, 7, 1))
    assert not closing.is_open_on(dt.date(2019, 3, 11))
    assert not HEALTH.is_closed_on(dt.date(2999, 1, 1))


def test_the_published_status_follows_the_day_it_is_asked_for() -> None:
    """The gRPC view says ACTIVE up to valid_to and CLOSED afterwards."""
    closing = dataclasses.replace(HEALTH, valid_to=dt.date(2025, 6, 30))
    assert agency_to_pb(closing, dt.date(2025, 6, 30)).status == pb.AGENCY_STATUS_ACTIVE
    assert agency_to_pb(closing, dt.date(2025, 7, 1)).status == pb.AGENCY_STATUS_CLOSED
    assert agency_to_pb(closing, dt.date(2025, 7, 1)).valid_to == "2025-06-30"


def test_today_is_the_calendar_day_in_vietnam() -> None:
    """17:00 UTC is already the next day in Hà Nội (UTC+7)."""
    assert today_in_vietnam(dt.datetime(2025, 6, 30, 16, 59, tzinfo=dt.UTC)) == dt.date(2025, 6, 30)
    assert today_in_vietnam(dt.datetime(2025, 6, 30, 17, 0, tzinfo=dt.UTC)) == dt.date(2025, 7, 1)


def test_the_store_version_does_not_make_two_records_different() -> None:
    """A registrant's record equals the stored one whatever version the store assigned."""
    assert HEALTH.same_record(dataclasses.replace(HEALTH, version=42))
    assert not HEALTH.same_record(dataclasses.replace(HEALTH, email="other@quangninh.gov.vn"))
