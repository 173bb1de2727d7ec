"""The messages a Receive stream consumes from its inbox channel, and their acks, coalesced.

Below aio-pika, on its aiormq channel: aio-pika's consumer turns every delivery into an
IncomingMessage (twenty-odd attribute writes through its `__setattr__`) in a second task, and
each `IncomingMessage.ack()` waits for its own basic.ack frame to be written. Here a delivery is
a `Delivery` made in aiormq's one task per message, and an ack only notes the delivery tag: the
tags settled during one pass of the event loop are sent together after it, as one basic.ack
with `multiple` for those that follow each other from the oldest unsettled delivery of the
channel (a group commit's copies, a stream's notices), one frame each for those behind a gap.
(docs/perf/README.md, "The RabbitMQ client per copy".) The frames of every channel with acks
due after that pass are one payload per connection, put once on its writer's queue (one
`write`): a group commit answers many streams at once, each on its own channel, and each
channel's frame was a `basic_ack` call, a frame marshalled by pamqp, a queue put and a write of
its own (docs/perf/README.md, "The acknowledgement path per copy").

An ack is noted only for a delivery its caller has settled (stored as acknowledged, or nothing
left to push), and `multiple` covers only tags noted so, never a delivery still unsettled: what
a stream has not settled when it ends is returned to the queue by its channel's close, as
before. A channel's due acks are sent before its Close (`ChannelAcks.close`): a frame on a
channel after its Close-Ok is a connection error for RabbitMQ (504, every stream on it).
"""

from __future__ import annotations

import asyncio
import bisect
import struct
from collections import deque
from collections.abc import Mapping, Sequence

import aio_pika
import structlog
from aiormq.abc import AbstractChannel, ChannelFrame, DeliveredMessage

from services.exchange.adapters.aiormq_private import close_event

log = structlog.get_logger(__name__)

# A basic.ack method frame (AMQP 0-9-1, 4.2.3): type 1, the channel, the payload's size (13),
# class 60 (basic) method 80 (ack), the delivery tag, the `multiple` bit, the frame end. What
# pamqp.frame.marshal gives for spec.Basic.Ack (tests/unit/exchange/test_ack_frames.py).
_ACK_FRAME = struct.Struct(">BHIHHQBB")


def ack_frame(channel: int, tag: int, *, multiple: bool) -> bytes:
    """The bytes of one basic.ack frame on `channel`."""
    return _ACK_FRAME.pack(1, channel, 13, 60, 80, tag, multiple, 0xCE)


class ChannelAcks:
    """The settlements of one consuming channel: every delivery, in tag order, until settled."""

    def __init__(self, channel: AbstractChannel, sender: AckSender) -> None:
        self.channel = channel
        self._closing = close_event(channel)
        self._sender = sender
        # Delivered, oldest first; a tag leaves it once it is behind an ack sent with `multiple`.
        self._unsettled: deque[int] = deque()
        self._due: set[int] = set()  # acked, not sent yet
        self._sent: set[int] = set()  # settled on their own (behind a gap, or rejected)
        # Held while acks are taken and until their frames are on the writer's queue, and while a
        # reject is written: whatever comes after (a `multiple`, the channel's Close) follows them.
        self.sending = asyncio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.channel.is_closed

    @property
    def _writable(self) -> bool:
        return not (self.channel.is_closed or self._closing.is_set())

    def delivered(self, tag: int) -> None:
        if self._unsettled and tag < self._unsettled[-1]:
            # Not seen: aiormq runs the deliveries' tasks in the order they came.
            bisect.insort(self._unsettled, tag)
        else:
            self._unsettled.append(tag)

    def ack(self, tag: int) -> None:
        """Sent after this pass of the event loop, with every other ack of the pass."""
        if self.closed:
            raise aio_pika.exceptions.ChannelInvalidStateError(f"{self.channel!r} closed")
        self._due.add(tag)
        self._sender.due(self)

    async def reject(self, tag: int, *, requeue: bool) -> None:
        if self.closed:
            raise aio_pika.exceptions.ChannelInvalidStateError(f"{self.channel!r} closed")
        async with self.sending:  # before the channel's Close, should the stream end meanwhile
            await self.channel.basic_reject(tag, requeue=requeue)
        # Only once written: a later ack with `multiple` then comes after it on the wire.
        self._sent.add(tag)

    async def close(self) -> None:
        """Sends what is due; nothing is acked on this channel afterwards (ChannelInvalidStateError:
        its close returns to the queue whatever was not settled). Before the channel's Close."""
        self._closed = True
        async with self.sending:
            await write_acks([self])

    def take(self) -> bytes:
        """The basic.ack frames of the acks due, taken off the books: one with `multiple` for
        those that follow each other from the oldest unsettled delivery, one for each behind a
        gap; none once the channel is closing (the broker returns them to the queue; the
        database says they are done). Only under `sending`, until they are on the writer's
        queue: the channel's Close (after close()) and a reject come after them on the wire."""
        if not self._due:
            return b""
        top: int | None = None
        while self._unsettled:
            tag = self._unsettled[0]
            if tag in self._due:
                self._due.remove(tag)
                top = tag
            elif tag in self._sent:
                self._sent.remove(tag)  # settled already: not outstanding, `multiple` may pass it
            else:
                break  # unsettled: no ack with `multiple` may reach it
            self._unsettled.popleft()
        behind = sorted(self._due)
        self._due.clear()
        self._sent.update(behind)
        if not self._writable:
            return b""
        number = self.channel.number
        frames = [ack_frame(number, tag, multiple=False) for tag in behind]
        if top is not None:
            frames.insert(0, ack_frame(number, top, multiple=True))
        return b"".join(frames)


