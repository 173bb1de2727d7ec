"""Serving the gateway: the mutual-TLS REST listener and the plain-HTTP probes listener."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from cryptography import x509
from starlette.types import ASGIApp

from gateway.admin.app import admin_mount
from gateway.admin.ledger_proof import LedgerProofs
from gateway.admin.pages import PAGES
from gateway.admin.session import SessionSigner
from gateway.auth import AgencyAuthenticator, load_trust
from gateway.axis import axis_routes
from gateway.body_limits import BoundedBodies
from gateway.clients import Services
from gateway.config import GatewaySettings
from gateway.ledger_log import ledger_log_routes
from gateway.metrics import GatewayMetrics, probes_app
from gateway.rest.app import Context, build_app
from gateway.rest.openapi import openapi_document
from gateway.tls import AEAD_CIPHERS, tls_protocol

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process (or the test) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True, slots=True)
class Bound:
    port: int
    metrics_port: int


def _server(app: ASGIApp, listen: tuple[str, int], *, graceful_s: int, **tls: Any) -> _Server:
    host, port = listen
    return _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=graceful_s,
            **tls,
        )
    )


def _port(server: uvicorn.Server) -> int:
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no socket")


async def serve(
    settings: GatewaySettings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Bound], None] | None = None,
) -> None:
    trust = load_trust(settings.tls_client_ca_file, settings.crl_files)
    services = Services.connect(
        settings.grpc_target,
        ca_file=settings.tls_client_ca_file,
        cert_file=settings.client_cert_file,
        key_file=settings.client_key_file,
        timeout_s=settings.call_timeout_s,
        server_name=settings.grpc_server_name,
    )
    metrics = GatewayMetrics()
    for name, path in (("server", settings.tls_cert_file), ("client", settings.client_cert_file)):
        leaf = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
        metrics.certificate_expiry.labels(name).set(leaf.not_valid_after_utc.timestamp())
    ctx = Context(services, AgencyAuthenticator(trust), metrics)
    host, _ = settings.listen
    app = build_app(
        ctx,
        openapi_document(),
        [
            *axis_routes(ctx),
            *ledger_log_routes(ctx),
            admin_mount(
                ctx,
                SessionSigner(dt.timedelta(seconds=settings.admin_idle_s)),
                LedgerProofs(ctx, settings.ledger_trust_policy),
                PAGES,
            ),
        ],
    )
    api = _server(
        BoundedBodies(app, metrics, grace_s=settings.body_grace_s, min_rate=settings.body_min_rate),
        settings.listen,
        graceful_s=5,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        ssl_ca_certs=settings.tls_client_ca_file,
        # Request a client certificate; the app answers a missing one with problem+json.
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ciphers=AEAD_CIPHERS,
        http=tls_protocol(settings.header_timeout_s),
    )
    metrics_host, _ = settings.metrics_listen
    probes = _server(
        probes_app(metrics, services.serving, services.metrics_exposition),
        settings.metrics_listen,
        graceful_s=2,
    )
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(api.serve()), group.create_task(probes.serve())]
            while not (api.started and probes.started):
                if any(task.done() for task in tasks):
                    raise RuntimeError("the gateway could not start its listeners")
                await asyncio.sleep(0.02)
            bound = Bound(_port(api), _port(probes))
            log.info(
                "gateway_started",
                rest=f"https://{host}:{bound.port}",
                admin_console=f"https://{host}:{bound.port}/admin/",
                metrics=f"http://{metrics_host}:{bound.metrics_port}",
                services=settings.grpc_target,
                event_loop=_loop_name(),
            )
            if on_ready is not None:
                on_ready(bound)
            await stop.wait()
            api.should_exit = probes.should_exit = True
    finally:
        await services.close()


def _loop_name() -> str:
    loop = type(asyncio.get_running_loop())
    return f"{loop.__module__}.{loop.__qualname__}"
