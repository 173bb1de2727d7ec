"""Stream channels left idle (adapters/rabbit.py, RabbitInbox.close_idle) on a real RabbitMQ:
one idle past the window is closed, and a connection opened for streams with it once it holds
no channel; one a stream took again within the window is kept; a stream that starts while the
sweep closes channels gets a working one. The inbox's clock is the test's, so that "past the
window" does not depend on the machine's speed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.common import rabbit
from services.exchange.adapters.rabbit import CLOSED_AT_ONCE, RabbitInbox, RabbitPublisher
from tests.conftest import unique_code
from tests.infra import SuiteServices
from tests.integration.test_inbox_connections import _channels_of, delivery_to, started
from tests.waiting import eventually

pytestmark = pytest.mark.integration

WINDOW_S = 60.0


class Clock:
    """The inbox's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Broker:
    """An inbox on a connection of its own, named `name`, with the test's clock, and a
    publisher on another connection (so that only streams hold channels on `own`)."""

    name: str
    own: AbstractRobustConnection
    inbox: RabbitInbox
    publisher: RabbitPublisher
    clock: Clock

    @classmethod
    @asynccontextmanager
    async def of(cls, services: SuiteServices) -> AsyncIterator[Broker]:
        name = f"test-idle-{uuid.uuid4()}"
        own = await rabbit.connect(services.amqp_url, name=name)
        publishing = await rabbit.connect(services.amqp_url, name=f"{name}-publish")
        publisher = RabbitPublisher(publishing)
        clock = Clock()
        try:
            yield cls(name, own, RabbitInbox(own, idle_s=WINDOW_S, clock=clock), publisher, clock)
        finally:
            await publisher.close()
            await publishing.close()
            await own.close()


async def channels(services: SuiteServices, name: str, expected: list[int]) -> None:
    """Waits until the broker's connections named `name` hold `expected` channels (its
    statistics follow a close after a moment)."""
    await eventually(lambda: asyncio.to_thread(_channels_of, services, name), expected.__eq__)


def table(connection: AbstractRobustConnection) -> list[object]:
    """The channels the client holds open on `connection` (aiormq's table): the same objects
    while no channel was closed and opened again."""
    assert connection.transport is not None
    return list(connection.transport.connection.channels.values())


async def ended(inbox: RabbitInbox, agencies: list[str]) -> None:
    """A stream for each agency, open at the same time, then all ended (their channels idle)."""
    async with contextlib.AsyncExitStack() as streams:
        for agency in agencies:
            await streams.enter_async_context(inbox.consume(agency))


async def test_channels_idle_past_the_window_are_closed_and_the_extra_connection_with_them(
    services: SuiteServices,
) -> None:
    """Three streams over two connections (two channels each at most) end; half the window
    later the sweep closes nothing; past it, every channel is closed on the broker and the
    connection opened for the third stream is closed too. Without the sweep, the channels of
    a burst of streams (the national circular's 3,000) stayed open as long as the process."""
    name = f"test-idle-{uuid.uuid4()}"
    own = await rabbit.connect(services.amqp_url, name=name)
    opened: list[AbstractRobustConnection] = []

    async def connect() -> AbstractRobustConnection:
        connection = await rabbit.connect(services.amqp_url, name=f"{name}-streams")
        opened.append(connection)
        return connection

    clock = Clock()
    inbox = RabbitInbox(
        own, connect=connect, channels_per_connection=2, idle_s=WINDOW_S, clock=clock
    )
    try:
        await ended(inbox, [unique_code() for _ in range(3)])
        await channels(services, name, [2])
        await channels(services, f"{name}-streams", [1])
        clock.now += WINDOW_S / 2
        await inbox.close_idle()
        assert _channels_of(services, name) == [2]
        assert _channels_of(services, f"{name}-streams") == [1]
        clock.now += WINDOW_S
        await inbox.close_idle()
        await channels(services, name, [0])
        assert [c.is_closed for c in opened] == [True]
        await channels(services, f"{name}-streams", [])
        # The next stream opens a channel again, on the process's own connection.
        await ended(inbox, [unique_code()])
        await channels(services, name, [1])
        assert len(opened) == 1
    finally:
        await inbox.close()
        await own.close()


async def test_a_channel_a_stream_took_again_within_the_window_is_kept(
    services: SuiteServices,
) -> None:
    """A channel idle since its first stream for longer than the window, but taken again by a
    second stream within it, is still open after a sweep and serves a third stream; idle past
    the window since the second, it is closed."""
    agency = unique_code()
    async with Broker.of(services) as broker:
        inbox, clock = broker.inbox, broker.clock
        await ended(inbox, [agency])
        clock.now += WINDOW_S * 0.75
        await ended(inbox, [agency])
        clock.now += WINDOW_S * 0.75  # 1.5 windows after the first stream, 0.75 the second
        kept = table(broker.own)
        assert len(kept) == 1
        await inbox.close_idle()
        await broker.publisher.publish_batch([sent := delivery_to(agency)])
        async with inbox.consume(agency) as third, asyncio.timeout(15):
            assert [c is k for c, k in zip(table(broker.own), kept, strict=True)] == [True]
            (got,) = await third.batch(10)
            assert got.delivery_id == sent.message_id
            await got.message.ack()
        assert _channels_of(services, broker.name) == [1]
        clock.now += WINDOW_S * 1.01
        await inbox.close_idle()
        await channels(services, broker.name, [0])


async def test_streams_that_start_while_the_sweep_closes_channels_get_working_ones(
    services: SuiteServices,
) -> None:
    """Two sweeps' groups of channels idle past the window; the sweep takes the oldest group
    off to close it, and before the broker has answered, twelve streams start: eight take the
    other idle channels, four open new ones, and each gets its message on its channel. Then
    the broker holds those twelve channels, no more (the sweep closed the first group) and no
    fewer (none of the streams' was closed under it)."""
    idle, starting = 2 * CLOSED_AT_ONCE, CLOSED_AT_ONCE + CLOSED_AT_ONCE // 2
    agencies = [unique_code() for _ in range(starting)]

    async def stream(inbox: RabbitInbox, agency: str, ready: asyncio.Event) -> str:
        async with inbox.consume(agency) as attached:
            ready.set()
            (got,) = await attached.batch(10)
            await got.message.ack()
            return got.delivery_id

    async with Broker.of(services) as broker:
        inbox, clock = broker.inbox, broker.clock
        await ended(inbox, [unique_code() for _ in range(idle)])
        await channels(services, broker.name, [idle])
        clock.now += WINDOW_S * 2
        sweep = asyncio.create_task(inbox.close_idle())
        # Created after the sweep: each takes its channel once the sweep has taken its group.
        streams = await started(lambda agency, ready: stream(inbox, agency, ready), agencies)
        async with asyncio.timeout(30):
            sent = [delivery_to(agency) for agency in agencies]
            await broker.publisher.publish_batch(sent)
            got = await asyncio.gather(*streams)
            await sweep
        assert got == [m.message_id for m in sent]
        await channels(services, broker.name, [starting])
