"""Fixtures for the edXML tests: the sample packages kept beside the repository."""

from __future__ import annotations

import pytest

from tests.unit.edxml.builders import SAMPLES


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """Every sample package in ../shared/testdata/edxml, by file name."""
    if not SAMPLES.is_dir():
        pytest.skip(f"no sample folder at {SAMPLES}")
    found = {path.name: path.read_bytes() for path in sorted(SAMPLES.glob("*.edxml"))}
    assert found, f"no .edxml file in {SAMPLES}"
    return found
