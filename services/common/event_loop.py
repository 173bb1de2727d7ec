"""The event loop every docaxis process runs on: uvloop's, unless DOCAXIS_EVENT_LOOP=asyncio.

Why: one worker's event loop is the delivery path's ceiling (docs/perf/README.md, "uvloop"):
the largest shares of a worker's profile are the loop itself and its socket transports (the
`send()` of every Postgres statement, the gRPC and AMQP frames), which uvloop implements in C on
libuv. asyncpg, aio-pika and grpc.aio all run on any asyncio loop; `asyncio` is kept as a
setting to compare against and as a way out should a library misbehave on uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import uvloop

from services.common.config import ConfigError

T = TypeVar("T")

EVENT_LOOP_ENV = "DOCAXIS_EVENT_LOOP"
EVENT_LOOPS = ("uvloop", "asyncio")
# Allocations between two collections of the cyclic garbage collector's youngest generation
# (Python's default: 700). A process holding the streams of thousands of agencies keeps millions
# of objects (their channels, calls, futures), and every full collection walks all of them,
# the event loop standing still: with the default, full collections took 0.5-3.6 s each once
# 3,000 streams were open, about 4 s of the push circular to them (docs/perf/README.md, "The
# garbage collector"). Objects that live a little longer than 700 allocations (a claim or an
# acknowledgement waiting for its commit) were promoted and made full collections come sooner.
# Reference counting frees nearly everything; the collector only finds cycles, which may now
# wait this many allocations longer.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Fewer collections, and none of the objects alive at startup (modules, classes, functions:
    never garbage) walked again: they go to the collector's permanent generation."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


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
    tune_gc()
    if name == "asyncio":
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
