"""A national circular: one signed document to every commune, timed until every copy is
acknowledged, in two ways.

- push (the headline): every commune's DMS is connected (mutual TLS, a connection per agency)
  and subscribed on its ReceiveStream before the circular is submitted, as a DMS of docaxis is
  all the time; each copy is acknowledged on the stream as it arrives, and counted once docaxis
  confirms the acknowledgement durable. The sender listens too, and acknowledges the status
  notice (01, arrived) of every copy.
- pull: each commune's DMS lists, fetches and acknowledges over its own connection, polling.

Times count from the Submit call.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from benchmarks.load import document_header
from benchmarks.stack import BenchPki
from benchmarks.timeline import CopyTimeline
from docaxis_client.client import AgencyClient
from docaxis_client.receive import ReceiveStreamError
from docaxis_client.streams import AcknowledgingStream

# DMSs connecting (or, in pull mode, polling) at once: a commune's DMS works on its own
# schedule; this many at a time keeps the generator's own event loop from being what is
# measured.
CONCURRENT_DMS = 200
POLL_EVERY_S = 0.05
# A commune's DMS gets one copy here; the sender's stream takes the notices of all of them.
COMMUNE_WINDOW = 32
SENDER_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class CircularResult:
    mode: str  # "push" or "pull"
    recipients: int
    submit_s: float
    fully_acknowledged_s: float
    acknowledged: int
    errors: dict[str, int]
    # Why the circular was not timed, when it was not: Submit refused it, or it failed (a
    # commune's stream refused before Submit, say); the report says which.
    refused: str = ""
    # Cores each group of processes used from Submit to the last acknowledgement (push: to the
    # sender's last notice).
    cores: dict[str, float] = field(default_factory=dict)
    # Connecting every DMS (and, push, subscribing its stream), before the clock started.
    connect_s: float = math.nan
    # From Submit: the first and the last copy pushed to (push) or fetched by (pull) a DMS.
    first_delivery_s: float = math.nan
    last_delivery_s: float = math.nan
    # Copies pushed again after their acknowledgement was confirmed (must be 0).
    duplicated: int = 0
    # Push: the sender's status notices (one per copy) received, and the last one's time.
    sender_notices: int = 0
    last_notice_s: float = math.nan
    # The circular's document, and where its seconds went by the database (push).
    document_uuid: str = ""
    timeline: CopyTimeline | None = None
    # CPU seconds each group used from Submit to the last acknowledgement, and docaxis's
    # event loops' (their main threads): the work a circular costs, which, unlike its wall
    # time, hardly moves with the neighbours' load on a shared machine.
    cpu_s: dict[str, float] = field(default_factory=dict)
    # Push: each copy's arrival and confirmation at its DMS, epoch seconds (for the timeline;
    # emptied once it is made, not reported).
    dms_times: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class _Seen:
    """What the DMSs saw of the circular (and of anything else pushed meanwhile)."""

    arrived: dict[str, float] = field(default_factory=dict)  # delivery id -> first push
    document: dict[str, str] = field(default_factory=dict)  # delivery id -> document uuid
    confirmed: dict[str, float] = field(default_factory=dict)  # delivery id -> confirmation
    confirmed_of: Counter[str] = field(default_factory=Counter)  # document uuid -> copies
    duplicated: int = 0
    notices: dict[str, tuple[str, float]] = field(default_factory=dict)  # delivery id -> ...
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1


def _circular(
    sender: AgencyClient, attachment: common_pb2.AttachmentRef, communes: Sequence[str]
) -> pb.SubmitRequest:
    header = document_header(
        sender.agency_code,
        communes,
        str(time.time_ns() // 1_000_000 % 10**11),
        "Công văn gửi toàn bộ xã, phường, đặc khu",
    )
    return pb.SubmitRequest(
        consignment_id=f"bench-circular-{uuid.uuid4()}",
        header=header,
        attachments=[attachment],
        signatures=sender.sign(header, [attachment]),
    )


async def _submit(
    sender: AgencyClient, request: pb.SubmitRequest, within_s: float
) -> tuple[str, str]:
    """The circular's document uuid, or why it was refused."""
    try:
        response = await sender.exchange.Submit(request, timeout=within_s)
    except grpc.aio.AioRpcError as exc:
        return "", f"{exc.code().name}: {exc.details()}"
    return response.receipt.document_uuid, ""


