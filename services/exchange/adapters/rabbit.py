"""RabbitMQ topology and transports for the exchange: inbox queues, publishing, consuming.

Every recipient agency has a durable quorum queue `docaxis.inbox.<code>` bound to the direct
exchange `docaxis.inbox` by its code. Messages carry references only (DeliveryQueued for a
document, NoticeQueued for a status or recall notice, told apart by the message type); the
documents, attachments and notices stay in Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage
from docaxis.exchange.v1 import events_pb2
from google.protobuf.message import DecodeError
from pamqp import commands as spec

from services.common import rabbit, tracing
from services.exchange.adapters import rabbit_publishing
from services.exchange.adapters.rabbit_deliveries import AckSender, ChannelAcks, Delivery
from services.exchange.adapters.rabbit_publishing import ChannelConfirms, marshal_publish
from services.exchange.service_layer.inbox_ports import BrokerMessage, InboxMessage

log = structlog.get_logger(__name__)

INBOX_EXCHANGE = "docaxis.inbox"
DEAD_LETTER_EXCHANGE = "docaxis.dead-letter"
DEAD_LETTER_QUEUE = "docaxis.dead-letter"
# How long a publishing channel may go without any progress (a confirm, a queue declared)
# before it counts as stuck: the batch fails, stays in the outbox, and the next one gets a new
# channel. Not a bound on a whole batch, whose time grows with its size and the broker's load.
PUBLISH_TIMEOUT_S = 10.0
NOTICE_MESSAGE_TYPE = events_pb2.NoticeQueued.DESCRIPTOR.full_name
# The relay's time of publish (its batch's now(), the copy's queued_at), in microseconds since
# the epoch: the push's claim records it (delivery.push) when the relay has not yet.
PUBLISHED_AT_HEADER = "x-docaxis-published-at"


def inbox_queue_name(agency_code: str) -> str:
    return f"docaxis.inbox.{agency_code}"


async def declare_topology(channel: AbstractChannel) -> AbstractExchange:
    """The inbox exchange and the dead-letter queue. Idempotent."""
    dead = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead)
    return await channel.declare_exchange(
        INBOX_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def declare_inbox(
    channel: AbstractChannel, exchange: AbstractExchange, agency_code: str
) -> AbstractQueue:
    # Quorum queues replicate and fsync; no broker delivery limit, because a DMS that
    # disconnects without acknowledging returns its messages and must get them again. The limit
    # is the exchange's own (DOCAXIS_MAX_PUSHES, counted in Postgres per copy): past it the copy
    # is dead-lettered and its message rejected into DEAD_LETTER_EXCHANGE.
    queue = await channel.declare_queue(
        inbox_queue_name(agency_code),
        durable=True,
        arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE},
    )
    await queue.bind(exchange, routing_key=agency_code)
    return queue


class InboxQueues:
    """Declares inbox queues single-flight within this process.

    RabbitMQ 3.10 answers declare-ok to a second declaration of a quorum queue that another
    declaration is still creating, before its Raft leader exists; a basic.consume in that window
    crashes the channel (rabbit_quorum_queue:consume {error,noproc}) and the broker closes the
    whole connection (541 INTERNAL_ERROR). Seen when the relay's first publish to an agency and
    that agency's Receive stream declared the same new queue at once. So the first declaration of
    a queue in this process creates it, and concurrent ones wait for it to finish.
    """

    def __init__(self) -> None:
        self._created: dict[str, asyncio.Future[None]] = {}
        self._topology_declared = False

    async def topology(self, channel: AbstractChannel) -> AbstractExchange:
        """The inbox exchange, declared on `channel`: declare_topology once per process, then
        the exchange alone. declare_topology binds the dead-letter queue, and a binding
        (existing or not) is a Mnesia write, which waits for every node: a hung one held a
        publisher's new channel until the node was back; declaring an exchange that exists
        answers at once (docs/perf, "A hung RabbitMQ node")."""
        if self._topology_declared:
            return await channel.declare_exchange(
                INBOX_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
            )
        exchange = await declare_topology(channel)
        self._topology_declared = True
        return exchange

    async def declare(
        self, channel: AbstractChannel, exchange: AbstractExchange, agency_code: str
    ) -> AbstractQueue:
        created = self._created.get(agency_code)
        if created is None:
            created = asyncio.get_running_loop().create_future()
            self._created[agency_code] = created
            try:
                queue = await declare_inbox(channel, exchange, agency_code)
            except BaseException:
                del self._created[agency_code]  # the next caller tries again
                created.cancel()
                raise
            created.set_result(None)
            return queue
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(created)
        return await declare_inbox(channel, exchange, agency_code)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    routing_key: str
    message_id: str
    message_type: str
    payload: bytes
    # The W3C trace context of the message's document (None: tracing off, or an older row).
    traceparent: str | None = None
    # The relay's time of publish (PUBLISHED_AT_HEADER).
    published_at: dt.datetime | None = None


class UnroutableError(aio_pika.exceptions.AMQPError):
    """Messages came back unroutable although their queues were just declared (deleted again
    meanwhile): the batch stays in the outbox and is tried again."""


# How long a channel set aside on a stall (PublishingChannel) goes on waiting for its held
# messages' confirms. Past the time a hung node takes to be declared down (net_ticktime 60 s:
# 45-75 s), when the channel's blocked process goes on; past it the messages not confirmed go
# again (at least once).
HELD_AT_MOST_S = 120.0


@dataclass(frozen=True, slots=True)
class Held:
    """Messages written on a channel that then stalled, not confirmed yet: the channel is set
    aside and goes on waiting for their confirms; `confirmed` is, once known, those of them the
    broker confirmed (an exception: none, they go again). Until then nothing more for their
    agencies may be published, or it could overtake them or (published again) repeat them."""

    messages: Sequence[OutboundMessage]
    confirmed: asyncio.Future[list[OutboundMessage]]


# Channels a publisher spreads each batch over, by routing key. On RabbitMQ 3.10 a channel's
# first publish to a quorum queue waits, in the channel's process, for a Raft command that
# registers it as the queue's enqueuer: a relay's first circular to 3,000 communes registered
# them one after the other on its one channel (3,000 messages to 3,000 quorum queues: the first
# batch on a channel 2.7 s, again 0.8 s). Several channels register in parallel.
PUBLISH_CHANNELS = 4


class RabbitPublisher:
    """Publishes batches with publisher confirms over PUBLISH_CHANNELS channels: every message
    of an agency on the same channel, so in order; the call returns when the broker has
    confirmed every message but those it returns held (a channel that stalled), and fails if
    any channel's share failed (the batch stays in the outbox and goes again, at least once, as
    consumers expect)."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queues: InboxQueues | None = None,
        *,
        stalled_after_s: float = PUBLISH_TIMEOUT_S,
        channels: int = PUBLISH_CHANNELS,
    ) -> None:
        queues = queues or InboxQueues()
        self._lanes = [
            PublishingChannel(connection, queues, stalled_after_s=stalled_after_s)
            for _ in range(channels)
        ]

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> list[Held]:
        shares: list[list[OutboundMessage]] = [[] for _ in self._lanes]
        for m in messages:
            shares[lane_of(m.routing_key, len(shares))].append(m)
        lanes = zip(self._lanes, shares, strict=True)
        published = await asyncio.gather(
            *(lane.publish_batch(share) for lane, share in lanes if share),
            return_exceptions=True,
        )
        held: list[Held] = []
        failed: list[tuple[list[OutboundMessage], BaseException]] = []
        for share, outcome in zip((share for share in shares if share), published, strict=True):
            if isinstance(outcome, BaseException):
                failed.append((share, outcome))
            elif outcome is not None:
                held.append(outcome)
        if failed and not held:
            raise failed[0][1]  # the whole batch goes again, as it always did
        # Beside a held share, a failed one is held too, already settled: none of it confirmed.
        return held + [Held(share, _failed(failure)) for share, failure in failed]

    async def close(self) -> None:
        for lane in self._lanes:
            await lane.close()


