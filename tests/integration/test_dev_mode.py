"""Plaintext is for development only: refused without the explicit flag, working with it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.client import AgencyClient
from services.bootstrap.plan import Component
from services.bootstrap.serve import serve
from services.common.config import ConfigError
from services.common.grpc_errors import error_details
from services.settings import Settings
from tests.conftest import Register, make_header, settings_for
from tests.infra import SuiteServices
from tests.integration.test_exchange_flow import next_delivery
from tests.pki import SuitePki

pytestmark = pytest.mark.integration

BASE = {
    "DOCAXIS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
    "DOCAXIS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
}


def test_without_tls_the_services_refuse_to_start_unless_in_development_mode(
    pki: SuitePki,
) -> None:
    with pytest.raises(ConfigError, match="mutual TLS is required"):
        Settings.from_env(BASE)
    with pytest.raises(ConfigError, match="DOCAXIS_TLS_CLIENT_CA_FILE"):
        Settings.from_env(
            {**BASE, "DOCAXIS_TLS_CERT_FILE": "server.pem", "DOCAXIS_TLS_KEY_FILE": "server.key"}
        )
    without_hub = {k: v for k, v in pki.server_env().items() if not k.startswith("DOCAXIS_HUB_")}
    with pytest.raises(ConfigError, match="hub"):
        Settings.from_env({**BASE, **without_hub})
    assert Settings.from_env({**BASE, **pki.server_env()}).signatures_required
    development = Settings.from_env({**BASE, "DOCAXIS_DEV_INSECURE": "true"})
    assert not development.tls
    assert not development.signatures_required


async def test_a_plaintext_client_cannot_talk_to_the_tls_axis(axis: str) -> None:
    async with grpc.aio.insecure_channel(axis) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await pb_grpc.ExchangeServiceStub(channel).Track(
                pb.TrackRequest(document_uuid=str(uuid.uuid4())),
                metadata=(("x-docaxis-agency", "000.00.00.H45"),),
                timeout=10,
            )
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.fixture
async def dev_axis(
    database_url: str, services: SuiteServices, ledger_key_file: Path
) -> AsyncIterator[str]:
    """The directory and exchange in development mode: plaintext, header identities."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            settings_for(database_url, services.amqp_url, ledger_key_file),
            stop,
            {Component.DIRECTORY, Component.EXCHANGE},
            on_ready=ready.set_result,
        )
    )
    waiters: list[asyncio.Future[object]] = [ready, task]  # type: ignore[list-item]
    async with asyncio.timeout(30):
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    yield f"127.0.0.1:{ready.result()}"
    stop.set()
    async with asyncio.timeout(30):
        await task


async def test_development_mode_still_exchanges_unsigned_documents(
    dev_axis: str, register_agencies: Register
) -> None:
    """Header identities, no signatures, no transport receipts (no hub identity)."""
    sender, recipient = await register_agencies(2)
    async with AgencyClient(dev_axis, sender) as a, AgencyClient(dev_axis, recipient) as b:
        inbox = b.receive()
        receipt = (await a.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))).receipt
        delivery = await next_delivery(inbox)
        assert delivery.document_uuid == receipt.document_uuid
        assert list(delivery.signatures) == []
        await b.acknowledge(delivery.delivery_id)
        inbox.cancel()
        track = await a.track(receipt.document_uuid)
        assert [r.state for r in track.recipients] == [pb.DELIVERY_STATE_ACKNOWLEDGED]
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await a.transport_receipt(delivery.delivery_id)
        assert error_details(failure.value).code is grpc.StatusCode.NOT_FOUND