class _PushedCircular:
    """The communes' DMSs and the sender's, each on its own ReceiveStream."""

    def __init__(self, recipients: int) -> None:
        self.recipients = recipients
        self.seen = _Seen()
        self.document_uuid = ""
        self.done = asyncio.Event()
        self.gate = asyncio.Semaphore(CONCURRENT_DMS)

    def check_done(self) -> None:
        if self.document_uuid and self.seen.confirmed_of[self.document_uuid] >= self.recipients:
            self.done.set()

    async def attach(self, client: AgencyClient, window: int) -> AcknowledgingStream:
        """The DMS's stream, once docaxis has attached it to the agency's queue."""
        async with self.gate:
            stream = client.receive_stream(window=window)
            try:
                await stream.subscribed()
            except (grpc.aio.AioRpcError, ReceiveStreamError):
                stream.cancel()
                raise
            return stream

    async def read(self, stream: AcknowledgingStream) -> None:
        """A commune's DMS: every copy stored (here: noted) and acknowledged on the stream."""
        seen = self.seen
        confirming: set[asyncio.Task[None]] = set()
        try:
            async for item in stream:
                if not item.HasField("delivery"):
                    stream.acknowledge(item)
                    continue
                delivery_id = item.delivery.delivery_id
                if delivery_id in seen.confirmed:
                    seen.duplicated += 1
                    continue
                seen.arrived.setdefault(delivery_id, time.monotonic())
                seen.document[delivery_id] = item.delivery.document_uuid
                stream.acknowledge(item)
                task = asyncio.create_task(self.confirm(stream, delivery_id))
                confirming.add(task)
                task.add_done_callback(confirming.discard)
        except grpc.aio.AioRpcError as exc:
            seen.error(exc.code().name)

    async def confirm(self, stream: AcknowledgingStream, delivery_id: str) -> None:
        seen = self.seen
        try:
            result = await stream.confirmed(delivery_id)
        except grpc.aio.AioRpcError as exc:
            seen.error(exc.code().name)
            return
        if result.error:
            seen.error("refused on the stream")
        elif delivery_id not in seen.confirmed:
            seen.confirmed[delivery_id] = time.monotonic()
            seen.confirmed_of[seen.document[delivery_id]] += 1
            self.check_done()

    async def read_notices(self, stream: AcknowledgingStream) -> None:
        """The sender's DMS: every status notice acknowledged as it arrives."""
        try:
            async for item in stream:
                stream.acknowledge(item)
                if item.HasField("status"):
                    notice = item.status
                    self.seen.notices.setdefault(
                        notice.delivery_id, (notice.document_uuid, time.monotonic())
                    )
        except grpc.aio.AioRpcError as exc:
            self.seen.error(f"sender: {exc.code().name}")

    async def notices_in(self, within_s: float) -> None:
        """Waits (at most `within_s`) for the sender's notice of every copy."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            ours = sum(1 for d, _ in self.seen.notices.values() if d == self.document_uuid)
            if ours >= self.recipients:
                return
            await asyncio.sleep(0.02)

    def wall_times(self) -> dict[str, tuple[float, float]]:
        """Each copy of the circular confirmed: its arrival and confirmation, epoch seconds."""
        seen, to_wall = self.seen, time.time() - time.monotonic()
        return {
            d: (seen.arrived[d] + to_wall, t + to_wall)
            for d, t in seen.confirmed.items()
            if seen.document.get(d) == self.document_uuid and d in seen.arrived
        }

    def times(self, start: float) -> tuple[list[float], list[float], list[float]]:
        """From `start`: the circular's arrivals, confirmations and the sender's notices."""
        seen, ours = self.seen, self.document_uuid
        return (
            [t - start for d, t in seen.arrived.items() if seen.document.get(d) == ours],
            [t - start for d, t in seen.confirmed.items() if seen.document.get(d) == ours],
            [t - start for d, t in seen.notices.values() if d == ours],
        )


async def run_push_circular(
    address: str,
    pki: BenchPki,
    sender: AgencyClient,
    attachment: common_pb2.AttachmentRef,
    communes: Sequence[str],
    *,
    within_s: float,
    on_submit: Callable[[], None] = lambda: None,
    on_acknowledged: Callable[[], None] = lambda: None,
) -> CircularResult:
    """`on_submit` is called once every DMS is connected, right before the clock starts;
    `on_acknowledged` once every copy's acknowledgement is confirmed (or the wait gave up)."""
    clients = [pki.client(address, code) for code in communes]
    circular = _PushedCircular(len(communes))
    readers: list[asyncio.Task[None]] = []
    streams: list[AcknowledgingStream] = []
    connecting = time.monotonic()
    try:
        # Every DMS connected (mutual TLS handshake done) and attached to its queue before the
        # clock starts: the communes are online, waiting for mail.
        streams = list(await asyncio.gather(*(circular.attach(c, COMMUNE_WINDOW) for c in clients)))
        readers = [asyncio.create_task(circular.read(s)) for s in streams]
        notices = await circular.attach(sender, SENDER_WINDOW)
        streams.append(notices)
        readers.append(asyncio.create_task(circular.read_notices(notices)))
        connect_s = time.monotonic() - connecting
        request = _circular(sender, attachment, communes)
        on_submit()
        start = time.monotonic()
        circular.document_uuid, refused = await _submit(sender, request, within_s)
        if refused:
            return CircularResult("push", len(communes), math.nan, math.nan, 0, {}, refused)
        submitted = time.monotonic()
        circular.check_done()
        try:
            async with asyncio.timeout(max(0.0, within_s - (submitted - start))):
                await circular.done.wait()
        except TimeoutError:
            circular.seen.error("not acknowledged in time")
        ended = time.monotonic()
        on_acknowledged()
        # The sender's notices follow the acknowledgements: a little longer for the last ones.
        await circular.notices_in(30)
    finally:
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(client.close() for client in clients))
    arrivals, confirmations, notice_times = circular.times(start)
    complete = len(confirmations) == len(communes)
    return CircularResult(
        mode="push",
        recipients=len(communes),
        submit_s=submitted - start,
        fully_acknowledged_s=max(confirmations) if complete else ended - start,
        acknowledged=len(confirmations),
        errors=circular.seen.errors,
        connect_s=connect_s,
        first_delivery_s=min(arrivals, default=math.nan),
        last_delivery_s=max(arrivals, default=math.nan),
        duplicated=circular.seen.duplicated,
        sender_notices=len(notice_times),
        last_notice_s=max(notice_times, default=math.nan),
        document_uuid=circular.document_uuid,
        dms_times=circular.wall_times(),
    )


