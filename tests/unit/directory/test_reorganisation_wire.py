"""Reorganisations and resolutions on the wire: parsing reports every problem, round trips keep
every field."""

from __future__ import annotations

import datetime as dt

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from services.common.errors import ValidationError
from services.directory.domain.reorganisation import (
    AddressState,
    Reorganisation,
    ReorganisationKind,
    Resolution,
)
from services.directory.entrypoints.grpc_api import (
    reorganisation_from_pb,
    reorganisation_to_pb,
    resolution_from_pb,
    resolution_to_pb,
)


def test_a_reorganisation_without_kind_and_with_a_bad_date_lists_both() -> None:
    with pytest.raises(ValidationError) as failure:
        reorganisation_from_pb(dpb.Reorganisation(effective_date="01/07/2025", old_codes=["A"]))
    assert [v.field for v in failure.value.violations] == [
        "reorganisation.kind",
        "reorganisation.effective_date",
    ]


def test_a_reorganisation_round_trips() -> None:
    plan = Reorganisation(
        ReorganisationKind.SPLIT, dt.date(2025, 7, 1), ("000.00.08.H29",), ("A1", "A2"), "ghi chú"
    )
    assert reorganisation_from_pb(reorganisation_to_pb(plan)) == plan


@pytest.mark.parametrize(
    "resolution",
    [
        Resolution("A", AddressState.OPEN, "A", ("A",)),
        Resolution(
            "B",
            AddressState.CLOSED,
            "C",
            ("B", "C"),
            valid_to=dt.date(2025, 6, 30),
            successor_codes=("C",),
        ),
        Resolution("D", AddressState.CLOSED, None, ("D",), dt.date(2025, 6, 30), (), "none"),
        Resolution("E", AddressState.NOT_YET_VALID, None, ("E",), problem="valid only from …"),
        Resolution("F", AddressState.UNKNOWN, None, ("F",), problem="unknown agency"),
    ],
)
def test_a_resolution_round_trips(resolution: Resolution) -> None:
    assert resolution_from_pb(resolution_to_pb(resolution)) == resolution
