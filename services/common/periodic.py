"""Housekeeping jobs that run every so often in the background of a service process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import structlog

from services.common.errors import UnavailableError

log = structlog.get_logger(__name__)


async def every(
    interval_s: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]], name: str
) -> None:
    """Runs `job` at once and then every `interval_s` until `stop`. A failed run is logged and
    tried again next time: housekeeping must never stop the process (and delivery with it)."""
    while not stop.is_set():
        try:
            await job()
        except UnavailableError as exc:
            log.warning("housekeeping_postponed", job=name, error=str(exc))
        except Exception:
            log.exception("housekeeping_failed", job=name)
        await pause(stop, interval_s)


async def pause(
    stop: asyncio.Event,
    seconds: float,
    wake: asyncio.Event | Iterable[asyncio.Event] | None = None,
) -> None:
    """Waits `seconds`, or less when `stop` (or `wake`, a NOTIFY having arrived, or any of
    several) is set meanwhile."""
    woken = [] if wake is None else [wake] if isinstance(wake, asyncio.Event) else list(wake)
    events = [stop, *woken]
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
