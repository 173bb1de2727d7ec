"""The gateway served in this process in front of the suite's axis, over mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import structlog

from gateway.config import GatewaySettings
from gateway.server import Bound, serve
from tests.pki import KeyPair, SuitePki


@dataclass(frozen=True, slots=True)
class RunningGateway:
    url: str
    metrics_url: str
    pki: SuitePki
    axis: str  # the services' gRPC address

    @property
    def port(self) -> int:
        return int(self.url.rpartition(":")[2])

    def ssl_context(self, pair: KeyPair | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.bundle))
        if pair is not None:
            context.load_cert_chain(str(pair.certificate), str(pair.key))
        return context

    def client(self, pair: KeyPair | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.ssl_context(pair), timeout=30)

    def agency_pair(self, code: str) -> KeyPair:
        return self.pki.write_pair(f"gw-{code}", self.pki.agency(code).agency)


@contextlib.asynccontextmanager
async def gateway_served(
    axis: str, pki: SuitePki, **settings: float
) -> AsyncIterator[RunningGateway]:
    """A gateway in front of `axis` (the suite's PKI, `settings` over the defaults) until the
    block ends."""
    stop = asyncio.Event()
    ready: asyncio.Future[Bound] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            GatewaySettings(
                address="127.0.0.1:0",
                metrics_address="127.0.0.1:0",
                grpc_target=axis,
                tls_cert_file=str(pki.server.certificate),
                tls_key_file=str(pki.server.key),
                tls_client_ca_file=str(pki.bundle),
                client_cert_file=str(pki.gateway_pair.certificate),
                client_key_file=str(pki.gateway_pair.key),
                call_timeout_s=30,
                **settings,  # type: ignore[arg-type]
            ),
            stop,
            on_ready=ready.set_result,
        )
    )
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


@pytest.fixture(scope="session")
async def gateway(axis: str, pki: SuitePki) -> AsyncIterator[RunningGateway]:
    async with gateway_served(axis, pki) as running:
        yield running


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Everything logged during the test, standard logging (uvicorn's "Exception in ASGI
    application" among it) and structlog alike, carries no traceback."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield
    tracebacks = [
        record.getMessage()
        for record in caplog.records
        if record.exc_info or "Traceback" in record.getMessage()
    ]
    assert not tracebacks
    assert not [event for event in events if "exc_info" in event or "exception" in event]


AgencyHttp = Callable[[str], httpx.AsyncClient]
