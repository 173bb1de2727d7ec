"""The demo directory `make run --seed-demo` registers (and any wider one in ../shared) is valid."""

from __future__ import annotations

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from services.directory.agency_csv import DEMO_DIRECTORY_CSV, read_agency_csv, register_all
from services.directory.entrypoints.grpc_api import agency_from_pb
from tests.testdata import CorpusFile, corpus_files

EVERY_DIRECTORY = [pytest.param(f, id=f.id) for f in corpus_files("directory", "*.csv")]


def test_the_demo_directory_ships_inside_the_services_package() -> None:
    """The CLI's default lives in the repository, not beside it."""
    assert DEMO_DIRECTORY_CSV.is_file()
    assert EVERY_DIRECTORY[0].values[0] == CorpusFile("repo", "agencies.csv", DEMO_DIRECTORY_CSV)


@pytest.mark.parametrize("directory", EVERY_DIRECTORY)
def test_every_agency_parses_and_comes_after_its_parent(directory: CorpusFile) -> None:
    """Each row is a valid registration; parents and successors are in the same file."""
    agencies = read_agency_csv(directory.path)
    assert agencies
    seen: set[str] = set()
    codes = {agency.code for agency in agencies}
    for message in agencies:
        agency = agency_from_pb(message)
        assert agency.parent_code is None or agency.parent_code in seen, agency.code
        assert set(agency.successor_codes) <= codes, agency.code
        seen.add(agency.code)


async def test_registering_tells_the_progress_of_every_agency() -> None:
    """`docaxis agencies import` counts its progress by this: once per agency, new or not."""
    agencies = read_agency_csv(DEMO_DIRECTORY_CSV)
    told: list[int] = []

    async def register(agency: dpb.Agency) -> bool:
        return agency.code.endswith("5")

    created, present = await register_all(agencies, register, told.append)
    assert sum(told) == len(agencies) == created + present
