"""The gateway served in this process in front of the suite's axis, over mutual TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from gateway.config import GatewaySettings
from gateway.server import Bound, serve
from tests.pki import KeyPair, SuitePki


@dataclass(frozen=True, slots=True)
class RunningGateway:
    url: str
    metrics_url: str
    pki: SuitePki
    axis: str  # the services' gRPC address

    def ssl_context(self, pair: KeyPair | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.bundle))
        if pair is not None:
            context.load_cert_chain(str(pair.certificate), str(pair.key))
        return context

    def client(self, pair: KeyPair | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.ssl_context(pair), timeout=30)

    def agency_pair(self, code: str) -> KeyPair:
        return self.pki.write_pair(f"gw-{code}", self.pki.agency(code).agency)


@pytest.fixture(scope="session")
async def gateway(axis: str, pki: SuitePki) -> AsyncIterator[RunningGateway]:
    settings = GatewaySettings(
        address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        grpc_target=axis,
        tls_cert_file=str(pki.server.certificate),
        tls_key_file=str(pki.server.key),
        tls_client_ca_file=str(pki.bundle),
        client_cert_file=str(pki.gateway_pair.certificate),
        client_key_file=str(pki.gateway_pair.key),
        call_timeout_s=30,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Bound] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop, on_ready=ready.set_result))
    waiters: list[asyncio.Future[object]] = [ready, task]  # type: ignore[list-item]
    async with asyncio.timeout(30):
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    bound = ready.result()
    yield RunningGateway(
        f"https://127.0.0.1:{bound.port}", f"http://127.0.0.1:{bound.metrics_port}", pki, axis
    )
    stop.set()
    async with asyncio.timeout(30):
        await task


AgencyHttp = Callable[[str], httpx.AsyncClient]
