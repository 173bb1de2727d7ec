"""Statuses and reports through a real `docaxis run` process, across a kill -9."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import uuid

import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from tests.conftest import VIETNAM, make_header
from tests.e2e.conftest import register
from tests.e2e.processes import DOCAXIS, AxisProcess
from tests.integration.test_lifecycle_flow import next_item, nothing_more

pytestmark = pytest.mark.e2e


async def test_statuses_committed_before_a_kill_9_reach_the_sender_once_after_restart(
    axis_process: AxisProcess,
) -> None:
    """01, 03 and 05 committed just before the process dies are pushed to the sender after the
    restart, each once; the monthly report run by the CLI counts the copy."""
    sender, recipient = await register(axis_process, 2)
    async with axis_process.client(sender) as s, axis_process.client(recipient) as r:
        stream = r.receive()
        receipt = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))).receipt
        delivery = (await next_item(stream)).delivery
        await r.acknowledge(delivery.delivery_id)
        stream.cancel()
        for code in (pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_PROCESSING):
            await r.report_status(delivery.delivery_id, code, status_id=f"s-{code}")
    axis_process.kill()
    await axis_process.start()
    async with axis_process.client(sender) as s:
        inbox = s.receive()
        codes = []
        for _ in range(3):
            item = await next_item(inbox)
            assert item.WhichOneof("item") == "status", item
            codes.append(item.status.status.code)
            await s.acknowledge_notice(item.status.notice_id)
        await nothing_more(inbox, within=1.5)
        inbox.cancel()
        assert sorted(codes) == [
            pb.STATUS_CODE_ARRIVED,
            pb.STATUS_CODE_ACCEPTED,
            pb.STATUS_CODE_PROCESSING,
        ]
        track = await s.track(receipt.document_uuid)
        assert [x.code for x in track.recipients[0].statuses] == sorted(codes)

    assert axis_process.pki is not None
    admin = axis_process.pki.client_env(axis_process.pki.admin_certificate, "cli-admin")
    month = receipt.accepted_at.ToDatetime(dt.UTC).astimezone(VIETNAM).strftime("%Y-%m")
    command = [str(DOCAXIS), "report", "stats", "--month", month, "--address"]
    command += [axis_process.address, "--agency", recipient, "--agency", sender]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        env={**os.environ, **admin},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    # sent, received, rejected, recalled, completed
    assert rows[recipient][:5] == ["0", "1", "0", "0", "0"]
    assert rows[sender][:5] == ["1", "0", "0", "0", "0"]
