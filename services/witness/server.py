"""The witness over HTTP (C2SP tlog-witness): `POST /add-checkpoint`.

Plain HTTP by design of the protocol: requests and answers carry only public, signed data (a
checkpoint note in, a cosignature out), so the answer authenticates itself; a deployment on a
network puts it behind a TLS-terminating proxy or bastion like any other witness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services.witness.domain import Outcome, Witness

log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 64 * 1024  # 63 proof lines and a note with many signatures fit easily
SIZE_CONTENT_TYPE = "text/x.tlog.size"


def witness_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        answer = await witness.add_checkpoint(body)
        if answer.fork:
            log.error("witness_refused_fork", status=int(answer.outcome))
        elif answer.outcome is not Outcome.COSIGNED:
            log.info("witness_refused", status=int(answer.outcome))
        media_type = SIZE_CONTENT_TYPE if answer.outcome is Outcome.CONFLICT else "text/plain"
        return Response(answer.body, status_code=int(answer.outcome), media_type=media_type)

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])


class _Server(uvicorn.Server):
    """No signal handling of its own: the process decides when to stop (via `stop`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_witness(
    witness: Witness,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    server = _Server(
        uvicorn.Config(
            witness_app(witness),
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises why it could not start (e.g. the port is taken)
            raise RuntimeError("the witness could not start its listener")
        await asyncio.sleep(0.02)
    bound = int(server.servers[0].sockets[0].getsockname()[1])
    log.info("witness_started", name=witness.cosigner.name, address=f"http://{host}:{bound}")
    if on_ready is not None:
        on_ready(bound)
    await stop.wait()
    server.should_exit = True
    await task
