"""Fixtures for the edXML tests: the sample packages of the repository's corpus."""

from __future__ import annotations

import pytest

from tests.testdata import IN_REPO


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """Every sample package in tests/data/edxml, by file name."""
    found = {path.name: path.read_bytes() for path in sorted(IN_REPO["edxml"].glob("*.edxml"))}
    assert found, f"no .edxml file in {IN_REPO['edxml']}"
    return found
