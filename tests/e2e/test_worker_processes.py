"""`docaxis run` with two worker processes on one address (DOCAXIS_WORKERS=2)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc

from docaxis_client.errors import item_error
from docaxis_client.vietnam import today_in_vietnam
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.domain.reorganisation import Reorganisation, ReorganisationKind
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess
from tests.exposition import sample
from tests.infra import SuiteServices
from tests.integration.test_relay_final_pass import (
    assert_recorded_and_sequenced,
    submitted_and_published,
)
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ROUNDS = 8


async def two_workers(
    database_url: str, services: SuiteServices, log_dir: Path, ledger_key_file: Path, pki: SuitePki
) -> AxisProcess:
    """`docaxis run` with two workers over mutual TLS, started, once both serve (so that the
    kernel can give the tests' first connection to either); stopped if they never do."""
    process = AxisProcess(
        database_url,
        services.amqp_url,
        log_dir,
        ledger_key_file,
        pki=pki,
        extra_env={"DOCAXIS_WORKERS": "2"},
    )
    await process.start()
    try:
        await eventually(lambda: asyncio.sleep(0, process.logs().count("server_started") == 2))
    except BaseException:
        await process.terminate()
        raise
    return process


def own_connection(process: AxisProcess, pki: SuitePki, code: str) -> grpc.aio.Channel:
    """A channel with a TCP connection of its own (gRPC otherwise shares one among channels
    to the same address), so that the kernel picks a worker for it afresh."""
    credentials = pki.tls(pki.agency(code).agency).channel_credentials()
    return grpc.aio.secure_channel(
        process.address, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def test_unary_acknowledgements_free_the_stream_whatever_worker_takes_them(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """A stream with a window of 1 gets its next item only once the previous one is settled.
    Each item is acknowledged through a new connection, which the kernel gives to either
    worker: were acknowledgements taken by the other worker not told to the stream's, the
    stream would stall (with both workers serving, all eight landing on one has odds 1/128)."""
    process = await two_workers(e2e_database_url, services, tmp_path, ledger_key_file, pki)
    try:
        # Both on uvloop's loop, the default (services/common/event_loop.py).
        assert process.logs().count('"event_loop": "uvloop.Loop"') == 2
        sender, recipient = await register(process, 2)
        async with process.client(sender) as s, process.client(recipient) as r:
            sent = [
                (
                    await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
                ).receipt.document_uuid
                for _ in range(ROUNDS)
            ]
            received = []
            async with r.receive_stream(window=1) as stream:
                items = aiter(stream)
                for _ in range(ROUNDS):
                    async with asyncio.timeout(15):
                        item = await anext(items)
                    received.append(item.delivery.document_uuid)
                    async with own_connection(process, pki, recipient) as elsewhere:
                        await pb_grpc.ExchangeServiceStub(elsewhere).Acknowledge(
                            pb.AcknowledgeRequest(delivery_id=item.delivery.delivery_id),
                            timeout=15,
                        )
            assert sorted(received) == sorted(sent)
    finally:
        code = await process.terminate()
    logs = process.logs()
    assert code == 0, logs
    assert logs.count("server_stopped") == 2, logs  # both workers stopped cleanly


async def test_a_copy_pushed_by_either_worker_carries_its_document(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """Documents submitted over one connection (so to one worker, which keeps each document it
    stored), each received on a stream over a connection of its own, which the kernel gives to
    either worker: the other worker reads the document beside its claim's transaction, and
    every push, from either worker, carries the document as submitted, and is acknowledged on
    its stream (all eight streams landing on the Submits' worker has odds 1/256)."""
    process = await two_workers(e2e_database_url, services, tmp_path, ledger_key_file, pki)
    try:
        sender, recipient = await register(process, 2)
        async with process.client(sender) as s:
            for round_ in range(ROUNDS):
                header = make_header(sender, [recipient], subject=f"Vòng {round_}")
                response = await s.submit(f"c-{uuid.uuid4()}", header)
                async with process.client(recipient) as r, r.receive_stream() as stream:
                    async with asyncio.timeout(15):
                        item = await anext(aiter(stream))
                    assert item.delivery.document_uuid == response.receipt.document_uuid
                    pushed = type(header)()
                    pushed.CopyFrom(item.delivery.header)
                    pushed.ClearField("document_id")  # the axis's, added at Submit
                    assert pushed == header
                    assert len(item.delivery.signatures) == 2  # the official's, the agency's
                    stream.acknowledge(item)
                    async with asyncio.timeout(15):
                        confirmed = await stream.confirmed(item.delivery.delivery_id)
                    assert item_error(confirmed.error) is None
    finally:
        code = await process.terminate()
    assert code == 0, process.logs()


async def test_one_scrape_sums_the_counters_of_both_workers(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """Documents submitted over one connection (so to one worker), then scrapes over fresh
    connections the kernel spreads over both: every scrape, whichever worker answers it,
    counts all of them (each worker used to expose only its own series: the other one's
    scrapes showed none; all eight scrapes landing on one worker has odds 1/128)."""
    process = await two_workers(e2e_database_url, services, tmp_path, ledger_key_file, pki)
    try:
        sender, recipient = await register(process, 2)
        async with process.client(sender) as client:
            for _ in range(ROUNDS):
                await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        for _ in range(ROUNDS):
            credentials = pki.monitor.channel_credentials()
            async with grpc.aio.secure_channel(
                process.address, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                response = await mpb_grpc.MetricsServiceStub(channel).GetMetrics(
                    mpb.GetMetricsRequest(), timeout=15
                )
            text = response.exposition
            assert sample(text, "docaxis_metrics_workers_answered") == 2
            assert sample(text, "docaxis_submissions_total", outcome="accepted") == ROUNDS
    finally:
        code = await process.terminate()
    assert code == 0, process.logs()


async def test_a_merge_committed_elsewhere_reroutes_every_workers_next_submit(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """Each worker keeps Submit's directory reads (service_layer/directory_cache.py). Submits
    through fresh connections (either worker) route to a recipient, which is then merged through
    a connection of the test's own: every Submit after it, whichever worker takes it, goes to
    the successor (each worker heard the change, or its transaction saw the generation move)."""
    process = await two_workers(e2e_database_url, services, tmp_path, ledger_key_file, pki)
    pool = await postgres.create_pool(e2e_database_url, min_size=1, max_size=1)
    try:
        sender, ward, commune = await register(process, 3)

        async def routed() -> str:
            # A client of its own: a new connection, which the kernel gives to either worker.
            async with process.client(sender) as client:
                response = await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [ward]))
            (route,) = response.receipt.routes
            return route.effective_recipient

        assert [await routed() for _ in range(ROUNDS)] == [ward] * ROUNDS
        await DirectoryHandlers(PostgresAgencies(pool)).record_reorganisation(
            Reorganisation(ReorganisationKind.MERGE, today_in_vietnam(), (ward,), (commune,))
        )
        assert [await routed() for _ in range(ROUNDS)] == [commune] * ROUNDS
    finally:
        await pool.close()
        code = await process.terminate()
    assert code == 0, process.logs()


async def test_a_clean_stop_of_two_workers_records_every_copy_just_published_queued(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """SIGTERM right after the relay (elected in either worker) published a document's copies
    to three recipients without a stream: the first worker stops, then stops the other; once
    both have exited, every copy is queued at its time of publish, with its `queued` entry in
    the log and nothing left staged or in the outbox, whichever worker relayed or sequenced."""
    process = await two_workers(e2e_database_url, services, tmp_path, ledger_key_file, pki)
    pool = await postgres.create_pool(e2e_database_url, min_size=1, max_size=2)
    try:
        sender, *recipients = await register(process, 4)
        async with process.client(sender) as client:
            document, published = await submitted_and_published(client, pool, sender, recipients)
        assert await process.terminate() == 0, process.logs()
        await assert_recorded_and_sequenced(pool, document, published)
    finally:
        await pool.close()
        if process.process is not None and process.process.poll() is None:
            await process.terminate()