async def run_pull_circular(
    address: str,
    pki: BenchPki,
    sender: AgencyClient,
    attachment: common_pb2.AttachmentRef,
    communes: Sequence[str],
    *,
    within_s: float,
    on_submit: Callable[[], None] = lambda: None,
    on_acknowledged: Callable[[], None] = lambda: None,
) -> CircularResult:
    """`on_submit` is called once every DMS is connected, right before the clock starts;
    `on_acknowledged` once every copy's acknowledgement is confirmed (or the wait gave up)."""
    clients = [pki.client(address, code) for code in communes]
    errors: dict[str, int] = {}
    fetched: list[float] = []
    gate = asyncio.Semaphore(CONCURRENT_DMS)
    connecting = time.monotonic()
    try:
        # Every DMS connected (mutual TLS handshake done) and its inbox empty before the clock
        # starts: the communes are online, waiting for mail.
        async def connect(client: AgencyClient) -> None:
            async with gate:
                await client.list_pending(page_size=1)

        await asyncio.gather(*(connect(client) for client in clients))
        connect_s = time.monotonic() - connecting
        request = _circular(sender, attachment, communes)
        on_submit()
        start = time.monotonic()
        document_uuid, refused = await _submit(sender, request, within_s)
        if refused:
            return CircularResult("pull", len(communes), math.nan, math.nan, 0, {}, refused)
        submitted = time.monotonic()

        async def take(client: AgencyClient) -> bool:
            """Polls until the circular is listed, fetches it and acknowledges it."""
            async with gate:
                while time.monotonic() - start < within_s:
                    try:
                        listed = await client.list_pending()
                        for item in listed.items:
                            if item.document_uuid == document_uuid:
                                await client.fetch(item)
                                fetched.append(time.monotonic())
                                await client.acknowledge_item(item)
                                return True
                    except grpc.aio.AioRpcError as exc:
                        errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    await asyncio.sleep(POLL_EVERY_S)
                return False

        taken = await asyncio.gather(*(take(client) for client in clients))
        finished = time.monotonic()
        on_acknowledged()
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    return CircularResult(
        mode="pull",
        recipients=len(communes),
        submit_s=submitted - start,
        fully_acknowledged_s=finished - start,
        acknowledged=sum(taken),
        errors=errors,
        connect_s=connect_s,
        first_delivery_s=min(fetched, default=math.nan) - start,
        last_delivery_s=max(fetched, default=math.nan) - start,
    )
