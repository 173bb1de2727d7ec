"""The messages a Receive stream consumes from its inbox channel, and their acks, coalesced.

Below aio-pika, on its aiormq channel: aio-pika's consumer turns every delivery into an
IncomingMessage (twenty-odd attribute writes through its `__setattr__`) in a second task, and
each `IncomingMessage.ack()` waits for its own basic.ack frame to be written. Here a delivery is
a `Delivery` made in aiormq's one task per message, and an ack only notes the delivery tag: the
tags settled during one pass of the event loop are sent together after it, as one basic.ack
with `multiple` for those that follow each other from the oldest unsettled delivery of the
channel (a group commit's copies, a stream's notices), one frame each for those behind a gap.
(docs/perf/README.md, "The RabbitMQ client per copy".)

An ack is noted only for a delivery its caller has settled (stored as acknowledged, or nothing
left to push), and `multiple` covers only tags noted so, never a delivery still unsettled: what
a stream has not settled when it ends is returned to the queue by its channel's close, as
before. A channel's due acks are sent before its Close (`ChannelAcks.close`): a frame on a
channel after its Close-Ok is a connection error for RabbitMQ (504, every stream on it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from collections.abc import Mapping

import aio_pika
import structlog
from aiormq.abc import AbstractChannel, DeliveredMessage

log = structlog.get_logger(__name__)

_GONE = (
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    aio_pika.exceptions.ConnectionClosed,
)


class ChannelAcks:
    """The settlements of one consuming channel: every delivery, in tag order, until settled."""

    def __init__(self, channel: AbstractChannel, sender: AckSender) -> None:
        self.channel = channel
        self._sender = sender
        # Delivered, oldest first; a tag leaves it once it is behind an ack sent with `multiple`.
        self._unsettled: deque[int] = deque()
        self._due: set[int] = set()  # acked, not sent yet
        self._sent: set[int] = set()  # settled on their own (behind a gap, or rejected)
        self._sending = asyncio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.channel.is_closed

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
        async with self._sending:  # before the channel's Close, should the stream end meanwhile
            await self.channel.basic_reject(tag, requeue=requeue)
        # Only once written: a later ack with `multiple` then comes after it on the wire.
        self._sent.add(tag)

    async def send(self) -> None:
        async with self._sending:
            await self._send()

    async def close(self) -> None:
        """Sends what is due; nothing is acked on this channel afterwards (ChannelInvalidStateError:
        its close returns to the queue whatever was not settled). Before the channel's Close."""
        self._closed = True
        async with self._sending:
            with contextlib.suppress(*_GONE):
                await self._send()

    async def _send(self) -> None:
        if not self._due:
            return
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
        if self.channel.is_closed:
            return  # the broker returned them to the queue; the database says they are done
        if top is not None:
            await self.channel.basic_ack(top, multiple=True, wait=False)
        for tag in behind:
            await self.channel.basic_ack(tag, wait=False)


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
                acks = next(iter(self._due))
                del self._due[acks]
                try:
                    await acks.send()
                except _GONE:
                    pass  # requeued by the broker, skipped when pushed again
                except Exception as exc:  # noqa: BLE001 - the other channels' acks still go
                    log.warning("inbox_acks_not_sent", channel=str(acks.channel), error=repr(exc))
        finally:
            self._task = None


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
