"""The relay's wait for a batch's confirms (rabbit.Answers): every answer counted once, a wait
that gives up only when none came, and one callback per publish however the answers trickle in
(the loop over asyncio.wait it replaced registered one on every pending publish at each
answer: quadratic in the batch)."""

from __future__ import annotations

import asyncio

from services.exchange.adapters.rabbit import Answers


class _CountingFuture(asyncio.Future[None]):
    callbacks_added = 0

    def add_done_callback(self, fn, *, context=None):  # type: ignore[no-untyped-def]
        type(self).callbacks_added += 1
        super().add_done_callback(fn, context=context)


async def test_answers_trickling_in_one_at_a_time_are_each_counted_once() -> None:
    loop = asyncio.get_running_loop()
    _CountingFuture.callbacks_added = 0
    futures = [_CountingFuture(loop=loop) for _ in range(300)]
    answers = Answers(futures)
    waits = 0
    for future in futures:
        future.set_result(None)
        assert await answers.progress(timeout_s=30)
        waits += 1
    assert (answers.remaining, waits) == (0, 300)
    assert _CountingFuture.callbacks_added == 300


async def test_a_wait_without_any_answer_reports_no_progress() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3)]
    answers = Answers(futures)
    futures[0].set_result(None)
    assert await answers.progress(timeout_s=30)
    assert not await answers.progress(timeout_s=0.01)
    assert answers.remaining == 2


async def test_answers_that_came_before_the_wait_count_as_progress() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(2)]
    answers = Answers(futures)
    futures[0].cancel()
    futures[1].set_exception(RuntimeError("nacked"))
    assert await answers.progress(timeout_s=30)
    assert answers.remaining == 0
