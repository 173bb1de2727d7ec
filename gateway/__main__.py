"""`python -m gateway`: the REST/edXML gateway (settings from DOCAXIS_GATEWAY_*)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

import structlog
import uvloop

from gateway.config import GatewayConfigError, GatewaySettings
from gateway.server import serve


async def _run(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def _loop_factory(env: os._Environ[str] = os.environ) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop, as every docaxis process runs (services/common/event_loop.py, which the
    gateway may not import: it talks to the services over gRPC only), with the same way out:
    DOCAXIS_EVENT_LOOP=asyncio. Why: the gateway's TLS, HTTP and gRPC client I/O all go through
    the loop's transports, which uvloop implements in C (docs/perf/README.md, "uvloop")."""
    if env.get("DOCAXIS_EVENT_LOOP", "").strip() == "asyncio":
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main() -> int:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ]
    )
    try:
        settings = GatewaySettings.from_env()
    except GatewayConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
