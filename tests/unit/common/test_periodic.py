"""Housekeeping keeps running through failures and ends when told."""

from __future__ import annotations

import asyncio

from services.common.errors import UnavailableError
from services.common.periodic import every


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
