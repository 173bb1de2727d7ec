"""Plain-HTTP `/livez` and `/readyz` for orchestrators (Kubernetes, compose, systemd watchdogs).

The gRPC health service needs a client certificate like every gRPC endpoint, and an
orchestrator's built-in gRPC probe cannot present one; these two answer anyone, say nothing
but up/ready, and are meant for a listener the orchestrator alone reaches
(DOCAXIS_PROBE_ADDRESS).

- `/livez`: the process is up and its event loop answers (a blocked loop cannot answer within
  the probe's timeout, which is what makes the orchestrator restart it).
- `/readyz`: what gRPC health says (Postgres answers, RabbitMQ is connected when this process
  uses it) and the process is not draining; 503 otherwise, with which dependency is missing.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(slots=True)
class Readiness:
    """What the health watcher last saw; `/readyz` reads it, never the network."""

    database: bool = False
    broker: bool = False
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.database and self.broker and not self.draining

    def missing(self) -> list[str]:
        """The reasons it is not ready, for the operator reading the 503."""
        missing = [
            name for name, ok in (("database", self.database), ("broker", self.broker)) if not ok
        ]
        return [*missing, "draining"] if self.draining else missing


def probes_app(readiness: Readiness) -> Starlette:
    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if readiness.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "missing": readiness.missing()}, 503)

    return Starlette(routes=[Route("/livez", livez), Route("/readyz", readyz)])


class ProbeServer(uvicorn.Server):
    """uvicorn without its own signal handling: `docaxis run` decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def probe_socket(address: str, *, share_port: bool) -> socket.socket:
    """The listening socket; shared (SO_REUSEPORT) by the worker processes of one address, as
    their gRPC port is, so that each worker's probes answer on the same port."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port)))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def probe_server(readiness: Readiness) -> ProbeServer:
    return ProbeServer(
        uvicorn.Config(
            probes_app(readiness),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
    )
