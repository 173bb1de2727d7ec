"""The parts of aiormq's channel below its public API that the relay and the streams use.

Two modules work below aio-pika for the delivery path's cost (docs/perf/README.md, "The relay's
publishing below aio-pika", "The acknowledgement path per copy"): rabbit_publishing tracks a
channel's confirms and returns itself, rabbit_deliveries writes acks as hand-packed frames. Each
needs something aiormq keeps private; they are all here, checked for when a channel is taken
(a RuntimeError naming what is missing, never a silent fallback), so that a new aiormq
(constraints.txt pins 7.2.4) is reviewed in one place. tests/unit/exchange/test_publish_confirms.py
and tests/integration/test_inbox_acks.py fail if aiormq stops behaving as read here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import aiormq
from aiormq.abc import AbstractChannel
from pamqp import commands as spec

ConfirmFrame = spec.Basic.Ack | spec.Basic.Nack


def intercept(
    channel: aiormq.Channel,
    on_confirm: Callable[[ConfirmFrame], Awaitable[None]],
    on_return: Callable[[spec.Basic.Return], Awaitable[None]],
) -> None:
    """aiormq 7.2.4's channel reader hands each Basic.Ack and Basic.Nack to
    `self._on_confirm_frame` and each Basic.Return to `self._on_return_frame`; bound here on
    the instance, they reach `on_confirm` and `on_return` instead of aiormq's confirmation
    futures. `on_return` reads the returned message's frames (`next_frame`)."""
    for name in ("_on_confirm_frame", "_on_return_frame", "_get_frame"):
        if not callable(getattr(channel, name, None)):
            raise RuntimeError(f"aiormq's Channel has no {name}: publishing cannot track confirms")
    setattr(channel, "_on_confirm_frame", on_confirm)  # noqa: B010 - an instance's hook
    setattr(channel, "_on_return_frame", on_return)  # noqa: B010


async def next_frame(channel: aiormq.Channel) -> object:
    """The channel's next frame (a returned message's header and body follow its Return)."""
    get_frame = cast(Callable[[], Awaitable[object]], getattr(channel, "_get_frame"))  # noqa: B009
    return await get_frame()


def close_event(channel: AbstractChannel) -> asyncio.Event:
    """aiormq 7.2.4's channel sets this event once its Close is sent or the broker's is answered
    (Close-Ok queued): a frame on the channel after that is a connection error for RabbitMQ
    (504, every stream on the connection), so aiormq's basic_ack refuses a channel whose event
    is set, and so does rabbit_deliveries' writing below it."""
    event = getattr(channel, "_Channel__close_event", None)
    if not isinstance(event, asyncio.Event):
        raise RuntimeError(f"aiormq's Channel has no close event: {channel!r} cannot be acked")
    return event
