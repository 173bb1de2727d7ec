"""Inbox queues on a real RabbitMQ: the streams of many agencies spread over several broker
connections, and a publish to an agency whose queue does not exist yet declares it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from aio_pika.abc import AbstractRobustConnection
from docaxis.exchange.v1 import events_pb2

from services.common import rabbit
from services.exchange.adapters.rabbit import OutboundMessage, RabbitInbox, RabbitPublisher
from services.exchange.service_layer.inbox_ports import InboxMessage
from tests.conftest import unique_code
from tests.infra import SuiteServices

pytestmark = pytest.mark.integration


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
