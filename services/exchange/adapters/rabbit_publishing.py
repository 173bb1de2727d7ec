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
import functools
import struct
from collections.abc import Sequence

import aiormq
import pamqp.constants
import structlog
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp import encode
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
    marshals them: the bytes pamqp writes (tests/unit/exchange/test_publish_frames.py compares
    them), packed here for the relay's shape of message (`_header_payload`), through pamqp for
    any other. pamqp's generic walk was about 200 Python calls a message, four a document."""
    number = channel.number
    method = _publish_method(exchange) + _short_string(routing_key) + b"\x01"  # mandatory
    header = _header_payload(properties, len(body))
    parts.append(_frame(pamqp.constants.FRAME_METHOD, number, method))
    parts.append(_frame(pamqp.constants.FRAME_HEADER, number, header))
    largest = channel.max_content_size
    for start in range(0, len(body), largest):
        parts.append(_frame(pamqp.constants.FRAME_BODY, number, body[start : start + largest]))


_FRAME_HEAD = struct.Struct(">BHI")  # type, channel, payload size
_CONTENT_HEAD = struct.Struct(">HxxQ")  # class (Basic), weight, body size
_UINT32 = struct.Struct(">I")
# A table's integers as pamqp.encode.table_integer writes them: the smallest type that holds it.
_TABLE_INTEGERS = (
    (-128, 127, b"b", struct.Struct(">b")),
    (-32768, 32767, b"s", struct.Struct(">h")),
    (0, 65535, b"u", struct.Struct(">H")),
    (-2147483648, 2147483647, b"I", struct.Struct(">l")),
    (0, 4294967295, b"i", struct.Struct(">L")),
    (-9223372036854775808, 9223372036854775807, b"l", struct.Struct(">q")),
)
# The properties the relay sets, in pamqp's order, with their flag bits; any other set (not
# None, not "") sends the message through pamqp's own marshalling.
_PACKED = (
    ("content_type", 0x8000),
    ("headers", 0x2000),
    ("delivery_mode", 0x1000),
    ("priority", 0x0800),
    ("message_id", 0x0080),
    ("message_type", 0x0020),
)
_SHORT_STRINGS = ("content_type", "message_id", "message_type")
_ABSENT = (
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "timestamp",
    "user_id",
    "app_id",
    "cluster_id",
)


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_FRAME_HEAD.pack(kind, channel, len(payload)), payload, b"\xce"))


def _short_string(value: str) -> bytes:
    if type(value) is not str or len(encoded := value.encode()) > 255:
        return encode.short_string(value)  # a subclass's bytes, or its TypeError
    return bytes((len(encoded),)) + encoded


@functools.lru_cache(maxsize=8)
def _publish_method(exchange: str) -> bytes:
    """Basic.Publish's payload up to its routing key: its index, the ticket and the exchange,
    the exchange checked by pamqp once."""
    publish = spec.Basic.Publish(exchange=exchange, mandatory=True)  # validates the name
    return _UINT32.pack(publish.index) + b"\x00\x00" + _short_string(exchange)


def _header_payload(properties: spec.Basic.Properties, body_size: int) -> bytes:
    """The content header's payload; pamqp's (ContentHeader.marshal) unless the properties are
    the relay's: content type, headers of text and integers, delivery mode, priority, message
    id and type."""
    packed = None if encode.DEPRECATED_RABBITMQ_SUPPORT else _relay_properties(properties)
    if packed is None:
        return ContentHeader(body_size=body_size, properties=properties).marshal()
    return _CONTENT_HEAD.pack(spec.Basic.frame_id, body_size) + packed


def _relay_properties(properties: spec.Basic.Properties) -> bytes | None:
    """The properties' bytes as pamqp's BasicProperties.marshal writes them (the flags, then
    each property set, in order), or None when they are not of the relay's shape."""
    for name in _ABSENT:
        if getattr(properties, name) not in (None, ""):
            return None
    flags, out = 0, [b""]
    for name, flag in _PACKED:
        value = getattr(properties, name)
        if value is None or value == "":
            continue  # not set: pamqp leaves it out
        if name == "headers":
            packed = _table(value)
        elif name in _SHORT_STRINGS:
            packed = _short_string(value) if type(value) is str else None
        else:  # an octet
            packed = bytes((value,)) if type(value) is int and 0 <= value <= 255 else None
        if packed is None:
            return None
        flags |= flag
        out.append(packed)
    out[0] = flags.to_bytes(2, "big")
    return b"".join(out)


def _table(headers: object) -> bytes | None:
    """A field table of text and integer values as pamqp.encode.field_table writes it (keys
    sorted), or None for any other."""
    if not isinstance(headers, dict):
        return None
    out = []
    for key, value in sorted(headers.items()):
        if type(key) is not str or len(name := key.encode()) > 128:
            return None
        out.append(bytes((len(name),)) + name)
        if type(value) is str:
            text = value.encode()
            out.append(b"S" + _UINT32.pack(len(text)) + text)
        elif type(value) is int:
            out.append(_table_integer(value))
        else:
            return None
    table = b"".join(out)
    return _UINT32.pack(len(table)) + table


def _table_integer(value: int) -> bytes:
    for low, high, kind, packer in _TABLE_INTEGERS:
        if low <= value <= high:
            return kind + packer.pack(value)
    return encode.table_integer(value)  # raises its TypeError
