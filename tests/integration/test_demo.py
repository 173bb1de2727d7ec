"""`make demo` against a development-mode axis: the document, then statuses and a recall."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from services.demo import ATTACHMENT_BYTES, DEMO_AGENCIES, ONLINE, run_demo
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.integration.test_dev_mode import dev_axis

pytestmark = pytest.mark.integration

__all__ = ["dev_axis"]  # the fixture, imported for this module's tests
DOCAXIS = str(Path(sys.executable).parent / "docaxis")


async def _register_demo_agencies(directory: DirectoryHandlers) -> None:
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


async def test_the_demo_shows_statuses_flowing_back_and_a_recall(
    dev_axis: str, directory: DirectoryHandlers, capsys: pytest.CaptureFixture[str]
) -> None:
    await _register_demo_agencies(directory)
    assert await run_demo(dev_axis, None) == 0
    out, err = capsys.readouterr()
    assert "uploading" not in err  # not a terminal: no progress
    assert "demo passed" in out
    assert "03 accepted" in out
    assert "06 completed" in out
    assert "recall pending" in out
    assert "15 recall_agreed" in out
    assert "16 recall_refused" in out
    assert "withdrawn; statuses 01, 03, 04, 13, 15; recall agreed" in out
    assert "acknowledged; statuses 01, 03, 06; recall none" in out


async def test_the_demo_shows_its_transfers_progress_on_a_terminal_only(
    dev_axis: str, directory: DirectoryHandlers
) -> None:
    """`docaxis demo` with stderr on a terminal (a pty) draws the upload and the downloads of
    the annex; piped, stderr holds none of it, and stdout the same steps either way."""
    await _register_demo_agencies(directory)
    command = [DOCAXIS, "demo", "--address", dev_axis, "--insecure"]
    piped = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(120):
        piped_out, piped_err = await piped.communicate()
    assert piped.returncode == 0, piped_err
    assert b"uploading" not in piped_err
    assert b"downloading" not in piped_err
    controller, terminal = pty.openpty()
    try:
        shown = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=terminal
        )
        os.close(terminal)
        screen = bytearray()
        reading = asyncio.create_task(asyncio.to_thread(_read_all, controller, screen))
        async with asyncio.timeout(120):
            shown_out, _ = await shown.communicate()
            await reading
    finally:
        os.close(controller)
    assert shown.returncode == 0, bytes(screen)
    annex = f"phu-luc-demo.bin: {ATTACHMENT_BYTES >> 20}.0 MiB of {ATTACHMENT_BYTES >> 20}.0 MiB"
    assert f"uploading {annex} (100%)".encode() in screen
    assert f"{ONLINE[0]} downloading {annex} (100%)".encode() in screen
    assert b"demo passed" in shown_out
    assert b"demo passed" in piped_out


def _read_all(fd: int, into: bytearray) -> None:
    """Reads the terminal until its other end closes (every writer exited)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)
