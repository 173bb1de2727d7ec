"""A publishing channel's batches below aio-pika: written at once, confirmed by delivery tag.

Through aio-pika each message of a relay batch was a task, an `aio_pika.Message`, aio-pika's
`exchange.publish` and aiormq's `basic_publish` (the channel's lock, a confirmation future, a
drain future, a frame put on the connection's writer queue and written by its own `write`), then
aiormq's confirm handling (for an ack with `multiple`, a scan of every pending confirmation and a
callback per tag). Here the frames of a whole batch are one payload put on the connection's
writer queue once, and the channel's confirms (Basic.Ack/Nack, `multiple` covering every tag up
to it) and returns (Basic.Return) are tracked by tag range, one counter per batch.
(docs/perf/README.md, "The relay's publishing below aio-pika".)

The channel is in confirm mode and its publishes are this module's alone: aiormq's own
`basic_publish` on it would wait for a confirmation that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aiormq
import pamqp.frame
import structlog
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from services.exchange.adapters.aiormq_private import ConfirmFrame, intercept, next_frame

log = structlog.get_logger(__name__)

_ACKED, _NACKED = 1, 2  # a tag's answer in InFlight._answered (0: none yet)


class InFlight:
    """A batch written on a channel: the tags `first` .. `first + size - 1`, each answered once
    (an ack or a nack, on its own or covered by one with `multiple`), and those returned."""

    def __init__(self, first: int, message_ids: Sequence[str]) -> None:
        self.first = first
        self.last = first + len(message_ids) - 1
        self.remaining = len(message_ids)
        self.returned: set[int] = set()  # indexes into the batch
        self.failure: BaseException | None = None
        self._message_ids = message_ids
        self._answered = bytearray(len(message_ids))
        self._floor = first - 1  # every tag up to it is answered
        self._returned_from = 0  # the next Return's message is from here on, in publish order
        self._closed = False  # the channel closed: tags not answered yet never will be
        self._progress = asyncio.Event()

    def answer(self, tag: int, *, multiple: bool, nacked: bool) -> None:
        answer = _NACKED if nacked else _ACKED
        if multiple:
            top = min(tag, self.last)
            if top <= self._floor:
                return
            answered = self._answered
            for index in range(self._floor + 1 - self.first, top + 1 - self.first):
                if not answered[index]:
                    answered[index] = answer
                    self.remaining -= 1
            self._floor = top
        elif self.first <= tag <= self.last and not self._answered[tag - self.first]:
            self._answered[tag - self.first] = answer
            self.remaining -= 1
        else:
            return
        while self._floor < self.last and self._answered[self._floor + 1 - self.first]:
            self._floor += 1
        if nacked and self.failure is None:
            nack = spec.Basic.Nack(delivery_tag=tag, multiple=multiple)
            self.failure = aiormq.exceptions.DeliveryError(None, nack)
        self._progress.set()

    def came_back(self, message_id: str) -> bool:
        """Marks the message a Basic.Return names: of those with its id, the first not answered
        nor returned yet (a Return comes before its message's ack, in publish order); False if
        none is. Searched from the last one returned: a batch whose every message comes back
        (a circular to communes without a queue) is one pass, not one per Return."""
        ids, answered = self._message_ids, self._answered
        for start in (self._returned_from, 0):
            for index in range(start, len(ids)):
                if ids[index] == message_id and not answered[index] and index not in self.returned:
                    self.returned.add(index)
                    self._returned_from = index + 1
                    self._progress.set()
                    return True
        return False

    def fail(self, failure: BaseException) -> None:
        """The channel closed."""
        if self.failure is None:
            self.failure = failure
        self._closed = True
        self._progress.set()

    def acked(self) -> list[int]:
        """The indexes of the messages acked (queued) and not returned, so far."""
        answered, returned = self._answered, self.returned
        return [i for i, a in enumerate(answered) if a == _ACKED and i not in returned]

    async def outcome(self, within_s: float) -> list[int]:
        """Waits, at most `within_s`, until every message is answered or the channel closed,
        nacks included; then `acked()`. What is still unanswered may yet be queued: only a
        closed channel settles it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self.remaining and not self._closed:
                    await self._progress.wait()
                    self._progress.clear()
        return self.acked()

    async def settled(self, stalled_after_s: float) -> set[int]:
        """Waits until every message is answered; the indexes of those returned. Raises the
        first failure (a nack, the channel closed) as soon as it comes, and TimeoutError once
        `stalled_after_s` pass without any answer."""
        while True:
            if self.failure is not None:
                raise self.failure
            if not self.remaining:
                return self.returned
            try:
                async with asyncio.timeout(stalled_after_s):
                    await self._progress.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"no confirm in {stalled_after_s} s, {self.remaining} waiting"
                ) from None
            self._progress.clear()


