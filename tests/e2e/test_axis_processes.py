"""docaxis as real processes: two DMS clients, a crash, a broker outage, a clean stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import httpx
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from grpc_health.v1 import health_pb2

from services.health_cli import NOT_SERVING_EXIT, UNREACHABLE_EXIT
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import DOCAXIS, AxisProcess, free_port, wait_for_health
from tests.infra import SuiteServices
from tests.integration.test_exchange_flow import next_delivery, no_delivery

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_two_dms_clients_exchange_documents_over_real_grpc(axis_process: AxisProcess) -> None:
    """Each side sends to the other through a `docaxis run` process; both receive, download,
    acknowledge; each sender tracks its copy as acknowledged; SIGTERM then exits cleanly."""
    a_code, b_code = await register(axis_process, 2)
    async with (
        axis_process.client(a_code) as a,
        axis_process.client(b_code) as b,
    ):
        inbox_a, inbox_b = a.receive(), b.receive()
        upload = await a.upload_stream(b"%PDF-1.7 from A")
        to_b = await a.submit(
            f"c-{uuid.uuid4()}",
            make_header(a_code, [b_code]),
            [upload.ref("a.pdf", "application/pdf")],
        )
        to_a = await b.submit(f"c-{uuid.uuid4()}", make_header(b_code, [a_code]))
        got_b = await next_delivery(inbox_b)
        got_a = await next_delivery(inbox_a)
        assert got_b.document_uuid == to_b.receipt.document_uuid
        assert got_a.document_uuid == to_a.receipt.document_uuid
        assert got_b.attachments[0].sha256 == upload.sha256
        await b.acknowledge(got_b.delivery_id)
        await a.acknowledge(got_a.delivery_id)
        for client, receipt in ((a, to_b.receipt), (b, to_a.receipt)):
            track = await client.track(receipt.document_uuid)
            assert [r.state for r in track.recipients] == [pb.DELIVERY_STATE_ACKNOWLEDGED]
        inbox_a.cancel()
        inbox_b.cancel()


async def test_kill_9_between_submit_and_delivery_loses_and_duplicates_nothing(
    axis_process: AxisProcess,
) -> None:
    """Documents accepted just before a kill -9 all reach the recipient after a restart, each
    exactly once; an acknowledged document never comes back."""
    sender, recipient = await register(axis_process, 2)
    async with axis_process.client(sender) as client:
        submitted = [
            (await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))).receipt
            for _ in range(20)
        ]
    axis_process.kill()
    await axis_process.start()
    async with axis_process.client(recipient) as dms:
        stream = dms.receive()
        received = []
        for _ in submitted:
            delivery = await next_delivery(stream)
            received.append(delivery.document_uuid)
            await dms.acknowledge(delivery.delivery_id)
        await no_delivery(stream, within=1.5)
        stream.cancel()
        assert sorted(received) == sorted(r.document_uuid for r in submitted)
        again = dms.receive()
        await no_delivery(again, within=1.0)
        again.cancel()


async def test_kill_9_with_pushed_unacknowledged_mail_redelivers_it_once(
    axis_process: AxisProcess,
) -> None:
    """A delivery pushed but not acknowledged when the server dies is pushed again after the
    restart, and once acknowledged is never pushed again."""
    sender, recipient = await register(axis_process, 2)
    async with axis_process.client(sender) as client:
        receipt = (
            await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        ).receipt
    async with axis_process.client(recipient) as dms:
        first = dms.receive()
        pushed = await next_delivery(first)
        assert pushed.document_uuid == receipt.document_uuid
        axis_process.kill()
        first.cancel()
    await axis_process.start()
    async with axis_process.client(recipient) as dms:
        second = dms.receive()
        again = await next_delivery(second)
        assert again.delivery_id == pushed.delivery_id
        await dms.acknowledge(again.delivery_id)
        await no_delivery(second, within=1.0)
        second.cancel()


def docaxis_health(process: AxisProcess, address: str | None = None, *options: str) -> int:
    """`docaxis health` against the process, as the monitoring role: its exit status."""
    assert process.pki is not None
    env = {**os.environ, **process.pki.client_env(process.pki.monitor_certificate, "monitor")}
    address = address or process.address
    done = subprocess.run(
        [str(DOCAXIS), "health", "--address", address, "--timeout", "2", *options],
        env=env,
        capture_output=True,
        check=False,
    )
    return done.returncode


async def test_health_follows_rabbitmq_and_postgres_and_mail_flows_after_their_restart(
    axis_process: AxisProcess, services: SuiteServices
) -> None:
    """NOT_SERVING (and /readyz 503, /livez still 200, `docaxis health` exit 1) while RabbitMQ
    or Postgres is down, SERVING (/readyz 200, exit 0) when each is back, and a document
    submitted afterwards is still pushed (connections recover by themselves)."""
    await axis_process.wait_for_readyz(200, 30)
    assert await asyncio.to_thread(docaxis_health, axis_process) == 0
    # A probe inside a pod dials 127.0.0.1 and checks the certificate for the service's name.
    for name, exit_status in (("localhost", 0), ("docaxis.elsewhere.example", UNREACHABLE_EXIT)):
        checked = await asyncio.to_thread(docaxis_health, axis_process, None, "--server-name", name)
        assert checked == exit_status, name
    for service in (services.rabbit, services.postgres):
        try:
            await asyncio.to_thread(service, "stop")
            await wait_for_health(axis_process.address, NOT_SERVING, 30, tls=axis_process.tls)
            await axis_process.wait_for_readyz(503, 30)
            async with httpx.AsyncClient(base_url=axis_process.probes_url) as probes:
                assert (await probes.get("/livez")).status_code == 200
            assert await asyncio.to_thread(docaxis_health, axis_process) == NOT_SERVING_EXIT
        finally:
            await asyncio.to_thread(service, "start")
        await wait_for_health(axis_process.address, SERVING, 60, tls=axis_process.tls)
        await axis_process.wait_for_readyz(200, 30)
    assert await asyncio.to_thread(docaxis_health, axis_process) == 0
    nobody = f"127.0.0.1:{free_port()}"
    assert await asyncio.to_thread(docaxis_health, axis_process, nobody) == UNREACHABLE_EXIT

    sender, recipient = await register(axis_process, 2)
    async with (
        axis_process.client(sender) as a,
        axis_process.client(recipient) as b,
    ):
        stream = b.receive()
        receipt = (await a.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))).receipt
        delivery = await next_delivery(stream, within=30)
        assert delivery.document_uuid == receipt.document_uuid
        await b.acknowledge(delivery.delivery_id)
        stream.cancel()
