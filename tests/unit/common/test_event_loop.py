"""Which event loop `docaxis` runs on (services/common/event_loop.py)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import Iterator

import pytest
import uvloop

from services.common import event_loop
from services.common.config import ConfigError


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default() -> None:
    assert event_loop.run(_loop_type(), env={}) is uvloop.Loop
    assert event_loop.run(_loop_type(), env={"DOCAXIS_EVENT_LOOP": " "}) is uvloop.Loop


def test_asyncio_when_asked() -> None:
    loop = event_loop.run(_loop_type(), env={"DOCAXIS_EVENT_LOOP": "asyncio"})
    assert not issubclass(loop, uvloop.Loop)
    assert issubclass(loop, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_a_configuration_error_and_the_coroutine_is_closed() -> None:
    main = _loop_type()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would be a warning
        with pytest.raises(ConfigError, match="DOCAXIS_EVENT_LOOP must be one of uvloop, asyncio"):
            event_loop.run(main, env={"DOCAXIS_EVENT_LOOP": "trio"})
    assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED  # closed, never run


async def _collector() -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_collector_runs_less_often_and_leaves_what_startup_made_alone(loop: str) -> None:
    """On either loop: the young generation collected every GC_YOUNG_THRESHOLD allocations,
    not Python's 700, and what existed before the loop started frozen (never walked again)."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    threshold, frozen = event_loop.run(_collector(), env={"DOCAXIS_EVENT_LOOP": loop})
    assert threshold == (event_loop.GC_YOUNG_THRESHOLD, 10, 10)
    assert event_loop.GC_YOUNG_THRESHOLD > 700
    assert frozen > 0
