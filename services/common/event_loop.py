"""The event loop every docaxis process runs on: uvloop's, unless DOCAXIS_EVENT_LOOP=asyncio.

Why: one worker's event loop is the delivery path's ceiling (docs/perf/README.md, "uvloop"):
the largest shares of a worker's profile are the loop itself and its socket transports (the
`send()` of every Postgres statement, the gRPC and AMQP frames), which uvloop implements in C on
libuv. asyncpg, aio-pika and grpc.aio all run on any asyncio loop; `asyncio` is kept as a
setting to compare against and as a way out should a library misbehave on uvloop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import uvloop

from services.common.config import ConfigError

T = TypeVar("T")

EVENT_LOOP_ENV = "DOCAXIS_EVENT_LOOP"
EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_name(env: Mapping[str, str] = os.environ) -> str:
    """The loop DOCAXIS_EVENT_LOOP asks for (default uvloop), or a ConfigError naming them."""
    name = env.get(EVENT_LOOP_ENV, "").strip() or "uvloop"
    if name not in EVENT_LOOPS:
        raise ConfigError(f"{EVENT_LOOP_ENV} must be one of {', '.join(EVENT_LOOPS)}, not {name!r}")
    return name


def run(main: Coroutine[Any, Any, T], env: Mapping[str, str] = os.environ) -> T:
    """`asyncio.run(main)` on the loop the environment asks for."""
    try:
        name = event_loop_name(env)
    except ConfigError:
        main.close()  # never awaited: close it so Python does not warn about it
        raise
    if name == "asyncio":
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
