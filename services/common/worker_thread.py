"""One thread that runs short blocking calls for the event loop, those handed over while it was
busy taken together.

Why not `asyncio.to_thread`: each call there is a hop of its own, the pool's queue put and its
thread's wake-up (a futex each), the thread taking the GIL back from the loop, and the loop's own
wake-up for the result (docs/perf, "Submit's verification hop"). Here the calls that queued while
the thread worked are run one after the other in one wake-up, and their results go back to the
loop in one callback: at a busy loop's pace (when the hops cost it most) several calls share a
hop, and a quiet one pays what it paid before. Every call is its own: its own result or its own
exception, whatever the others of its batch did.

A long call holds every call queued behind it: give calls of different sizes a thread each
(Submit's checks: one for the documents' manifest signatures, of one small size, one for PDFs and
envelopes, of any size).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Call(Generic[T]):
    call: Callable[[], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    context: contextvars.Context
    outcome: T | None = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = self.context.run(self.call)
        except StopIteration as exc:
            # A future cannot carry a StopIteration (set_exception refuses it, and would leave
            # the rest of the batch unanswered): what a coroutine makes of one (PEP 479).
            self.error = RuntimeError("the call raised StopIteration")
            self.error.__cause__ = exc
        except BaseException as exc:  # noqa: BLE001 - the caller's to raise, not the thread's
            self.error = exc

    def settle(self) -> None:
        """On the caller's loop: its future answered, unless the caller gave up on it."""
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.outcome)  # type: ignore[arg-type] # the call's T


class WorkerThread:
    """Runs the calls handed to `run` in one daemon thread, started on the first call."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        # Batches run so far (how many hops the calls took), for tests and measurements.
        self.batches = 0

    async def run(self, call: Callable[[], T]) -> T:
        """`call()`'s result or exception, run in the thread (in a copy of the caller's context,
        as asyncio.to_thread does)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start()
        self._calls.put(_Call(call, future, loop, contextvars.copy_context()))
        return await future

    def waiting(self) -> int:
        """Calls handed over and not taken by the thread yet."""
        return self._calls.qsize()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                thread.start()
                self._thread = thread

    def _serve(self) -> None:
        while True:
            batch = [self._calls.get()]
            while True:
                try:
                    batch.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            self.batches += 1
            for item in batch:
                item.run()
            loops: dict[asyncio.AbstractEventLoop, list[_Call[Any]]] = {}
            for item in batch:
                loops.setdefault(item.loop, []).append(item)
            for loop, answered in loops.items():
                # A loop closed meanwhile has nobody awaiting these answers any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, answered)


def _settle(answered: list[_Call[Any]]) -> None:
    for item in answered:
        item.settle()
