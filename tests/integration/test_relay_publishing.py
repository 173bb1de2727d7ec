"""The relay's publishing channel on a real RabbitMQ (rabbit_publishing below aio-pika): a batch
returns only once the broker confirmed every message, acks with `multiple` counted for every
tag they cover; a nack or the broker closing the channel fails the batch, no confirm within the
bound holds it on its channel, set aside, and either way the next one goes on a new channel; a
message the exchange cannot route (no queue for its agency yet) comes back, its queue is
declared and it goes again, in order with the rest of its agency's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import aiormq
import pamqp.frame
import pytest
from aio_pika.abc import AbstractRobustConnection
from pamqp import commands as spec

from services.common import rabbit
from services.exchange.adapters import rabbit_publishing
from services.exchange.adapters.rabbit import (
    INBOX_EXCHANGE,
    InboxQueues,
    PublishingChannel,
    declare_topology,
    inbox_queue_name,
)
from tests.conftest import unique_code
from tests.infra import SuiteServices
from tests.integration.test_inbox_connections import delivery_to
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def connection(services: SuiteServices) -> AsyncIterator[AbstractRobustConnection]:
    own = await rabbit.connect(services.amqp_url, name=f"test-relay-publishing-{uuid.uuid4()}")
    try:
        yield own
    finally:
        await own.close()


async def _held(connection: AbstractRobustConnection, agency: str) -> list[str]:
    """The message ids in the agency's queue, in order (taken off it)."""
    channel = await rabbit.open_channel(connection)
    try:
        queue = await channel.declare_queue(inbox_queue_name(agency), passive=True)
        held = []
        while (message := await queue.get(fail=False)) is not None:
            held.append(message.message_id or "")
            await message.ack()
        return held
    finally:
        await channel.close()


async def _declared(connection: AbstractRobustConnection, *agencies: str) -> None:
    channel = await rabbit.open_channel(connection)
    try:
        exchange = await declare_topology(channel)
        for agency in agencies:
            await InboxQueues().declare(channel, exchange, agency)
    finally:
        await channel.close()


