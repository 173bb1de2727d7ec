"""Pushing an agency's inbox to its DMS: claims in batches, and the acknowledging stream.

Both Receive and ReceiveStream take what the broker has handed the stream in one batch, claim
every copy of it in one transaction (begin_pushes) and every notice in another (begin_notices),
and push what may be pushed. ReceiveStream also takes acknowledgements on the stream itself,
group-committed with every other caller's, and pushes at most `window` items that await one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.common import tracing
from services.common.errors import DomainError, FieldViolation, UnavailableError, ValidationError
from services.common.grpc_errors import domain_errors, status_details
from services.common.grpc_serialized import Parts, length_delimited
from services.common.identity import CallerResolver
from services.common.metrics import AcknowledgedKind, AxisMetrics, DeliveryMode
from services.exchange.entrypoints.convert import DeliveryProtos, timestamp
from services.exchange.entrypoints.lifecycle_convert import notice_response
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.inbox_ports import Inbox, InboxMessage, InFlight
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import ItemKind
from services.exchange.service_layer.ports import Acknowledgement, DeadLetter

DEFAULT_WINDOW = 32
T = TypeVar("T")
MAX_WINDOW = 1000
# A ReceiveStream whose client sends acknowledgements but does not read the answers: past this
# many answers unsent, or this many acknowledgement batches of the stream in flight, the stream
# stops reading the client's requests until it catches up, so that neither memory nor database
# work grows with what such a client sends (HTTP/2 flow control then holds its writes).
MAX_UNSENT = MAX_WINDOW + 64
MAX_ACKNOWLEDGING = 8


class Pusher:
    """Turns batches of inbox messages into the items to push."""

    def __init__(
        self,
        handlers: ExchangeHandlers,
        lifecycle: LifecycleHandlers | None,
        in_flight: InFlight,
        metrics: AxisMetrics,
    ) -> None:
        self._handlers = handlers
        self._lifecycle = lifecycle
        self._in_flight = in_flight
        self._metrics = metrics
        self.deliveries = DeliveryProtos()

    async def claim(
        self, agency: str, batch: Sequence[InboxMessage]
    ) -> list[tuple[InboxMessage, Parts]]:
        """The messages to push, each with its item as a serialized ReceiveResponse in parts (a
        copy's document serialized once: DeliveryProtos.received), which Receive joins and
        ReceiveStream wraps (`stream_item`). Every other message of the batch is settled
        with the broker here: acked when the item must not be pushed (acknowledged, withdrawn,
        not the agency's, or a second copy of an item this process already pushed and awaits an
        acknowledgement for), rejected into docaxis.dead-letter when the copy was just
        dead-lettered instead of being pushed past the limit."""
        started = time.time_ns()
        fresh: list[InboxMessage] = []
        seen: set[str] = set()
        for message in batch:
            if self._in_flight.holds(message.item_id) or message.item_id in seen:
                # A second copy (the relay republished after a crash) of an item that is already
                # pushed and awaiting its acknowledgement.
                await message.message.ack()
            else:
                seen.add(message.item_id)
                fresh.append(message)
        copies = [m for m in fresh if not m.notice_id]
        notices = [m for m in fresh if m.notice_id]
        pushable: list[tuple[InboxMessage, Parts]] = []
        if copies:
            claimed = await self._handlers.begin_pushes(
                [(m.delivery_id, agency) for m in copies],
                {m.delivery_id: m.published_at for m in copies if m.published_at is not None},
            )
            for message, push in zip(copies, claimed, strict=True):
                if push is None:
                    await message.message.ack()  # acknowledged earlier, or not deliverable
                elif isinstance(push, DeadLetter):
                    # Into docaxis.dead-letter (the queue's dead-letter exchange), for operators
                    # to see; the copy is terminal until an admin resends it.
                    await message.message.reject(requeue=False)
                else:
                    self._metrics.handed_over(
                        DeliveryMode.PUSH, push.submitted_at, first=push.first_handover
                    )
                    pushable.append((message, self.deliveries.received(push)))
        if notices:
            items = (
                await self._lifecycle.begin_notices([(m.notice_id, agency) for m in notices])
                if self._lifecycle is not None
                else [None] * len(notices)
            )
            for message, notice in zip(notices, items, strict=True):
                if notice is None:
                    await message.message.ack()
                else:
                    pushable.append((message, (notice_response(notice).SerializeToString(),)))
        # Oldest first, as the broker handed them over.
        order = {id(m): index for index, m in enumerate(fresh)}
        pushable.sort(key=lambda pair: order[id(pair[0])])
        for message, _ in pushable:
            tracing.record_push(message.item_id, agency, message.message.headers, started)
        return pushable


_STREAM_ITEM = pb.ReceiveStreamResponse.DESCRIPTOR.fields_by_name["item"].number


def stream_item(item: Parts) -> bytes:
    """A serialized ReceiveResponse (in parts) as the serialized ReceiveStreamResponse that
    pushes it, joined once."""
    return length_delimited(_STREAM_ITEM, *item)


def acknowledgement_result(
    request: pb.AcknowledgeRequest, outcome: Acknowledgement | DomainError
) -> pb.AcknowledgeResult:
    if isinstance(outcome, DomainError):
        return pb.AcknowledgeResult(item=request, error=status_details(outcome))
    return pb.AcknowledgeResult(
        item=request,
        acknowledged_at=timestamp(outcome.acknowledged_at),
        already_acknowledged=outcome.already_acknowledged,
    )


def acknowledged_items(
    requests: Sequence[pb.AcknowledgeRequest],
) -> list[tuple[ItemKind, str]]:
    return [
        (ItemKind.STATUS, r.notice_id)
        if r.WhichOneof("item") == "notice_id"
        else (ItemKind.DELIVERY, r.delivery_id)
        for r in requests
    ]


def count_acknowledged(
    metrics: AxisMetrics,
    requests: Sequence[pb.AcknowledgeRequest],
    outcomes: Sequence[Acknowledgement | DomainError],
) -> None:
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, Acknowledgement) and not outcome.already_acknowledged:
            notice = request.WhichOneof("item") == "notice_id"
            metrics.acknowledged(AcknowledgedKind.NOTICE if notice else AcknowledgedKind.DELIVERY)


def window_of(request: pb.ReceiveStreamRequest, current: int) -> int:
    if request.window == 0:
        return current
    if request.window > MAX_WINDOW:
        raise ValidationError(
            "invalid window", [FieldViolation("window", f"1 to {MAX_WINDOW} (0 keeps the current)")]
        )
    return request.window


@dataclass(slots=True)
class AcknowledgingStream:
    """One ReceiveStream: pushes while fewer than `window` items await an acknowledgement, and
    confirms each acknowledgement once durable. A DMS that stops acknowledging stops receiving
    (back-pressure); what the broker has meanwhile handed the stream waits in its channel."""

    agency: str
    pusher: Pusher
    lifecycle: LifecycleHandlers
    in_flight: InFlight
    callers: CallerResolver
    metrics: AxisMetrics
    context: grpc.aio.ServicerContext[Any, Any]
    window: int = DEFAULT_WINDOW
    awaiting: set[str] = field(default_factory=set)
    pushed: list[str] = field(default_factory=list)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    # Set whenever an answer is sent or an acknowledgement batch ends (read() may go on).
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    # Pushed items serialized (bytes), acknowledgements' answers as messages.
    out: asyncio.Queue[pb.ReceiveStreamResponse | bytes | BaseException | None] = field(
        default_factory=asyncio.Queue
    )

    def _released(self, item_id: str) -> None:
        self.awaiting.discard(item_id)
        self._check_room()

    def _check_room(self) -> None:
        if len(self.awaiting) < self.window:
            self.room.set()
        else:
            self.room.clear()

    async def read(self, requests: AsyncIterator[pb.ReceiveStreamRequest]) -> None:
        """Acknowledgements and window changes, until the client half-closes; then the stream
        ends once every acknowledgement sent has been answered."""
        pending: set[asyncio.Task[None]] = set()
        try:
            async for request in requests:
                self.window = window_of(request, self.window)
                self._check_room()
                if request.acknowledgements:
                    task = asyncio.create_task(self.acknowledge(list(request.acknowledgements)))
                    pending.add(task)
                    task.add_done_callback(lambda done: self._settled(pending, done))
                while len(pending) >= MAX_ACKNOWLEDGING or self.out.qsize() >= MAX_UNSENT:
                    self.progress.clear()
                    await self.progress.wait()
            if pending:
                await asyncio.gather(*pending)
            self.out.put_nowait(None)
        except BaseException as exc:
            for task in pending:
                task.cancel()
            self.out.put_nowait(exc)
            raise

    def _settled(self, pending: set[asyncio.Task[None]], done: asyncio.Task[None]) -> None:
        pending.discard(done)
        self.progress.set()

    async def acknowledge(self, requests: list[pb.AcknowledgeRequest]) -> None:
        try:
            outcomes = await self.lifecycle.acknowledge_items(
                self.agency, acknowledged_items(requests)
            )
        except DomainError as exc:
            self.out.put_nowait(exc)
            return
        except Exception as exc:  # noqa: BLE001 - the database is unreachable: tell the DMS
            self.out.put_nowait(
                UnavailableError(
                    f"acknowledgements not stored ({exc!r}); resend them", retry_after_s=1.0
                )
            )
            return
        count_acknowledged(self.metrics, requests, outcomes)
        for request, outcome in zip(requests, outcomes, strict=True):
            item_id = request.delivery_id or request.notice_id
            if isinstance(outcome, Acknowledgement):
                # Only after the commit: a crash in between redelivers, and the redelivered copy
                # is skipped because the item is already acknowledged.
                await self.in_flight.settle(item_id)
            elif item_id in self.awaiting:
                # Refused (e.g. withdrawn meanwhile): nothing to wait for any more.
                await self.in_flight.settle(item_id)
        self.out.put_nowait(
            pb.ReceiveStreamResponse(
                acknowledged=[
                    acknowledgement_result(r, o) for r, o in zip(requests, outcomes, strict=True)
                ]
            )
        )

    async def push(self, inbox: Inbox) -> None:
        try:
            while True:
                await self.room.wait()
                # Ended at once should the agency's certificate be revoked meanwhile.
                batch = await unless_revoked(
                    inbox.batch(max(1, self.window - len(self.awaiting))),
                    self.callers,
                    self.context,
                )
                if not batch:
                    self.out.put_nowait(None)  # the server is stopping
                    return
                # Checked again before every batch (cached, so cheap): a certificate revoked
                # while its stream is open stops receiving at once.
                async with domain_errors(self.context):
                    self.callers.resolve(self.context)
                for message, item in await self.pusher.claim(self.agency, batch):
                    self.in_flight.add(message.item_id, message.message, self._released)
                    self.awaiting.add(message.item_id)
                    self.pushed.append(message.item_id)
                    self.out.put_nowait(stream_item(item))
                self._check_room()
        except BaseException as exc:
            self.out.put_nowait(exc)
            raise

    async def responses(self) -> AsyncIterator[pb.ReceiveStreamResponse | bytes]:
        while True:
            response = await self.out.get()
            self.progress.set()
            if response is None:
                return
            if isinstance(response, BaseException):
                raise response
            yield response

    def close(self) -> None:
        """Drops what was queued and will never be sent, once read() and push() have stopped.
        Their exceptions wait there (each put before it is raised: a cancelled stream's
        CancelledError), and an exception's traceback holds the frame that put it, which holds
        this stream: a reference cycle that left each closed stream, its tasks and what their
        frames held (~90 objects a stream in the push circular) to the cyclic collector, whose
        full collection after the 3,000 streams closed stood the event loop still for 2.5 s
        (docs/perf/README.md, "The closed streams' garbage")."""
        while not self.out.empty():
            self.out.get_nowait()


async def unless_revoked(
    work: Awaitable[T], callers: CallerResolver, context: grpc.aio.ServicerContext[Any, Any]
) -> T:
    """`work`'s result. Whenever the revocations change meanwhile, the caller is resolved again,
    and its refusal (CERTIFICATE_REVOKED) cancels `work` and is raised: the stream of a revoked
    agency ends at once, idle or not, instead of at its next push."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            change = asyncio.ensure_future(callers.credentials_changed())  # from now on...
            try:
                callers.resolve(context)  # ... and up to now: no revocation slips in between
                await asyncio.wait((task, change), return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()
            if task.done():
                return task.result()
    finally:
        task.cancel()  # nothing once done; the work stops with the stream otherwise


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
