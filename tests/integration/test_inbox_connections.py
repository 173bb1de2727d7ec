"""Inbox queues on a real RabbitMQ: the streams of many agencies spread over several broker
connections, and a publish to an agency whose queue does not exist yet declares it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from docaxis.exchange.v1 import events_pb2

from services.common import rabbit
from services.exchange.adapters.rabbit import (
    InboxClosedError,
    InboxQueues,
    OutboundMessage,
    RabbitInbox,
    RabbitPublisher,
    inbox_queue_name,
    lane_of,
)
from services.exchange.service_layer.inbox_ports import InboxMessage
from tests.conftest import unique_code
from tests.infra import SuiteServices
from tests.waiting import eventually

pytestmark = pytest.mark.integration

T = TypeVar("T")


def delivery_to(agency: str) -> OutboundMessage:
    delivery_id = str(uuid.uuid4())
    event = events_pb2.DeliveryQueued(delivery_id=delivery_id, recipient=agency)
    return OutboundMessage(
        agency,
        delivery_id,
        events_pb2.DeliveryQueued.DESCRIPTOR.full_name,
        event.SerializeToString(),
    )


async def test_streams_past_a_connections_share_open_more_connections(
    services: SuiteServices,
) -> None:
    """With two stream channels per connection, five streams use three connections (RabbitMQ
    closes a connection, every stream on it, past its channel_max), each stream gets what is
    published to its agency, a publish to an agency without a queue yet declares it and is
    delivered once a stream opens, and closing the inbox closes the connections it opened."""
    own = await rabbit.connect(services.amqp_url, name="test-inbox")
    opened: list[AbstractRobustConnection] = []

    async def connect() -> AbstractRobustConnection:
        connection = await rabbit.connect(services.amqp_url, name="test-inbox-streams")
        opened.append(connection)
        return connection

    inbox = RabbitInbox(own, connect=connect, channels_per_connection=2)
    publisher = RabbitPublisher(own)
    agencies = [unique_code() for _ in range(5)]
    newcomer = unique_code()  # no stream, so no queue, before the publish
    try:
        async with contextlib.AsyncExitStack() as streams:
            inboxes = [await streams.enter_async_context(inbox.consume(a)) for a in agencies]
            assert len(opened) == 2
            sent = [delivery_to(a) for a in [*agencies, newcomer]]
            await publisher.publish_batch(sent)
            got: list[InboxMessage] = []
            async with asyncio.timeout(15):
                for stream in inboxes:
                    got += await stream.batch(10)
            assert [(m.delivery_id, m.addressee) for m in got] == [
                (m.message_id, m.routing_key) for m in sent[:-1]
            ]
            for message in got:
                await message.message.ack()
        async with inbox.consume(newcomer) as late, asyncio.timeout(15):
            (message,) = await late.batch(10)
            assert (message.delivery_id, message.addressee) == (sent[-1].message_id, newcomer)
            await message.message.ack()
        await inbox.close()
        assert [c.is_closed for c in opened] == [True, True]
    finally:
        await publisher.close()
        await own.close()


async def test_a_message_that_is_not_docaxis_is_dead_lettered_and_the_stream_goes_on(
    services: SuiteServices,
) -> None:
    """A message in an inbox queue that docaxis cannot read (not protobuf) is rejected into the
    dead-letter exchange, and the delivery behind it still reaches the stream: such a message
    used to end the stream, and every later one, since the broker handed it back each time."""
    own = await rabbit.connect(services.amqp_url, name="test-inbox")
    inbox, publisher = RabbitInbox(own), RabbitPublisher(own)
    agency = unique_code()
    junk = OutboundMessage(agency, str(uuid.uuid4()), "", b"\xff not protobuf")
    good = delivery_to(agency)
    try:
        await publisher.publish_batch([junk, good])
        async with inbox.consume(agency) as stream, asyncio.timeout(15):
            got: list[InboxMessage] = []
            while not got:
                got = await stream.batch(10)
            assert [m.delivery_id for m in got] == [good.message_id]
            await got[0].message.ack()
        async with inbox.consume(agency) as again:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await again.batch(10)
    finally:
        await publisher.close()
        await own.close()


async def test_a_batch_over_the_publishers_channels_reaches_each_queue_once_in_order(
    services: SuiteServices,
) -> None:
    """Thirty agencies, three messages each, interleaved, over four channels: each agency's
    queue holds its three, once each, in the batch's order (an agency's messages share a
    channel), and the publisher used all four channels (the agencies cover every lane)."""
    name = f"test-publish-channels-{uuid.uuid4()}"
    own = await rabbit.connect(services.amqp_url, name=name)
    publisher = RabbitPublisher(own, channels=4)
    agencies = _covering_lanes(4, 30)
    sent = [delivery_to(a) for _ in range(3) for a in agencies]
    try:
        await publisher.publish_batch(sent)
        await publisher.publish_batch([delivery_to(a) for a in agencies])  # queues exist now
        assert _channels_of(services, name) == [4]
        channel = await rabbit.open_channel(own)
        try:
            for agency in agencies:
                queue = await channel.declare_queue(inbox_queue_name(agency), passive=True)
                held = []
                while (message := await queue.get(fail=False)) is not None:
                    held.append(message.message_id)
                    await message.ack()
                expected = [m.message_id for m in sent if m.routing_key == agency]
                assert held[:3] == expected
                assert len(held) == 4
        finally:
            await channel.close()
    finally:
        await publisher.close()
        await own.close()


def _covering_lanes(lanes: int, count: int) -> list[str]:
    """`count` fresh agency codes among which every one of `lanes` publishing channels has one."""
    codes = [unique_code() for _ in range(count)]
    while len({lane_of(code, lanes) for code in codes}) < lanes:
        codes.append(unique_code())
        codes.pop(0)
    return codes


def _connections_named(services: SuiteServices, name: str) -> list[dict[str, Any]]:
    """The broker's open connections whose client named them `name` (pid, channels: what its
    channel_max is checked against)."""
    listed = services.rabbitmqctl(
        "list_connections", "pid", "channels", "client_properties", "--formatter", "json"
    )
    return [
        c
        for c in json.loads(listed)
        if ["connection_name", "longstr", name] in c["client_properties"]
    ]


def _channels_of(services: SuiteServices, name: str) -> list[int]:
    return [c["channels"] for c in _connections_named(services, name)]


async def started(
    stream: Callable[[str, asyncio.Event], Coroutine[Any, Any, T]],
    agencies: Sequence[str],
    within: float = 30,
) -> list[asyncio.Task[T]]:
    """A task running `stream` for each agency, once every one has set its event (attached)."""
    subscribed = [asyncio.Event() for _ in agencies]
    streams = [
        asyncio.create_task(stream(agency, ready))
        for agency, ready in zip(agencies, subscribed, strict=True)
    ]
    async with asyncio.timeout(within):
        for ready in subscribed:
            await ready.wait()
    return streams


async def _stream(inbox: RabbitInbox, agency: str, subscribed: asyncio.Event) -> BaseException:
    """A Receive stream's use of its inbox: attached, then waiting for messages until its
    channel ends (then the handler exits and its place is given back)."""
    try:
        async with inbox.consume(agency) as stream:
            subscribed.set()
            await stream.batch(10)
    except InboxClosedError as exc:
        return exc
    raise AssertionError(f"the stream of {agency} ended without its channel closing")


async def test_streams_a_dropped_connection_ended_leave_no_channel_open_on_it(
    services: SuiteServices,
) -> None:
    """Ten streams on one connection; the broker closes it: every stream ends, and the
    connection it reconnects holds none of their channels; the ten streams opened again then
    hold ten channels on it, not twenty. aio-pika reopened a stream's robust channel with the
    connection, after its stream had ended and given back its place: a connection holding
    1,000 streams held 2,000 channels once their DMSs reconnected, and RabbitMQ closed it at its
    channel_max (2,047), ending every stream on it again (the bench's push circular, once)."""
    name = f"test-inbox-drop-{uuid.uuid4()}"
    own = await rabbit.connect(services.amqp_url, name=name)
    reconnected = asyncio.Event()
    own.reconnect_callbacks.add(lambda *_: reconnected.set())  # after channels are restored
    inbox = RabbitInbox(own, channels_per_connection=10)
    agencies = [unique_code() for _ in range(10)]
    try:
        streams = await started(lambda agency, ready: _stream(inbox, agency, ready), agencies)
        assert _channels_of(services, name) == [10]
        # The pid as the table form prints it (`<node.N.N.N>`): what close_connection takes.
        table = services.rabbitmqctl("list_connections", "pid", "client_properties")
        (pid,) = [line.split("\t")[0] for line in table.splitlines() if name in line]
        services.rabbitmqctl("close_connection", pid, "test: a dropped connection")
        async with asyncio.timeout(30):
            ended = await asyncio.gather(*streams)
            await reconnected.wait()
        assert all(isinstance(e, InboxClosedError) for e in ended)
        assert _channels_of(services, name) == [0]
        streams = await started(lambda agency, ready: _stream(inbox, agency, ready), agencies)
        assert _channels_of(services, name) == [10]
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    finally:
        await own.close()


class _SlowQueues(InboxQueues):
    """Declarations that take a while each, as the broker's do under load (quorum queues)."""

    async def declare(
        self, channel: AbstractChannel, exchange: AbstractExchange, agency_code: str
    ) -> AbstractQueue:
        await asyncio.sleep(0.05)
        return await super().declare(channel, exchange, agency_code)


async def test_a_batch_whose_queues_take_longer_to_declare_than_the_bound_is_published(
    services: SuiteServices,
) -> None:
    """Forty agencies without a queue, each declaration 50 ms or more, a bound of one second
    without progress: the batch is published, one message in each new queue. The bound was on
    the whole batch: the relay's 1,000 copies to communes that never connected took 13-17 s to
    declare, past its 10 s, and the batch failed and went again from the start, time after
    time under load."""
    own = await rabbit.connect(services.amqp_url, name="test-publisher")
    publisher = RabbitPublisher(own, _SlowQueues(), stalled_after_s=1.0)
    agencies = [unique_code() for _ in range(40)]
    try:
        await publisher.publish_batch([delivery_to(a) for a in agencies])
        channel = await rabbit.open_channel(own)
        try:
            counts = [
                (await channel.declare_queue(inbox_queue_name(a), passive=True)).declaration_result
                for a in agencies
            ]
        finally:
            await channel.close()
        assert [c.message_count for c in counts] == [1] * len(agencies)
    finally:
        await publisher.close()
        await own.close()


async def test_streams_cancelled_again_while_they_end_leave_their_channels_to_the_next_ones(
    services: SuiteServices,
) -> None:
    """300 streams cancelled, then each cancelled again while it ends (as gRPC does when a DMS
    goes away): the connection stays up, their 300 channels wait idle, and the 300 streams
    opened next take them, none more. A second cancellation used to interrupt the channel's
    close, and aiormq then sent Channel.Close again: channels were left behind, and a second
    Close for a channel the broker had closed already makes it close the whole connection (504
    CHANNEL_ERROR), every stream on it."""
    name = f"test-inbox-cancelled-{uuid.uuid4()}"
    own = await rabbit.connect(services.amqp_url, name=name)
    reconnected = asyncio.Event()
    own.reconnect_callbacks.add(lambda *_: reconnected.set())
    inbox = RabbitInbox(own, channels_per_connection=1000)
    agencies = [unique_code() for _ in range(300)]

    async def stream(agency: str, ready: asyncio.Event) -> None:
        async with inbox.consume(agency) as attached:
            ready.set()
            await attached.batch(10)

    try:
        streams = await started(stream, agencies, within=60)
        for task in streams:
            task.cancel()
        for task in streams:  # again, spread over the time their channels take to end
            await asyncio.sleep(0.001)
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        await eventually(lambda: asyncio.to_thread(_channels_of, services, name), [300].__eq__)
        streams = await started(stream, agencies, within=60)
        assert _channels_of(services, name) == [300]
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        assert not reconnected.is_set()
    finally:
        await own.close()
