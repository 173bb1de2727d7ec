"""GroupCommit: callers answered once their group is flushed; with `concurrency` flushes at once,
an item that arrives while fewer run is flushed at once rather than after a flush not its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.errors import DomainError
from services.common.group_commit import GroupCommit


class Blocking:
    """A flush that records each group and holds it until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.started = asyncio.Event()
        self.release: dict[int, asyncio.Event] = {}

    async def __call__(self, items: Sequence[int]) -> Sequence[int | DomainError]:
        self.groups.append(list(items))
        gate = self.release.setdefault(items[0], asyncio.Event())
        self.started.set()
        await gate.wait()
        return [item * 10 for item in items]

    def let_go(self, first: int) -> None:
        self.release.setdefault(first, asyncio.Event()).set()

    async def until_groups(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.groups) < count:
                self.started.clear()
                await self.started.wait()


async def test_one_flush_at_a_time_by_default() -> None:
    flush = Blocking()
    commit: GroupCommit[int, int] = GroupCommit(flush)
    first = asyncio.create_task(commit.submit([1]))
    await flush.until_groups(1)
    second = asyncio.create_task(commit.submit([2]))
    await asyncio.sleep(0.05)
    assert flush.groups == [[1]]  # 2 waits for the flush that does not carry it
    flush.let_go(1)
    flush.let_go(2)
    assert await first == [10]
    assert await second == [20]
    assert flush.groups == [[1], [2]]


async def test_a_second_flush_starts_while_the_first_runs() -> None:
    """With two at once, 2 is flushed (and answered) while 1's flush still runs; 3 and 4, sent
    while both run, wait and go together into the next flush."""
    flush = Blocking()
    commit: GroupCommit[int, int] = GroupCommit(flush, concurrency=2)
    first = asyncio.create_task(commit.submit([1]))
    await flush.until_groups(1)
    second = asyncio.create_task(commit.submit([2]))
    await flush.until_groups(2)
    flush.let_go(2)
    assert await second == [20]
    assert not first.done()
    blocker = asyncio.create_task(commit.submit([5]))
    await flush.until_groups(3)
    third, fourth = (asyncio.create_task(commit.submit([n])) for n in (3, 4))
    await asyncio.sleep(0.05)
    assert flush.groups == [[1], [2], [5]]
    flush.let_go(1)
    await flush.until_groups(4)
    assert flush.groups[3] == [3, 4]
    flush.let_go(3)
    flush.let_go(5)
    assert (await first, await third, await fourth, await blocker) == ([10], [30], [40], [50])


async def test_items_submitted_after_every_flush_ended_are_flushed() -> None:
    """A flush task that found nothing more to take has ended: the next item starts one."""
    groups: list[list[int]] = []

    async def flush(items: Sequence[int]) -> Sequence[int | DomainError]:
        groups.append(list(items))
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(flush, concurrency=2)
    for n in range(20):
        async with asyncio.timeout(5):
            assert await commit.submit([n]) == [n]
    assert groups == [[n] for n in range(20)]


async def test_a_failed_flush_fails_only_its_own_callers() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def flush(items: Sequence[int]) -> Sequence[int | DomainError]:
        if 1 in items:
            started.set()
            await release.wait()
            raise ConnectionError("database gone")
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(flush, concurrency=2)
    failing = asyncio.create_task(commit.submit([1]))
    await started.wait()
    assert await commit.submit([2]) == [2]
    release.set()
    with pytest.raises(ConnectionError):
        await failing


def test_at_least_one_flush() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(lambda items: asyncio.sleep(0, list(items)), concurrency=0)