def _failed(failure: BaseException) -> asyncio.Future[list[OutboundMessage]]:
    settled: asyncio.Future[list[OutboundMessage]] = asyncio.get_running_loop().create_future()
    settled.set_exception(failure)
    return settled


def lane_of(routing_key: str, lanes: int) -> int:
    """The channel (of `lanes`) an agency's messages go on: the same one every time. BLAKE2b
    rather than CRC-32, which is linear: on agency codes, which differ in a few digits, CRC-32's
    low bits left a lane empty for 38 % of runs of 30 consecutive codes (BLAKE2b: 0.1 %)."""
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % lanes


class PublishingChannel:
    """Publishes batches with publisher confirms on one channel, pipelined: the whole batch is in
    flight at once and the call returns only when the broker has confirmed every message.

    Inbox queues are declared only when the broker says one is missing: every message is
    mandatory, so one the exchange cannot route (no queue for its agency yet) comes back; the
    queues of such messages are then declared and the batch's messages for them published
    again, in order. An inbox queue is durable and lives as long as its agency, so declaring
    before every first publish of a process (two round trips each, one after the other) would
    cost a circular to 3,000 communes seconds, for queues that already exist."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queues: InboxQueues | None = None,
        *,
        stalled_after_s: float = PUBLISH_TIMEOUT_S,
        held_at_most_s: float = HELD_AT_MOST_S,
    ) -> None:
        self._queues = queues or InboxQueues()
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._confirms: ChannelConfirms | None = None
        self._stalled_after_s = stalled_after_s
        self._held_at_most_s = held_at_most_s
        # Channels set aside (waiting for held confirms) or being closed.
        self._aside: set[asyncio.Task[None]] = set()

    async def _ready(self) -> tuple[AbstractChannel, AbstractExchange]:
        if self._channel is None or self._channel.is_closed or self._exchange is None:
            # Returns of unroutable messages reach the batch's tracking (rabbit_publishing).
            self._channel = await rabbit.open_channel(self._connection)
            self._exchange = await self._queues.topology(self._channel)
        return self._channel, self._exchange

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> Held | None:
        """None once every message is confirmed; the messages still waiting for their confirms
        when the channel stalled (no answer for `stalled_after_s`), held."""
        channel, exchange = await self._ready()
        stalled_after_s = self._stalled_after_s
        try:
            confirms = await self._confirms_of(channel)
            missing = await _publish_routed(confirms, messages, stalled_after_s)
            if missing:
                # Each queue within the bound, not all of them: the relay's batch of 1,000 to
                # agencies without a queue yet (a circular to communes that never connected)
                # took 13-17 s to declare, past the 10 s the whole batch once had; it failed,
                # and was published again from the start.
                for key in sorted(missing):
                    async with asyncio.timeout(stalled_after_s):
                        await self._queues.declare(channel, exchange, key)
                # Those that were routed meanwhile (a stream declared the queue during the
                # batch) go again too: in order, at least once, as consumers expect.
                again = [m for m in messages if m.routing_key in missing]
                unroutable = await _publish_routed(confirms, again, stalled_after_s)
                if unroutable:
                    raise UnroutableError(f"no queue for {sorted(unroutable)} once declared")
        except _StalledError as stalled:
            return self._set_aside(stalled)
        except (
            aio_pika.exceptions.DeliveryError,
            aio_pika.exceptions.ChannelInvalidStateError,
            UnroutableError,
            TimeoutError,
        ):
            # The next batch gets a new channel. RabbitMQ 3.10-3.12 (the local, test and bench
            # brokers) nack every publish of a channel to a quorum queue whose first publish
            # there came while the queue's record still named its leader on a node just lost:
            # the channel asks that dead node the queue's version at each publish, until the
            # node is back. A channel (or connection) whose first publish there comes once the
            # new leader is recorded, within a second of the loss, is accepted, and one that had
            # published there before is told of the new leader (docs/perf, "The publisher
            # through a quorum leader's death"; tests/integration/test_relay_leader_loss.py).
            self._drop_channel()
            raise
        return None

    def _set_aside(self, stalled: _StalledError) -> Held:
        """A stalled channel is set aside, not closed, and the next batch gets a new one. On
        RabbitMQ 3.10 a channel's first publish to a quorum queue whose leader's node hangs (a
        partition, a frozen VM) blocks the channel's process (an rpc:call without timeout)
        until the node is back or declared down (net_ticktime): nothing after it on that
        channel is confirmed, nor is its close. Publishing its messages again elsewhere would
        repeat them once it goes on; waiting here for them held every agency's copies (docs/perf,
        "A hung RabbitMQ node")."""
        channel, confirms = self._channel, self._confirms
        self._channel = self._exchange = self._confirms = None
        batch, sent = stalled.batch, stalled.messages
        acked = set(batch.acked())
        waiting = [i for i in range(len(sent)) if i not in acked]
        confirmed: asyncio.Future[list[OutboundMessage]] = (
            asyncio.get_running_loop().create_future()
        )

        async def wait_aside() -> None:
            try:
                late = await batch.outcome(self._held_at_most_s)
                confirmed.set_result([sent[i] for i in late if i not in acked])
            finally:
                if not confirmed.done():  # the wait cancelled (shutdown): none known confirmed
                    confirmed.cancel()
                if confirms is not None:
                    confirms.forget(batch)
                if channel is not None:
                    await _close(channel)

        self._in_background(wait_aside())
        log.warning("publish_held", messages=len(waiting), within_s=self._held_at_most_s)
        return Held([sent[i] for i in waiting], confirmed)

    def _in_background(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._aside.add(task)
        task.add_done_callback(self._aside.discard)

    async def _confirms_of(self, channel: AbstractChannel) -> ChannelConfirms:
        """The confirms of the channel's aiormq channel (a new one once aio-pika reopened it)."""
        underlay = await channel.get_underlay_channel()
        if self._confirms is None or self._confirms.channel is not underlay:
            self._confirms = ChannelConfirms(underlay)
        return self._confirms

    def _drop_channel(self) -> None:
        """The next batch gets a new channel; this one is closed in the background: its close
        waits for the channel's process, which a hung node may hold until it is declared down."""
        channel, self._channel, self._exchange = self._channel, None, None
        if channel is not None and not channel.is_closed:
            self._in_background(_close(channel))

    async def close(self) -> None:
        for task in list(self._aside):
            task.cancel()
        await asyncio.gather(*self._aside, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


class _StalledError(Exception):
    """No answer within the bound: `batch` (of `messages`) is still tracked by its channel."""

    def __init__(
        self, batch: rabbit_publishing.InFlight, messages: Sequence[OutboundMessage]
    ) -> None:
        super().__init__(f"no confirm in the bound, {batch.remaining} waiting")
        self.batch = batch
        self.messages = messages


async def _publish_routed(
    confirms: ChannelConfirms, messages: Sequence[OutboundMessage], stalled_after_s: float
) -> set[str]:
    """Publishes `messages` in one write and waits for every confirm; the routing keys of those
    the broker returned unroutable (their queue does not exist). A nack or the channel's close
    is raised as soon as it comes; a TimeoutError once `stalled_after_s` pass without any
    answer (_StalledError, the batch still tracked)."""
    if not messages:
        return set()
    channel = confirms.channel
    with contextlib.ExitStack() as spans:
        # Tracing off, the span would be a no-op that hands on its parent's context: the
        # message carries the row's traceparent as it is, with no span object per message.
        traced = tracing.recording()
        parts: list[bytes] = []
        for m in messages:
            headers: dict[str, object] = {}
            if traced:
                tracing.inject(headers, spans.enter_context(_publish_span(m)))
            elif m.traceparent:
                headers[tracing.TRACEPARENT] = m.traceparent
            if m.published_at is not None:
                headers[PUBLISHED_AT_HEADER] = _microseconds(m.published_at)
            marshal_publish(
                channel,
                parts,
                exchange=INBOX_EXCHANGE,
                routing_key=m.routing_key,
                properties=_properties(m, headers),
                body=m.payload,
            )
        batch = await confirms.publish(b"".join(parts), [m.message_id for m in messages])
        try:
            returned = await batch.settled(stalled_after_s)
        except TimeoutError:
            raise _StalledError(batch, messages) from None  # still tracked: confirms may come
        except BaseException:
            confirms.forget(batch)
            raise
        confirms.forget(batch)
    return {messages[index].routing_key for index in returned}


def _properties(m: OutboundMessage, headers: dict[str, object]) -> spec.Basic.Properties:
    """What aio_pika.Message(...) set: persistent, protobuf, the event's type and id."""
    return spec.Basic.Properties(
        content_type="application/x-protobuf",
        headers=headers,  # type: ignore[arg-type]
        delivery_mode=2,
        priority=0,
        message_id=m.message_id,
        message_type=m.message_type,
    )


def _publish_span(m: OutboundMessage) -> contextlib.AbstractContextManager[tracing.Span]:
    """One message's producer span in its document's trace, from its write to its confirm;
    its context travels in the message's `traceparent` header to the push."""
    return tracing.span(
        "docaxis.publish",
        parent={tracing.TRACEPARENT: m.traceparent} if m.traceparent else None,
        kind=tracing.SpanKind.PRODUCER,
        attributes={"messaging.destination.name": m.routing_key, "docaxis.item": m.message_id},
        current=False,
    )


class InFlight:
    """Messages pushed to a DMS and not yet acknowledged, by item id, across this process's
    Receive streams. An acknowledgement (on a stream or by Acknowledge) acks the broker message
    through it and tells the stream that pushed it (which frees a place in its window); a
    message whose stream has gone is requeued by the broker and then skipped because the
    database says it is done."""

    def __init__(self) -> None:
        self._messages: dict[str, tuple[BrokerMessage, Callable[[str], None] | None]] = {}

    def holds(self, item_id: str) -> bool:
        return item_id in self._messages

    def add(
        self,
        item_id: str,
        message: BrokerMessage,
        released: Callable[[str], None] | None = None,
    ) -> None:
        self._messages[item_id] = (message, released)

    def forget(self, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self._messages.pop(item_id, None)

    async def settle(self, item_id: str) -> None:
        held = self._messages.pop(item_id, None)
        if held is None:
            return
        message, released = held
        if released is not None:
            released(item_id)
        # Every way of acknowledging (Acknowledge, AcknowledgeBatch, on the stream) ends here.
        tracing.record_acknowledgement(item_id, message.headers)
        # If the stream's channel closed meanwhile, the broker requeued the message and the next
        # stream skips it, because the database says it is acknowledged.
        with contextlib.suppress(aio_pika.exceptions.ChannelInvalidStateError):
            await message.ack()


class InboxClosedError(aio_pika.exceptions.ChannelInvalidStateError):
    """The stream's channel closed under it (broker restart, failover, shutdown)."""


class Inbox:
    """One stream's view of its agency's inbox queue: messages in batches, as they arrive."""

    def __init__(self, acks: ChannelAcks) -> None:
        self._acks = acks
        # None: the consumer was stopped (shutdown); an exception: the channel closed.
        self._arrived: asyncio.Queue[Delivery | BaseException | None] = asyncio.Queue()
        self._ended: BaseException | None = None
        self._stopped = False

    async def deliver(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback (rabbit_deliveries: below aio-pika's IncomingMessage)."""
        self._arrived.put_nowait(Delivery(message, self._acks))

    async def closed(self, _queue: object, exc: BaseException | None) -> None:
        self._arrived.put_nowait(InboxClosedError(f"inbox channel closed: {exc!r}"))

    def stop(self) -> None:
        self._arrived.put_nowait(None)

    async def batch(self, max_items: int) -> list[InboxMessage]:
        """Waits for a message, then takes every other one already here, up to `max_items`
        (a message not ours to interpret is dead-lettered, never dropped). Empty once the
        consumer was stopped; raises InboxClosedError once the channel closed."""
        messages: list[Delivery] = []
        while not messages:
            if self._ended is not None:
                raise self._ended
            if self._stopped:
                return []
            arrived = await self._arrived.get()
            while True:
                if arrived is None:
                    self._stopped = True
                elif isinstance(arrived, BaseException):
                    self._ended = arrived
                else:
                    messages.append(arrived)
                if len(messages) >= max_items or self._arrived.empty() or arrived is None:
                    break
                arrived = self._arrived.get_nowait()
        parsed: list[InboxMessage] = []
        for message in messages:
            item = _parse(message)
            if item is None:
                await message.reject(requeue=False)
            else:
                parsed.append(item)
        return parsed


def _parse(message: Delivery) -> InboxMessage | None:
    event: events_pb2.NoticeQueued | events_pb2.DeliveryQueued = (
        events_pb2.NoticeQueued()
        if message.type == NOTICE_MESSAGE_TYPE
        else events_pb2.DeliveryQueued()
    )
    try:
        event.ParseFromString(message.body)
    except DecodeError:  # not a ValueError: caught as one, it ended the stream on every retry
        return None
    if isinstance(event, events_pb2.NoticeQueued):
        return InboxMessage("", message, notice_id=event.notice_id, addressee=event.agency)
    return InboxMessage(
        event.delivery_id,
        message,
        addressee=event.recipient,
        published_at=_published_at(message.headers.get(PUBLISHED_AT_HEADER)),
    )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _microseconds(at: dt.datetime) -> int:
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def _published_at(value: object) -> dt.datetime | None:
    """The header's time; None when absent (a message of an older relay: it marks the copy
    queued itself) or not a number."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return _EPOCH + dt.timedelta(microseconds=value)


# Stream channels on one broker connection at most. RabbitMQ allows 2,047 channels per
# connection by default (channel_max) and closes the whole connection, every stream on it
# included, when a client opens one more: a process holding the streams of thousands of agencies
# (every commune's DMS, connected all the time) spreads them over several connections.
STREAM_CHANNELS_PER_CONNECTION = 1000
# How long a stream channel waits idle for the next stream before it is closed
# (DOCAXIS_STREAM_CHANNEL_IDLE_S): long enough for a DMS that reconnects (a dropped stream, a
# restarted client) to find it, short enough that a burst of streams (the national circular's
# 3,000) does not leave as many channels, each a process on the broker, for good.
STREAM_CHANNEL_IDLE_S = 60.0
# Idle channels closed at once by a sweep, a group after the other: each close is a round trip
# and ~130 objects for the cyclic collector, so 3,000 expiring together go a few at a time
# between the loop's other work rather than in one burst.
CLOSED_AT_ONCE = 8


@dataclass(slots=True)
class _StreamChannel:
    """A stream channel, and what was set up on it (kept for the next stream once idle)."""

    channel: AbstractChannel
    prefetch: int = 0
    exchange: AbstractExchange | None = None  # None: the topology is not declared on it yet
    idle_since: float = 0.0  # the inbox's clock when its last stream ended


@dataclass(slots=True)
class _StreamConnection:
    connection: AbstractRobustConnection
    channels: int = 0  # stream channels open on it, in use or idle
    # Oldest first: a stream takes the newest, the sweep closes from the oldest.
    idle: list[_StreamChannel] = field(default_factory=list)


class RabbitInbox:
    """Consumes one agency's inbox queue for a Receive stream.

    Each stream has a channel of its own while it lasts, on `connection` while it holds fewer
    than `channels_per_connection` of them, then on further connections opened with `connect`
    (and closed by `close`). A stream that ends cancels its consumer and returns to the queue
    every message it did not settle (basic.recover), and its channel waits, idle, for the next
    stream: closing a channel per stream left ~100 objects of aiormq's close in reference
    cycles, 1.2-2.0 s of full collection on the event loop once 3,000 streams had ended
    (docs/perf/README.md, "The RabbitMQ client per copy"). `close_idle` (run every
    `sweep_interval_s`) closes the channels idle longer than `idle_s`, and a connection opened
    here once it holds none."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        prefetch: int = 32,
        queues: InboxQueues | None = None,
        connect: Callable[[], Awaitable[AbstractRobustConnection]] | None = None,
        channels_per_connection: int = STREAM_CHANNELS_PER_CONNECTION,
        idle_s: float = STREAM_CHANNEL_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queues = queues or InboxQueues()
        self._prefetch = prefetch
        self._open: dict[Inbox, tuple[AbstractQueue, str]] = {}
        # Every connection streams use, with how many stream channels it holds; the first is
        # the process's own, the others were opened here.
        self._connections = [_StreamConnection(connection)]
        self._connect = connect
        self._per_connection = channels_per_connection
        self._connecting = asyncio.Lock()
        self._acks = AckSender()
        self._idle_s = idle_s
        self._clock = clock

    @property
    def sweep_interval_s(self) -> float:
        """How often `close_idle` runs: a channel is closed between `idle_s` and 1.25 times
        that after its stream ended."""
        return self._idle_s / 4

    async def close_idle(self) -> None:
        """Closes the stream channels idle for longer than `idle_s`, CLOSED_AT_ONCE at a time,
        then every connection opened here that holds no channel any more. A stream that starts
        meanwhile takes an idle channel not being closed (the newest), or opens one."""
        expired = self._clock() - self._idle_s
        for held in list(self._connections):
            while held.idle and held.idle[0].idle_since <= expired:
                # Taken off the idle list before any await, so no stream can take them.
                group = list(
                    itertools.takewhile(
                        lambda lane: lane.idle_since <= expired, held.idle[:CLOSED_AT_ONCE]
                    )
                )
                del held.idle[: len(group)]
                # Shielded: a close cancelled midway makes aiormq send Channel.Close again,
                # and a second Close for a channel the broker closed is a connection error
                # (504), the end of every stream on the connection.
                await asyncio.shield(_close_all(held, group))
            extra = held is not self._connections[0] and held in self._connections
            if extra and held.channels == 0:
                # No await between the check and the removal: `_take` cannot pick it meanwhile.
                self._connections.remove(held)
                with contextlib.suppress(*_CHANNEL_GONE):
                    await asyncio.shield(held.connection.close())

    async def _take(self) -> tuple[_StreamConnection, _StreamChannel | None]:
        """A connection with an idle stream channel, or room for a new one."""
        async with self._connecting:
            for held in self._connections:
                while held.idle:
                    lane = held.idle.pop()
                    if not lane.channel.is_closed:
                        return held, lane
                    held.channels -= 1  # closed while idle: its connection dropped
            for held in self._connections:
                if held.channels < self._per_connection:
                    break
            else:
                if self._connect is None:
                    held = min(self._connections, key=lambda h: h.channels)
                else:
                    held = _StreamConnection(await self._connect())
                    self._connections.append(held)
            held.channels += 1
            return held, None

    @asynccontextmanager
    async def consume(
        self, agency_code: str, *, prefetch: int | None = None
    ) -> AsyncIterator[Inbox]:
        """`prefetch`: how many messages the broker hands this stream unacknowledged (the
        default window of a Receive stream)."""
        prefetch = prefetch or self._prefetch
        held, lane = await self._take()
        acks: ChannelAcks | None = None
        consumer: str | None = None
        try:
            if lane is None:
                # Not reopened by aio-pika: a stream whose channel closes (the connection
                # dropped, the broker closed it) ends, and its DMS opens a new stream. A robust
                # channel came back once the connection was restored, after its stream had
                # ended and returned its place: each drop of a connection holding 1,000 streams
                # left 1,000 such channels open on it beside the 1,000 of the streams opened
                # again, until RabbitMQ closed the connection at its channel_max (2,047).
                lane = _StreamChannel(await rabbit.open_channel(held.connection, reopened=False))
            channel = lane.channel
            if lane.prefetch != prefetch:
                await channel.set_qos(prefetch_count=prefetch)
                lane.prefetch = prefetch
            if lane.exchange is None:
                lane.exchange = await declare_topology(channel)
            queue = await self._queues.declare(channel, lane.exchange, agency_code)
            underlay = await channel.get_underlay_channel()
            acks = ChannelAcks(underlay, self._acks)
            inbox = Inbox(acks)
            queue.close_callbacks.add(inbox.closed)
            consuming = await underlay.basic_consume(queue.name, inbox.deliver)
            if consuming.consumer_tag is None:  # pamqp's type; the broker always names it
                raise aio_pika.exceptions.AMQPError("basic.consume-ok without a tag")
            consumer = consuming.consumer_tag
            self._open[inbox] = (queue, consumer)
            try:
                yield inbox
            finally:
                self._open.pop(inbox, None)
                queue.close_callbacks.discard(inbox.closed)
        finally:
            # Shielded: a stream is often cancelled again while it ends (its DMS gone), and
            # aiormq answers a cancelled RPC by closing the channel; a second Channel.Close for
            # a channel the broker had closed meanwhile makes RabbitMQ close the whole
            # connection (504 CHANNEL_ERROR - expected 'channel.open'), every stream on it (seen
            # in a full bench's push circular).
            await asyncio.shield(_release(held, lane, acks, consumer, self._clock))

    async def close_all(self) -> None:
        """Stops every stream's consumer (shutdown); unacked messages are requeued as their
        streams end."""
        for inbox, (queue, tag) in list(self._open.items()):
            with contextlib.suppress(*_CHANNEL_GONE):
                await queue.cancel(tag)
            inbox.stop()

    async def close(self) -> None:
        """Closes the connections opened for streams (the process's own is not this one's)."""
        for held in self._connections[1:]:
            with contextlib.suppress(*_CHANNEL_GONE):
                await held.connection.close()


async def _release(
    held: _StreamConnection,
    lane: _StreamChannel | None,
    acks: ChannelAcks | None,
    consumer: str | None,
    clock: Callable[[], float],
) -> None:
    """A stream's end: its due acks sent, its consumer cancelled (its last deliveries come
    before the broker's cancel-ok), then every delivery of the channel not settled returned to
    the queue (basic.recover with requeue, one round trip), and the channel idle for the next
    stream; closed instead (which returns them too) should any of that fail."""
    if lane is None:
        held.channels -= 1
        return
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            if acks is not None:
                await acks.close()  # the acks due go first, and none after
            underlay = await lane.channel.get_underlay_channel()
            if consumer is not None:
                await underlay.basic_cancel(consumer)
            await underlay.basic_recover(requeue=True)
    except Exception:  # noqa: BLE001 - closed, or in a state not worth keeping: not reused
        held.channels -= 1
        await _close(lane.channel)
        return
    lane.idle_since = clock()
    held.idle.append(lane)


async def _close_all(held: _StreamConnection, lanes: Sequence[_StreamChannel]) -> None:
    """Closes idle channels taken off their connection's list; they no longer count on it
    whatever the outcome (a failed close: the broker closes the channel with its connection)."""
    try:
        await asyncio.gather(*(_close(lane.channel) for lane in lanes))
    finally:
        held.channels -= len(lanes)


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(*_CHANNEL_GONE):
            await channel.close()


_CHANNEL_GONE = (
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    aio_pika.exceptions.ConnectionClosed,
)
