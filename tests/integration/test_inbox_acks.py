"""A stream's acks to RabbitMQ, coalesced (adapters/rabbit_deliveries.py), and its channel, kept
for the next stream (adapters/rabbit.py), on a real broker: the acks of one pass of the event
loop go as one basic.ack with `multiple` for the deliveries that follow each other from the
oldest unsettled one, never past a delivery not settled; a stream that ends sends its due acks,
the broker returns the rest, and its channel serves the next stream, leaving nothing to the
cyclic collector."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import aiormq
import pamqp.frame
import pytest
from pamqp import commands as spec

from services.common import rabbit
from services.exchange.adapters.rabbit import (
    DEAD_LETTER_QUEUE,
    OutboundMessage,
    RabbitInbox,
    RabbitPublisher,
)
from services.exchange.adapters.rabbit_deliveries import AckSender
from services.exchange.service_layer.inbox_ports import InboxMessage
from tests.conftest import unique_code
from tests.infra import SuiteServices
from tests.integration.test_inbox_connections import _channels_of, delivery_to
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def ack_writes(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int, bool]]]:
    """Every write to a broker connection that carries basic.ack frames, as the broker reads it:
    each ack's (channel, delivery tag, multiple), in order."""
    writes: list[list[tuple[int, int, bool]]] = []
    real = asyncio.StreamWriter.write

    def write(self: asyncio.StreamWriter, data: bytes | bytearray | memoryview) -> None:
        acks: list[tuple[int, int, bool]] = []
        rest = bytes(data)
        while rest:
            consumed, channel, frame = pamqp.frame.unmarshal(rest)
            if isinstance(frame, spec.Basic.Ack):
                acks.append((channel, frame.delivery_tag, frame.multiple))
            rest = rest[consumed:]
        if acks:
            writes.append(acks)
        real(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", write)
    return writes


@pytest.fixture
def frames(ack_writes: list[list[tuple[int, int, bool]]]) -> Callable[[], list[tuple[int, bool]]]:
    """Every basic.ack sent so far (delivery tag, multiple), in order."""
    return lambda: [(tag, multiple) for write in ack_writes for _, tag, multiple in write]


@pytest.fixture
async def broker(services: SuiteServices) -> AsyncIterator[tuple[RabbitInbox, RabbitPublisher]]:
    own = await rabbit.connect(services.amqp_url, name=f"test-inbox-acks-{uuid.uuid4()}")
    try:
        publisher = RabbitPublisher(own)
        try:
            yield RabbitInbox(own), publisher
        finally:
            await publisher.close()
    finally:
        await own.close()


async def queued(publisher: RabbitPublisher, count: int) -> tuple[str, list[OutboundMessage]]:
    """A new agency, and `count` deliveries published to its queue."""
    agency = unique_code()
    sent = [delivery_to(agency) for _ in range(count)]
    await publisher.publish_batch(sent)
    return agency, sent


async def length(items: list[Any]) -> int:
    return len(items)


async def take(stream: Any, count: int) -> list[InboxMessage]:
    got: list[InboxMessage] = []
    async with asyncio.timeout(15):
        while len(got) < count:
            got += await stream.batch(count - len(got))
    return got


async def left_in(inbox: RabbitInbox, publisher: RabbitPublisher, agency: str) -> list[str]:
    """What the agency's queue holds, oldest first: read by a new stream up to a marker published
    now (returned messages are handed out before it), then left to the broker again."""
    marker = delivery_to(agency)
    await publisher.publish_batch([marker])
    held: list[str] = []
    async with inbox.consume(agency) as stream, asyncio.timeout(15):
        while marker.message_id not in held:
            held += [m.delivery_id for m in await stream.batch(100)]
    assert held[-1] == marker.message_id
    return held[:-1]


async def test_the_acks_of_a_pass_go_as_one_frame_and_never_past_an_unsettled_delivery(
    broker: tuple[RabbitInbox, RabbitPublisher], frames: Callable[[], list[tuple[int, bool]]]
) -> None:
    """Six deliveries, the first two, the fourth and the fifth acked in one pass, the third and
    the sixth not: the first two go as one basic.ack with `multiple`, the two behind the third
    one each (a `multiple` for the fifth would settle the third); the stream ends, and the
    queue holds the third and the sixth again, in order."""
    inbox, publisher = broker
    agency, sent = await queued(publisher, 6)
    async with inbox.consume(agency) as stream:
        got = await take(stream, 6)
        assert [m.delivery_id for m in got] == [m.message_id for m in sent]
        for index in (0, 1, 3, 4):
            await got[index].message.ack()
        tags = [m.message.tag for m in got]  # type: ignore[attr-defined]
        await eventually(lambda: length(frames()), (3).__eq__)
        assert frames() == [(tags[1], True), (tags[3], False), (tags[4], False)]
    assert await left_in(inbox, publisher, agency) == [sent[2].message_id, sent[5].message_id]


async def test_the_acks_of_many_streams_in_a_pass_go_in_one_write_and_settle_only_those(
    broker: tuple[RabbitInbox, RabbitPublisher], ack_writes: list[list[tuple[int, int, bool]]]
) -> None:
    """Three streams (three channels of one connection), three deliveries each, the first two of
    each acked in one pass (a group commit answering many streams): one write carries the three
    channels' basic.acks, each with `multiple` up to its own second delivery; once the streams
    end, each queue holds its third delivery, and only it."""
    inbox, publisher = broker
    queues = [await queued(publisher, 3) for _ in range(3)]
    async with contextlib.AsyncExitStack() as streams:
        got = []
        for agency, _ in queues:
            stream = await streams.enter_async_context(inbox.consume(agency))
            got.append(await take(stream, 3))
        for messages in got:
            for message in messages[:2]:
                await message.message.ack()
        await eventually(lambda: length(ack_writes), (1).__eq__)
        channels = {
            # the channel's number: unique per connection, so one per stream here
            messages[0].message._acks.channel.number  # type: ignore[attr-defined]
            for messages in got
        }
        assert len(channels) == 3
        (write,) = ack_writes
        assert sorted(write) == sorted(
            (
                messages[1].message._acks.channel.number,  # type: ignore[attr-defined]
                messages[1].message.tag,  # type: ignore[attr-defined]
                True,
            )
            for messages in got
        )
    for agency, sent in queues:
        assert await left_in(inbox, publisher, agency) == [sent[2].message_id]


async def test_the_acks_behind_a_gap_that_closes_go_with_the_next_range(
    broker: tuple[RabbitInbox, RabbitPublisher], frames: Callable[[], list[tuple[int, bool]]]
) -> None:
    """The third delivery, acked after the fourth (sent on its own), opens the range again: one
    basic.ack with `multiple` for the third, and the queue is empty once the stream ends."""
    inbox, publisher = broker
    agency, _ = await queued(publisher, 4)
    async with inbox.consume(agency) as stream:
        got = await take(stream, 4)
        tags = [m.message.tag for m in got]  # type: ignore[attr-defined]
        for index in (0, 1, 3):
            await got[index].message.ack()
        await eventually(lambda: length(frames()), (2).__eq__)
        await got[2].message.ack()
        await eventually(lambda: length(frames()), (3).__eq__)
        assert frames() == [(tags[1], True), (tags[3], False), (tags[2], True)]
    assert await left_in(inbox, publisher, agency) == []


async def test_a_stream_that_ends_with_acks_due_sends_them_and_returns_the_rest(
    broker: tuple[RabbitInbox, RabbitPublisher],
    frames: Callable[[], list[tuple[int, bool]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two of four deliveries acked, and the stream ends before the task that sends
    acks got to its channel (held up here: it never runs; in service it may be writing other
    channels' acks): the stream's close sends them before the channel's Close, so the broker
    returns the last two only."""
    inbox, publisher = broker
    agency, sent = await queued(publisher, 4)
    monkeypatch.setattr(AckSender, "due", lambda _self, _acks: None)
    async with inbox.consume(agency) as stream:
        got = await take(stream, 4)
        await got[0].message.ack()
        await got[1].message.ack()
        assert frames() == []
    assert frames() == [(got[1].message.tag, True)]  # type: ignore[attr-defined]
    assert await left_in(inbox, publisher, agency) == [sent[2].message_id, sent[3].message_id]


async def test_a_rejected_delivery_between_acks_is_dead_lettered_not_acked(
    broker: tuple[RabbitInbox, RabbitPublisher], services: SuiteServices
) -> None:
    """Acked, rejected, acked: the acks' `multiple` does not settle the rejected one as acked;
    it reaches the dead-letter queue, and nothing is left in the inbox."""
    inbox, publisher = broker
    agency, sent = await queued(publisher, 3)
    async with inbox.consume(agency) as stream:
        got = await take(stream, 3)
        await got[0].message.ack()
        await got[1].message.reject(requeue=False)
        await got[2].message.ack()
    assert await left_in(inbox, publisher, agency) == []
    own = await rabbit.connect(services.amqp_url, name="test-inbox-acks-dead")
    try:
        channel = await rabbit.open_channel(own)
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        dead: list[str | None] = []
        async with asyncio.timeout(15):
            while sent[1].message_id not in dead:
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                dead.append(message.message_id)
                await message.ack()
        assert sent[0].message_id not in dead
        assert sent[2].message_id not in dead
        await channel.close()
    finally:
        await own.close()


async def test_an_ack_once_the_stream_ended_is_refused_and_its_connection_stays(
    broker: tuple[RabbitInbox, RabbitPublisher], frames: Callable[[], list[tuple[int, bool]]]
) -> None:
    """An ack that comes after the stream ended (its channel closed) raises, as aio-pika's did,
    and sends nothing: a frame on a closed channel is a connection error for RabbitMQ (504), the
    end of every stream on the connection. The message is in the queue again."""
    inbox, publisher = broker
    agency, (sent,) = await queued(publisher, 1)
    async with inbox.consume(agency) as stream:
        (late,) = await take(stream, 1)
    with pytest.raises(aio_pika.exceptions.ChannelInvalidStateError):
        await late.message.ack()
    assert frames() == []
    assert await left_in(inbox, publisher, agency) == [sent.message_id]


async def test_a_delivery_is_settled_once(
    broker: tuple[RabbitInbox, RabbitPublisher],
) -> None:
    """A second ack of the same delivery raises (a second basic.ack of a tag is a channel
    error for the broker, PRECONDITION_FAILED, the end of the stream)."""
    inbox, publisher = broker
    agency, _ = await queued(publisher, 1)
    async with inbox.consume(agency) as stream:
        (message,) = await take(stream, 1)
        await message.message.ack()
        with pytest.raises(aio_pika.exceptions.MessageProcessError):
            await message.message.ack()
    assert await left_in(inbox, publisher, agency) == []


async def test_a_stream_that_ends_returns_what_it_did_not_settle_and_its_channel_serves_the_next(
    services: SuiteServices,
) -> None:
    """Three deliveries, the first acked, and the stream ends: the broker has the other two
    again (basic.recover), and the next stream, of another agency, takes the same channel (the
    connection holds one), gets its own messages and none of the first agency's."""
    name = f"test-inbox-reuse-{uuid.uuid4()}"
    own = await rabbit.connect(services.amqp_url, name=name)
    inbox, publisher = RabbitInbox(own), RabbitPublisher(own, channels=1)
    try:
        first, sent = await queued(publisher, 3)
        async with inbox.consume(first) as stream:
            got = await take(stream, 3)
            await got[0].message.ack()
        assert _channels_of(services, name) == [2]  # the publisher's and the stream's
        second, other = await queued(publisher, 1)
        async with inbox.consume(second) as stream:
            assert [m.delivery_id for m in await take(stream, 1)] == [other[0].message_id]
            assert _channels_of(services, name) == [2]
        assert await left_in(inbox, publisher, first) == [sent[1].message_id, sent[2].message_id]
        assert await left_in(inbox, publisher, second) == [other[0].message_id]
    finally:
        await publisher.close()
        await own.close()


async def test_a_stream_that_ended_leaves_nothing_to_the_cyclic_collector(
    broker: tuple[RabbitInbox, RabbitPublisher],
) -> None:
    """With the collector off, a stream's inbox is freed as the stream ends. Closing a channel
    per stream left it, its channel and ~100 objects of aiormq's close (futures and tasks
    holding exceptions whose tracebacks hold their frames) in reference cycles: 1.2-2.0 s of
    full collection on the event loop after the push circular's 3,000 streams ended."""
    inbox, publisher = broker
    agency, _ = await queued(publisher, 2)
    gc.collect()
    gc.disable()
    try:
        async with inbox.consume(agency) as stream:
            got = await take(stream, 2)
            await got[0].message.ack()
            left = weakref.ref(stream)
        del stream, got

        async def freed() -> bool:
            return left() is None

        await eventually(freed, within=10)
    finally:
        gc.enable()


async def test_acks_due_on_a_channel_the_broker_closed_are_dropped_and_the_others_go(
    broker: tuple[RabbitInbox, RabbitPublisher], frames: Callable[[], list[tuple[int, bool]]]
) -> None:
    """Two streams on one connection, a delivery of each acked in one pass; before the task
    that sends acks gets to them, the broker closes the first stream's channel (a channel error:
    here a passive declare of a queue that does not exist, 404). The acks are taken with that
    channel closing: its ack is dropped (a frame on it after its Close-Ok would be a connection
    error, 504, the end of the other stream too), the other's goes; the connection stays, the
    other stream goes on, and the broker has the first delivery again."""
    inbox, publisher = broker
    (first, (lost,)), (second, _) = [await queued(publisher, 1) for _ in range(2)]
    async with inbox.consume(first) as closing, inbox.consume(second) as staying:
        (a,) = await take(closing, 1)
        (b,) = await take(staying, 1)
        channel_a = a.message._acks  # type: ignore[attr-defined]
        async with channel_a.sending:  # as a reject being written holds it: the sender waits
            await a.message.ack()
            await b.message.ack()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel_a.channel.queue_declare(f"missing-{uuid.uuid4()}", passive=True)
        await eventually(lambda: length(frames()), (1).__eq__)
        assert frames() == [(b.message.tag, True)]  # type: ignore[attr-defined]
        later = delivery_to(second)
        await publisher.publish_batch([later])
        (c,) = await take(staying, 1)
        assert c.delivery_id == later.message_id
        await c.message.ack()
        await eventually(lambda: length(frames()), (2).__eq__)
    assert await left_in(inbox, publisher, first) == [lost.message_id]
    assert await left_in(inbox, publisher, second) == []