async def write_acks(channels: Sequence[ChannelAcks]) -> None:
    """The acks due on `channels`, each held under its `sending`, as one write per connection:
    their frames in one payload on the connection's writer queue."""
    payloads: dict[asyncio.Queue[ChannelFrame], list[bytes]] = {}
    for acks in channels:
        frames = acks.take()
        if frames:
            queue = acks.channel.connection.write_queue
            payloads.setdefault(queue, []).append(frames)
    for queue, parts in payloads.items():
        await queue.put(ChannelFrame(payload=b"".join(parts), should_close=False))


class AckSender:
    """Sends the acks of every channel that has some due, in one task after the pass of the event
    loop that made them due (a group commit answers many streams at once)."""

    def __init__(self) -> None:
        self._due: dict[ChannelAcks, None] = {}
        self._task: asyncio.Task[None] | None = None

    def due(self, acks: ChannelAcks) -> None:
        self._due[acks] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._due:
                # Every channel with acks due, in one write per connection.
                due = list(self._due)
                self._due.clear()
                await self._send(due)
        finally:
            self._task = None

    @staticmethod
    async def _send(due: Sequence[ChannelAcks]) -> None:
        held: list[ChannelAcks] = []
        try:
            for acks in due:
                # Free at once, but for a reject being written or a stream's close sending its
                # own acks (then nothing is due here any more).
                await acks.sending.acquire()
                held.append(acks)
            await write_acks(held)
        except Exception as exc:  # noqa: BLE001 - taken and not written: the broker returns them
            log.warning("inbox_acks_not_sent", channels=len(held), error=repr(exc))
        finally:
            for acks in held:
                acks.sending.release()


class Delivery:
    """A message consumed from an inbox queue: what the stream reads of it, and its settlement
    (the inbox_ports.BrokerMessage the streams hold)."""

    __slots__ = ("_acks", "_settled", "body", "headers", "tag", "type")

    def __init__(self, message: DeliveredMessage, acks: ChannelAcks) -> None:
        properties = message.header.properties
        self._acks = acks
        self._settled = False
        self.body: bytes = message.body
        self.headers: Mapping[str, object] = properties.headers or {}
        self.type: str | None = properties.message_type
        tag = message.delivery_tag
        if tag is None:  # a consumer's messages always have one (basic.deliver)
            raise ValueError(f"no delivery tag: {message.delivery!r}")
        self.tag = tag
        acks.delivered(tag)

    async def ack(self) -> None:
        """Noted at once, sent after this pass of the event loop (ChannelAcks)."""
        self._check()
        self._acks.ack(self.tag)
        self._settled = True

    async def reject(self, requeue: bool = False) -> None:
        self._check()
        self._settled = True
        await self._acks.reject(self.tag, requeue=requeue)

    def _check(self) -> None:
        # A second settlement of a tag is a channel error for the broker (406): raised here, as
        # aio-pika's IncomingMessage does.
        if self._settled:
            raise aio_pika.exceptions.MessageProcessError("Message already processed", self)
