"""Waiting on a condition, never on the clock: poll until it holds, bounded by a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    within: float = 15,
    *,
    every: float = 0.05,
) -> T:
    """Polls `probe` every `every` seconds until `done` holds for its answer (TimeoutError
    after `within` seconds)."""
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if done(value):
                return value
            await asyncio.sleep(every)
