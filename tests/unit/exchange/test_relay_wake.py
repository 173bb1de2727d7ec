"""The outbox relay's loop: a commit notified while a batch runs starts the next batch at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from services.exchange.entrypoints.relay import OutboxRelay


class _Subscription:
    def __init__(self) -> None:
        self.lost = asyncio.Event()

    async def close(self) -> None:
        pass


class _Commits:
    """Notifications the test sends by hand, as Postgres would at each commit."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []

    async def subscribe(self, on_payload: Callable[[str], None]) -> _Subscription:
        self.listeners.append(on_payload)
        return _Subscription()

    def notify(self) -> None:
        for listener in self.listeners:
            listener("")


@asynccontextmanager
async def relaying(
    commits: _Commits, relay_batch: Callable[[int], Awaitable[int]]
) -> AsyncIterator[None]:
    """The relay's loop running, with a poll an hour away: within a test only a NOTIFY can
    start a batch after the first."""
    stop = asyncio.Event()
    running = asyncio.create_task(OutboxRelay(commits, relay_batch, poll_interval_s=3600).run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def test_a_commit_notified_during_a_batch_is_relayed_without_waiting_for_the_poll() -> None:
    commits = _Commits()
    batches: list[int] = []
    second = asyncio.Event()

    async def relay_batch(_limit: int) -> int:
        batches.append(len(batches))
        if len(batches) == 1:
            # Rows committed after this batch's SELECT: their NOTIFY arrives mid-batch.
            commits.notify()
            return 1
        second.set()
        return 0

    async with relaying(commits, relay_batch), asyncio.timeout(10):
        await second.wait()
    assert len(batches) >= 2


async def test_an_idle_relay_waits_for_a_notification() -> None:
    commits = _Commits()
    calls = 0
    first, woken = asyncio.Event(), asyncio.Event()

    async def relay_batch(_limit: int) -> int:
        nonlocal calls
        calls += 1
        (first if calls == 1 else woken).set()
        return 0

    async with relaying(commits, relay_batch), asyncio.timeout(10):
        # The first batch ran (at start) and found nothing: the relay sleeps until notified,
        # however often the loop turns meanwhile.
        await first.wait()
        for _ in range(100):
            await asyncio.sleep(0)
        assert calls == 1
        commits.notify()
        await woken.wait()
