"""A publishing channel's confirms tracked by delivery tag (rabbit_publishing), on aiormq's own
Channel fed frames as its connection's reader would: its reader must hand Basic.Ack, Basic.Nack
and Basic.Return to the hook (these tests fail if a newer aiormq stops calling it), an ack with
`multiple` answers every tag up to it and no further, a batch is settled only once every tag is
answered, a nack or the channel's close fails it at once, a return marks the message it names,
and a batch with no answer at all gives up after its bound."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiormq
import pytest
from aiormq.base import FutureStore
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from services.exchange.adapters.rabbit_publishing import ChannelConfirms, InFlight


class _Connector:
    """What an aiormq Channel asks of its connection, without a socket."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.publisher_confirms = True
        self.connection_tune = SimpleNamespace(frame_max=131072)
        self.write_queue: asyncio.Queue[object] = asyncio.Queue()
        self.channels: dict[int, object] = {}
        self.is_opened = False  # no Channel.Close to send on close
        self._store = FutureStore(self.loop)

    def _future_store_child(self) -> FutureStore:
        return self._store.get_child()


async def _channel() -> tuple[aiormq.Channel, _Connector]:
    connector = _Connector()
    channel = aiormq.Channel(connector, 1)  # type: ignore[arg-type]
    return channel, connector


async def _frames(channel: aiormq.Channel, *frames: object) -> None:
    for frame in frames:
        await channel.frames.put((0, frame))
    for _ in range(len(frames) + 3):  # the reader's turn
        await asyncio.sleep(0)


async def test_a_batch_is_settled_only_once_acks_with_multiple_covered_every_tag() -> None:
    channel, connector = await _channel()
    confirms = ChannelConfirms(channel)
    try:
        batch = await confirms.publish(b"frames", [f"m{i}" for i in range(5)])
        assert (batch.first, batch.last) == (1, 5)
        assert connector.write_queue.qsize() == 1  # the whole batch, one write
        settled = asyncio.ensure_future(batch.settled(stalled_after_s=30))
        await _frames(channel, spec.Basic.Ack(delivery_tag=3, multiple=True))
        assert (batch.remaining, settled.done()) == (2, False)
        await _frames(channel, spec.Basic.Ack(delivery_tag=5))
        assert (batch.remaining, settled.done()) == (1, False)
        await _frames(channel, spec.Basic.Ack(delivery_tag=4, multiple=True))
        assert await asyncio.wait_for(settled, 5) == set()
        # The next batch takes the next tags; an ack with `multiple` for it covers only it.
        later = await confirms.publish(b"frames", ["n1", "n2"])
        assert (later.first, later.last) == (6, 7)
    finally:
        await channel.close()


async def test_a_nack_fails_the_batch_at_once() -> None:
    channel, _ = await _channel()
    confirms = ChannelConfirms(channel)
    try:
        batch = await confirms.publish(b"frames", ["a", "b", "c"])
        await _frames(channel, spec.Basic.Nack(delivery_tag=1))
        with pytest.raises(aiormq.exceptions.DeliveryError):
            await asyncio.wait_for(batch.settled(stalled_after_s=30), 5)
    finally:
        await channel.close()


async def test_a_returned_message_is_marked_by_its_id_then_answered_by_its_ack() -> None:
    channel, _ = await _channel()
    confirms = ChannelConfirms(channel)
    try:
        # The same id twice (a message published again): the Return names the first one not
        # answered yet; its body is read off the channel.
        batch = await confirms.publish(b"frames", ["a", "x", "b", "x"])
        returned = spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="e")
        header = ContentHeader(body_size=3, properties=spec.Basic.Properties(message_id="x"))
        await _frames(channel, spec.Basic.Ack(delivery_tag=2), returned, header)
        await _frames(channel, ContentBody(b"abc"), spec.Basic.Ack(delivery_tag=4, multiple=True))
        assert await asyncio.wait_for(batch.settled(stalled_after_s=30), 5) == {3}
        assert not channel.is_closed  # the reader read the whole returned message
    finally:
        await channel.close()


async def test_the_channels_close_fails_a_batch_in_flight_and_refuses_the_next() -> None:
    channel, _ = await _channel()
    confirms = ChannelConfirms(channel)
    batch = await confirms.publish(b"frames", ["a"])
    settled = asyncio.ensure_future(batch.settled(stalled_after_s=30))
    await _frames(channel, spec.Channel.Close(reply_code=406, reply_text="PRECONDITION_FAILED"))
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await asyncio.wait_for(settled, 5)
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await confirms.publish(b"frames", ["b"])


async def test_a_batch_without_any_answer_gives_up_after_its_bound() -> None:
    batch = InFlight(1, ["a", "b"])
    batch.answer(1, multiple=False, nacked=False)
    with pytest.raises(TimeoutError):
        await batch.settled(stalled_after_s=0.05)
    assert batch.remaining == 1


def test_acks_out_of_order_and_again_are_each_counted_once() -> None:
    batch = InFlight(10, ["m"] * 6)  # tags 10..15
    for tag in (12, 10, 12):
        batch.answer(tag, multiple=False, nacked=False)
    assert batch.remaining == 4
    batch.answer(13, multiple=True, nacked=False)  # 11 and 13
    assert batch.remaining == 2
    batch.answer(9, multiple=True, nacked=False)  # an earlier batch's
    batch.answer(16, multiple=False, nacked=False)  # a later batch's
    assert batch.remaining == 2
    batch.answer(99, multiple=True, nacked=False)  # a later batch's, covering this one
    assert batch.remaining == 0


def test_returns_name_messages_in_publish_order_each_once() -> None:
    batch = InFlight(1, ["a", "b", "a", "c"])
    batch.answer(4, multiple=False, nacked=False)  # "c" routed and confirmed
    assert [batch.came_back(i) for i in ("a", "a", "b", "c", "a")] == [
        True,
        True,
        True,  # behind the last one returned: found from the start
        False,  # answered: not a message a Return can name any more
        False,
    ]
    assert batch.returned == {0, 1, 2}


async def test_a_held_batchs_outcome_is_its_acked_messages_once_every_tag_is_answered() -> None:
    """What a stalled batch, held, finally had queued: acked, not nacked nor returned; it waits
    through nacks for every answer (or the channel's close, or its bound)."""
    batch = InFlight(1, ["a", "b", "c", "d"])
    batch.answer(1, multiple=False, nacked=False)
    assert batch.came_back("b")
    waiting = asyncio.ensure_future(batch.outcome(within_s=10))
    batch.answer(2, multiple=False, nacked=False)  # "b"'s ack after its Return
    batch.answer(3, multiple=False, nacked=True)
    await asyncio.sleep(0)
    assert not waiting.done()
    batch.answer(4, multiple=True, nacked=False)
    assert await waiting == [0, 3]


async def test_a_held_batchs_outcome_ends_with_its_channel_or_its_bound() -> None:
    closed = InFlight(1, ["a", "b"])
    closed.answer(2, multiple=False, nacked=False)
    waiting = asyncio.ensure_future(closed.outcome(within_s=3600))
    closed.fail(aiormq.exceptions.ChannelInvalidStateError("closed"))
    async with asyncio.timeout(5):  # not the bound: the close ends it
        assert await waiting == [1]
    unanswered = InFlight(1, ["a", "b"])
    unanswered.answer(1, multiple=False, nacked=False)
    assert await unanswered.outcome(within_s=0.05) == [0]
