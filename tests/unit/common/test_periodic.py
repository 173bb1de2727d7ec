"""Housekeeping keeps running through failures and ends when told."""

from __future__ import annotations

import asyncio

from services.common.errors import UnavailableError
from services.common.periodic import every, pause


async def test_a_failing_job_is_run_again_and_stop_ends_the_loop() -> None:
    runs: list[int] = []
    stop = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise UnavailableError("the directory is away")
        if len(runs) == 2:
            raise RuntimeError("a bug in one run")
        if len(runs) == 3:
            stop.set()

    async with asyncio.timeout(5):
        await every(0.01, stop, job, "test")
    assert runs == [0, 1, 2]


async def test_a_pause_ends_when_told_or_when_its_time_is_up() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(stop, 0.05)
    assert loop.time() - started >= 0.04
    stop.set()
    async with asyncio.timeout(1):
        await pause(stop, 3600)


async def test_a_pause_ends_early_when_woken_and_leaves_the_wake_set() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_soon(wake.set)
    async with asyncio.timeout(5):  # would take an hour without the wake
        await pause(stop, 3600, wake=wake)
    assert wake.is_set()
    assert not stop.is_set()
