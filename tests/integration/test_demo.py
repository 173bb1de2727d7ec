"""`make demo` against a development-mode axis: the document, then statuses and a recall."""

from __future__ import annotations

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from services.demo import DEMO_AGENCIES, run_demo
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.integration.test_dev_mode import dev_axis

pytestmark = pytest.mark.integration

__all__ = ["dev_axis"]  # the fixture, imported for this module's tests


async def test_the_demo_shows_statuses_flowing_back_and_a_recall(
    dev_axis: str, directory: DirectoryHandlers, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo directory (test_reorganisations.py imports it) already holds them, with
    # their real parents: any open registration serves the demo.
    present, missing = await directory.get_many(list(DEMO_AGENCIES))
    assert all(agency.valid_to is None for agency in present)
    for code in missing:
        name, _key = DEMO_AGENCIES[code]
        await directory.register(
            agency_from_pb(
                dpb.Agency(
                    code=code, name=name, kind=dpb.AGENCY_KIND_DEPARTMENT, valid_from="2019-01-01"
                )
            )
        )
    assert await run_demo(dev_axis, None) == 0
    out = capsys.readouterr().out
    assert "demo passed" in out
    assert "03 accepted" in out
    assert "06 completed" in out
    assert "recall pending" in out
    assert "15 recall_agreed" in out
    assert "16 recall_refused" in out
    assert "withdrawn; statuses 01, 03, 04, 13, 15; recall agreed" in out
    assert "acknowledged; statuses 01, 03, 06; recall none" in out