async def test_a_batch_returns_once_acks_with_multiple_answered_every_message(
    connection: AbstractRobustConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    agency = unique_code()
    await _declared(connection, agency)
    answers: list[tuple[int, bool]] = []
    answer = rabbit_publishing.InFlight.answer

    def recorded(batch: rabbit_publishing.InFlight, tag: int, **kw: bool) -> None:
        answers.append((tag, kw["multiple"]))
        answer(batch, tag, **kw)

    monkeypatch.setattr(rabbit_publishing.InFlight, "answer", recorded)
    lane = PublishingChannel(connection)
    sent = [delivery_to(agency) for _ in range(1000)]
    try:
        await lane.publish_batch(sent)
        answered_then = list(answers)
    finally:
        await lane.close()
    # Every tag of the batch (1..1000 on a new channel) was answered before it returned, some
    # by an ack with `multiple` that covered tags the broker did not ack one by one.
    covered: set[int] = set()
    for tag, multiple in answered_then:
        covered |= set(range(1, tag + 1)) if multiple else {tag}
    assert covered >= set(range(1, 1001))
    assert any(multiple for _, multiple in answered_then)
    assert len(answered_then) < 1000
    assert await _held(connection, agency) == [m.message_id for m in sent]


async def test_a_broker_nack_fails_the_batch_and_the_next_goes_on_a_new_channel(
    connection: AbstractRobustConnection,
) -> None:
    """A full quorum queue that rejects publishes (x-max-length 1, x-overflow reject-publish)
    and holds more already: it nacks the next, the batch fails and its channel is dropped."""
    full, other = unique_code(), unique_code()
    await _declared(connection, other)
    setup = await rabbit.open_channel(connection)
    queue = await setup.declare_queue(
        inbox_queue_name(full),
        durable=True,
        arguments={"x-queue-type": "quorum", "x-max-length": 1, "x-overflow": "reject-publish"},
    )
    await queue.bind(INBOX_EXCHANGE, routing_key=full)
    lane = PublishingChannel(connection)
    try:
        # Quorum queues reject once over the limit: these two take it over.
        await lane.publish_batch([delivery_to(other), delivery_to(full), delivery_to(full)])
        first = lane._channel  # which channel the lane holds
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await lane.publish_batch([delivery_to(full) for _ in range(3)])
        assert first is not None
        assert lane._channel is None

        async def closed() -> bool:  # in the background: the batch does not wait for it
            return first.is_closed

        await eventually(closed, within=10)
        again = delivery_to(other)
        await lane.publish_batch([again])
        assert lane._channel is not first
        assert (await _held(connection, other))[-1] == again.message_id
    finally:
        await lane.close()
        await queue.delete(if_unused=False, if_empty=False)
        await setup.close()


async def test_unroutable_messages_come_back_and_go_again_in_order_once_their_queue_exists(
    connection: AbstractRobustConnection,
) -> None:
    known, newcomer = unique_code(), unique_code()
    await _declared(connection, known)
    sent = [delivery_to(a) for a in (known, newcomer, known, newcomer, newcomer, known)]
    lane = PublishingChannel(connection)
    try:
        await lane.publish_batch(sent)
    finally:
        await lane.close()
    assert await _held(connection, newcomer) == [sent[i].message_id for i in (1, 3, 4)]
    assert await _held(connection, known) == [sent[i].message_id for i in (0, 2, 5)]


async def test_the_broker_closing_the_channel_mid_batch_fails_it_and_the_next_goes_on_a_new_one(
    connection: AbstractRobustConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's write is preceded by an ack of a delivery tag the channel never had: RabbitMQ
    closes the channel (406 PRECONDITION_FAILED) with the batch in flight and never confirms
    it. The batch fails with the close, not after the stall bound (30 s here)."""
    agency = unique_code()
    await _declared(connection, agency)
    publish = rabbit_publishing.ChannelConfirms.publish

    async def broken(
        confirms: rabbit_publishing.ChannelConfirms, payload: bytes, ids: Sequence[str]
    ) -> rabbit_publishing.InFlight:
        bogus = spec.Basic.Ack(delivery_tag=1_000_000)
        return await publish(
            confirms, pamqp.frame.marshal(bogus, confirms.channel.number) + payload, ids
        )

    lane = PublishingChannel(connection, stalled_after_s=30)
    try:
        await lane.publish_batch([delivery_to(agency)])
        first = lane._channel
        with monkeypatch.context() as patched:
            patched.setattr(rabbit_publishing.ChannelConfirms, "publish", broken)
            with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
                async with asyncio.timeout(10):
                    await lane.publish_batch([delivery_to(agency) for _ in range(3)])
        after = delivery_to(agency)
        await lane.publish_batch([after])
        assert lane._channel is not first
        assert (await _held(connection, agency))[-1] == after.message_id
    finally:
        await lane.close()


async def test_a_batch_not_confirmed_within_the_bound_is_held_on_its_channel(
    services: SuiteServices, connection: AbstractRobustConnection
) -> None:
    """A memory alarm (high watermark 0) makes RabbitMQ stop reading from publishing
    connections: the batch is written and not confirmed within the bound (1 s). It is held: its
    channel is set aside, still waiting for the confirm, and the next batch goes on a new one.
    Once the alarm clears, the held message is confirmed there, and queued once."""
    agency = unique_code()
    await _declared(connection, agency)
    lane = PublishingChannel(connection, stalled_after_s=1.0)
    sent = [delivery_to(agency), delivery_to(agency), delivery_to(agency)]
    await lane.publish_batch(sent[:1])
    first = lane._channel
    services.rabbitmqctl("set_vm_memory_high_watermark", "0")
    try:
        async with asyncio.timeout(30):
            held = await lane.publish_batch(sent[1:2])
        assert held is not None
        assert list(held.messages) == sent[1:2]
        assert not held.confirmed.done()
        assert await _lane_dropped(lane)
    finally:
        services.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    try:
        async with asyncio.timeout(30):
            assert await held.confirmed == sent[1:2]
        assert await lane.publish_batch(sent[2:]) is None
        assert lane._channel is not first
        assert await _held(connection, agency) == [m.message_id for m in sent]
    finally:
        await lane.close()


async def _lane_dropped(lane: PublishingChannel) -> bool:
    return lane._channel is None