class ChannelConfirms:
    """Publishes batches on one aiormq channel in confirm mode and tracks their confirms."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        if not isinstance(channel, aiormq.Channel) or not channel.publisher_confirms:
            raise TypeError(f"{channel!r}: an aiormq channel in confirm mode is needed")
        self.channel = channel
        self._batches: list[InFlight] = []
        self._closed: BaseException | None = None
        intercept(channel, self._on_confirm, self._on_return)
        channel.closing.add_done_callback(self._on_closed)

    async def publish(self, payload: bytes, message_ids: Sequence[str]) -> InFlight:
        """Writes `payload` (the marshalled frames of `message_ids`' messages, in order) as one
        write; the batch, whose confirms are then tracked."""
        channel = self.channel
        async with channel.lock:  # refuses a closed channel: no frame after its Close
            if self._closed is not None:
                raise self._closed
            batch = InFlight(channel.delivery_tag + 1, message_ids)
            channel.delivery_tag = batch.last
            self._batches.append(batch)
            try:
                await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
            except BaseException:
                # Not written: the broker has not seen these tags, the next batch takes them.
                channel.delivery_tag = batch.first - 1
                self._batches.remove(batch)
                raise
        return batch

    def forget(self, batch: InFlight) -> None:
        if batch in self._batches:
            self._batches.remove(batch)

    async def _on_confirm(self, frame: ConfirmFrame) -> None:
        tag, multiple = frame.delivery_tag, frame.multiple
        nacked = isinstance(frame, spec.Basic.Nack)
        for batch in self._batches:
            if batch.first <= tag:
                batch.answer(tag, multiple=multiple, nacked=nacked)

    async def _on_return(self, frame: spec.Basic.Return) -> None:
        header = await next_frame(self.channel)
        if not isinstance(header, ContentHeader):
            raise ValueError(f"unexpected frame {header!r} after {frame!r}")
        remaining = header.body_size
        while remaining > 0:
            body = await next_frame(self.channel)
            if not isinstance(body, ContentBody):
                raise ValueError(f"unexpected frame {body!r} in a returned message")
            remaining -= len(body.value)
        message_id = header.properties.message_id or ""
        if not any(batch.came_back(message_id) for batch in self._batches):
            log.warning("publish_return_unmatched", message_id=message_id, reply=frame.reply_text)

    def _on_closed(self, closing: asyncio.Future[object]) -> None:
        reason = None if closing.cancelled() else closing.exception()
        closed = aiormq.exceptions.ChannelInvalidStateError(
            f"publishing channel {self.channel.number} closed: {reason!r}"
        )
        self._closed = closed
        for batch in self._batches:
            batch.fail(closed)


def marshal_publish(
    channel: aiormq.Channel,
    parts: list[bytes],
    *,
    exchange: str,
    routing_key: str,
    properties: spec.Basic.Properties,
    body: bytes,
) -> None:
    """Appends one mandatory message's frames (Basic.Publish, its content header, its body in
    frames no larger than the connection's frame_max) to `parts`, as aiormq's basic_publish
    marshals them."""
    number = channel.number
    publish = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
    parts.append(pamqp.frame.marshal(publish, number))
    header = ContentHeader(body_size=len(body), properties=properties)
    parts.append(pamqp.frame.marshal(header, number))
    largest = channel.max_content_size
    for start in range(0, len(body), largest):
        parts.append(pamqp.frame.marshal(ContentBody(body[start : start + largest]), number))
