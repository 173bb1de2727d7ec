"""`python -m gateway`: the REST/edXML gateway (settings from DOCAXIS_GATEWAY_*)."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from gateway.config import GatewayConfigError, GatewaySettings
from gateway.server import serve


async def _run(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


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
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
