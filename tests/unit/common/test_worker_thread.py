"""The worker thread (services/common/worker_thread.py): the calls queued while it works are run
in one hop, each answered on its own."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from services.common.worker_thread import WorkerThread
from tests.waiting import eventually


class Gate:
    """A call that holds the worker thread until opened: what queues behind it meanwhile."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self.opened.wait(10), "the test never opened the gate"
        return "gate"


async def queued(worker: WorkerThread, count: int) -> None:
    async def waiting() -> int:
        return worker.waiting()

    await eventually(waiting, lambda n: n == count)


async def held(worker: WorkerThread) -> tuple[Gate, asyncio.Task[str]]:
    gate = Gate()
    task = asyncio.ensure_future(worker.run(gate))
    assert await asyncio.to_thread(gate.entered.wait, 10)
    return gate, task


def fail(message: str) -> str:
    raise ValueError(message)


def stop() -> str:
    raise StopIteration


async def test_calls_queued_while_it_works_run_in_one_hop_each_with_its_own_answer() -> None:
    """Four calls queued behind a busy thread take one batch; those that raise get their own
    exception (a StopIteration as a RuntimeError, as in a coroutine), the others their own
    results."""
    worker = WorkerThread("test-worker")
    gate, first = await held(worker)
    calls = [
        asyncio.ensure_future(worker.run(lambda: "a")),
        asyncio.ensure_future(worker.run(lambda: fail("b refused"))),
        asyncio.ensure_future(worker.run(stop)),
        asyncio.ensure_future(worker.run(lambda: "d")),
    ]
    await queued(worker, 4)
    gate.opened.set()
    async with asyncio.timeout(10):  # an answer lost fails here rather than hanging
        outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert await first == "gate"
    assert outcomes[0] == "a"
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[1]) == "b refused"
    assert isinstance(outcomes[2], RuntimeError)  # a future cannot carry a StopIteration
    assert outcomes[3] == "d"
    assert worker.batches == 2  # the gate's, then the four together


async def test_a_caller_that_gives_up_leaves_the_others_answered() -> None:
    """A cancelled caller's answer is dropped; the rest of its batch is answered, and the thread
    serves the next calls."""
    worker = WorkerThread("test-worker")
    gate, first = await held(worker)
    gone = asyncio.ensure_future(worker.run(lambda: "gone"))
    kept = asyncio.ensure_future(worker.run(lambda: "kept"))
    await queued(worker, 2)
    gone.cancel()
    gate.opened.set()

    assert await kept == "kept"
    assert await first == "gate"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await worker.run(lambda: "next") == "next"


async def test_calls_run_in_the_callers_context_off_the_loop() -> None:
    """As asyncio.to_thread: not on the loop's thread, with the caller's context variables."""
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable")
    variable.set("caller's")
    worker = WorkerThread("test-worker")

    name, value = await worker.run(lambda: (threading.current_thread().name, variable.get()))

    assert (name, value) == ("test-worker", "caller's")
