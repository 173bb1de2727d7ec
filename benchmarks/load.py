"""The load generator: agencies' DMSs that only use the public gRPC API (`docaxis_client`, mutual
TLS), sending signed documents open-loop at a fixed offered rate and receiving on push streams,
acknowledging every copy.

Open loop: each document has a scheduled send time, and both latencies count from it (not from
when the generator got round to sending), so a slow server cannot hide behind a slow generator.
Documents are signed ahead of each step, so signing does not compete with the measured path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from benchmarks.stack import SIGNER, AgencyKeys, BenchPki
from benchmarks.stats import Percentiles, percentiles
from docaxis_client.client import AgencyClient, Upload
from docaxis_client.receive import ReceiveStreamError
from docaxis_client.streams import AcknowledgingStream
from docaxis_client.vietnam import VIETNAM

ATTACHMENT_BYTES = 10 * 1024
RECIPIENTS_PER_DOCUMENT = 2
# A step stops offering load when many copies older than this are still undelivered (or many
# submissions unanswered): past that point latencies only grow with the backlog, and draining
# a larger one would take minutes.
OVERLOAD_AGE_S = 3.0
ACK_RETRIES = 3
# Stream mode: copies a recipient may hold unacknowledged (the server's default is 32).
STREAM_WINDOW = 256
# Batch mode: acknowledgements wait this long for others to share their AcknowledgeBatch call.
BATCH_LINGER_S = 0.005
BATCH_MAX = 500


class AckMode(enum.StrEnum):
    """How recipients acknowledge each copy: `unary`, one Acknowledge call per copy pushed on
    Receive; `batch`, one AcknowledgeBatch call for what arrived within a few milliseconds;
    `stream`, on the ReceiveStream itself, counted as acknowledged once docaxis confirms it is
    durable."""

    UNARY = "unary"
    BATCH = "batch"
    STREAM = "stream"


@dataclass(slots=True)
class _Copy:
    number: str
    recipient: str
    # When its document was scheduled to be sent (latencies count from here).
    scheduled: float
    arrived: float | None = None
    acknowledged: float | None = None
    acknowledge_ms: float | None = None


@dataclass(slots=True)
class Tally:
    """What the recipients saw, by delivery id, over the whole run."""

    copies: dict[str, _Copy] = field(default_factory=dict)
    # Pushed again after its acknowledgement returned OK: must never happen.
    duplicates: int = 0
    # Pushed again before it was acknowledged (a requeue): allowed, counted for the record.
    redelivered: int = 0
    # Pushes of deliveries no submission of this run answered with (e.g. left from a crash).
    unknown: int = 0
    # Pushed (and maybe acknowledged) before the Submit that created it answered.
    arrivals_before_route: dict[str, float] = field(default_factory=dict)
    acknowledged_before_route: dict[str, tuple[float, float]] = field(default_factory=dict)
    ack_errors: Counter[str] = field(default_factory=Counter)
    # Acknowledged on a stream that broke before confirming it: docaxis may have stored the
    # acknowledgement (then the copy is never pushed again) or not (then it is pushed again).
    unconfirmed: set[str] = field(default_factory=set)
    # Status notices the senders received and acknowledged (when they listen for them).
    notices: int = 0

    def settled(self, delivery_id: str) -> bool:
        """The DMS has the copy and acknowledged it, confirmed or not."""
        copy = self.copies[delivery_id]
        return copy.acknowledged is not None or (
            copy.arrived is not None and delivery_id in self.unconfirmed
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    number: str
    sender: int
    request: pb.SubmitRequest


@dataclass(slots=True)
class Offered:
    """What the Submit calls of a stretch of load answered."""

    answered: list[float] = field(default_factory=list)  # when each accepted Submit answered
    submit_ms: list[float] = field(default_factory=list)  # its latency from the scheduled time
    rejected: Counter[str] = field(default_factory=Counter)
    routes: list[str] = field(default_factory=list)  # delivery ids of the accepted copies


@dataclass(frozen=True, slots=True)
class StepResult:
    offered_docs_per_s: float
    planned_s: float
    ran_s: float
    offered_docs: int
    accepted_docs: int
    rejected: dict[str, int]
    accepted_docs_per_s: float
    copies: int
    copies_delivered: int
    copies_acknowledged: int
    delivered_copies_per_s: float
    submit_ms: Percentiles
    delivered_ms: Percentiles
    acknowledge_ms: Percentiles
    overloaded: bool
    drained: bool
    # Cores docaxis used during the step (its CPU seconds over the step's wall time).
    server_cores: float = 0.0
    # Cores each group of processes used during the step (benchmarks/cpu.py).
    cores: dict[str, float] = dataclasses.field(default_factory=dict)
    # CPU seconds each group used during the step (its load, its drain), and per accepted
    # document and per delivered copy in milliseconds: the cost of the path, which a busy
    # machine delays but hardly changes.
    cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    cpu_ms_per_document: dict[str, float] = dataclasses.field(default_factory=dict)
    cpu_ms_per_copy: dict[str, float] = dataclasses.field(default_factory=dict)
    # Cores each docaxis process (the first worker, then the others) used: how evenly the
    # workers share the load.
    worker_cores: list[float] = dataclasses.field(default_factory=list)
    # CPU ms per accepted document of docaxis's event-loop threads (each process's main
    # thread), within cpu_ms_per_document's docaxis figure: the part one core bounds.
    loop_cpu_ms_per_document: float = 0.0
    # Seconds each group's threads spent waiting for a core (runnable, not running) per second
    # of the step and its drain, and "docaxis loop": the event-loop threads' (benchmarks/cpu.py).
    core_waits: dict[str, float] = dataclasses.field(default_factory=dict)
    # WAL Postgres wrote during the step and its drain, per accepted document; and the mean
    # stored transport receipt (a copy's) at the step's end.
    wal_bytes_per_document: int = 0
    receipt_bytes: float = 0.0

    def sustained(self, p99_limit_ms: float) -> bool:
        """Every document accepted and every copy acknowledged, p99 within the limit, and the
        whole planned duration run."""
        return (
            not self.overloaded
            and self.drained
            and not self.rejected
            and self.accepted_docs == self.offered_docs
            and self.copies_acknowledged == self.copies
            and self.delivered_ms.p99 < p99_limit_ms
        )


def bench_codes(prefix: str, count: int) -> list[str]:
    """QCVN 102 codes of the bench's own agencies, in level-1 group H98 (no real province)."""
    return [f"{prefix}.{n // 100:02d}.{n % 100:02d}.H98" for n in range(count)]


def document_header(
    sender: str, recipients: Sequence[str], number: str, subject: str
) -> common_pb2.DocumentHeader:
    """A bench document's header (a Công văn dated today, signed by the bench's official)."""
    return common_pb2.DocumentHeader(
        sender=sender,
        recipients=recipients,
        code=common_pb2.DocumentCode(number=number, notation="DT-TAI"),
        promulgation_place="Hà Nội",
        promulgation_date=dt.datetime.now(VIETNAM).date().isoformat(),
        document_type=1,
        type_name="Công văn",
        subject=subject,
        signer=common_pb2.Signer(
            competence="KT. GIÁM ĐỐC", position="Phó Giám đốc", full_name=SIGNER
        ),
        business_type=common_pb2.BUSINESS_TYPE_NEW,
    )


@dataclass(slots=True)
class _Batch:
    """Copies a recipient has received and not yet acknowledged (batch mode)."""

    client: AgencyClient
    pending: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the recipient hangs up: what is pending is sent once, then the flusher ends.
    closing: bool = False

    def add(self, delivery_id: str) -> None:
        self.pending.append(delivery_id)
        self.ready.set()


def signed_pdf(code: str, keys: AgencyKeys) -> bytes:
    """A one-page PDF signed by the agency's official, then by the agency (PAdES), as a DMS
    sends its documents."""
    from docaxis_client.trust.pdf import demo_pdf, sign_pdf  # pyHanko: only in this mode

    pdf = demo_pdf(["docaxis bench", f"Cong van cua {code}"])
    pdf = sign_pdf(pdf, keys.person.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(pdf, keys.agency.identity(), field_name="ChuKyCoQuan")


class Workload:
    """Senders and recipients of the steady load, connected for the whole run unless one is
    disconnected and reconnected on purpose (the soak's churn)."""

    def __init__(
        self,
        address: str,
        pki: BenchPki,
        senders: Sequence[str],
        recipients: Sequence[str],
        ack_mode: AckMode = AckMode.UNARY,
        *,
        senders_listen: bool = False,
        submit_retries: int = 0,
        signed_pdf: bool = False,
    ) -> None:
        """`submit_retries`: how often a Submit that failed UNAVAILABLE is sent again (the same
        consignment, so a retry of one that was stored gets its first receipt), as a DMS does
        while a replica fails over; the bench's steps count a failure at once. `signed_pdf`:
        each sender's attachment is a one-page PDF its official and agency signed (PAdES),
        verified with every Submit, instead of 10 KiB of random bytes."""
        self._address = address
        self._sender_codes = list(senders)
        self._signed_pdf = signed_pdf
        self._submit_retries = submit_retries
        self._pki = pki
        self.senders = [pki.client(address, code) for code in senders]
        self.recipients = [pki.client(address, code) for code in recipients]
        self._ack_mode = ack_mode
        self._uploads: list[Upload] = []
        # Per recipient: its receiving task, its open ReceiveStream (stream mode), whether it is
        # hanging up, and its acknowledgements still waiting for docaxis's answer.
        self._receivers: list[asyncio.Task[None] | None] = [None] * len(recipients)
        self._open_streams: list[AcknowledgingStream | None] = [None] * len(recipients)
        self._leaving = [False] * len(recipients)
        self._acks: list[set[asyncio.Task[None]]] = [set() for _ in recipients]
        # Per sender: its Submit calls in flight; senders away send nothing.
        self._submitting: list[set[asyncio.Task[None]]] = [set() for _ in senders]
        self._absent_senders: set[int] = set()
        # Senders that listen read and acknowledge the status notices of their documents, as
        # a DMS does; otherwise those wait in the senders' inboxes (the bench's steps).
        self._senders_listen = senders_listen
        self._notice_readers: list[asyncio.Task[None] | None] = [None] * len(senders)
        self._stopping = False
        self.tally = Tally()
        self.stream_restarts = 0
        self._numbers = itertools.count(1)
        # Document numbers unique across runs on the same database day (CodeNumber ≤ 11 chars).
        self._run = int(time.time()) % 100_000
        self._pairs = itertools.cycle(
            [(a, b) for a in range(len(recipients)) for b in range(len(recipients)) if a != b]
        )

    async def open(self) -> None:
        """Uploads each sender's attachment and opens every recipient's push stream."""
        for code, sender in zip(self._sender_codes, self.senders, strict=True):
            data = (
                await asyncio.to_thread(signed_pdf, code, self._pki.keys(code))
                if self._signed_pdf
                else os.urandom(ATTACHMENT_BYTES)
            )
            self._uploads.append(await sender.upload_stream(data))
        for index in range(len(self.senders)):
            self._read_notices(index)
        subscribed = [self._listen(index) for index in range(len(self.recipients))]
        async with asyncio.timeout(60):
            await asyncio.gather(*(ready.wait() for ready in subscribed))

    def _listen(self, index: int) -> asyncio.Event:
        """Starts receiving for recipient `index` on its current connection; the event is set
        once its stream is attached."""
        subscribed = asyncio.Event()
        self._leaving[index] = False
        self._receivers[index] = asyncio.create_task(self._receive(index, subscribed))
        return subscribed

    async def close(self) -> None:
        self._stopping = True
        receivers = [task for task in (*self._receivers, *self._notice_readers) if task]
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
        await asyncio.gather(*(t for acks in self._acks for t in acks), return_exceptions=True)
        for client in (*self.senders, *self.recipients):
            await client.close()

    def cut_stream(self, index: int) -> None:
        """Breaks recipient `index`'s push stream at once, whatever it holds unacknowledged (as
        a DMS that crashes mid-delivery), and opens a new one, as the DMS does on restart."""
        task = self._receivers[index]
        assert task is not None
        task.cancel()
        self.stream_restarts += 1
        self._listen(index)

    async def disconnect_recipient(self, index: int, within_s: float = 30.0) -> None:
        """Recipient `index` hangs up its push stream and closes its connection, after docaxis
        has answered every acknowledgement it sent; copies pushed to it and not acknowledged
        are pushed again on its next stream."""
        self._leaving[index] = True
        task, stream = self._receivers[index], self._open_streams[index]
        assert task is not None
        if stream is not None:
            # Half-close: docaxis answers the acknowledgements sent so far, then ends the call.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await stream.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        acks = list(self._acks[index])
        if acks:
            _, late = await asyncio.wait(acks, timeout=within_s)
            for unanswered in late:
                self.tally.ack_errors["unanswered at hang-up"] += 1
                unanswered.cancel()
        await self.recipients[index].close()

    async def reconnect_recipient(self, index: int, within_s: float = 60.0) -> None:
        """Recipient `index` connects again (a new mutual-TLS channel) and reopens its stream."""
        self.recipients[index] = self._pki.client(self._address, self.recipients[index].agency_code)
        subscribed = self._listen(index)
        async with asyncio.timeout(within_s):
            await subscribed.wait()

    async def disconnect_sender(self, index: int) -> None:
        """Sender `index` stops sending (its share goes to the others) and closes its connection
        once its Submit calls are answered."""
        self._absent_senders.add(index)
        await asyncio.gather(*self._submitting[index], return_exceptions=True)
        reader = self._notice_readers[index]
        if reader is not None:
            reader.cancel()  # a notice not yet acknowledged is pushed again next time
            await asyncio.gather(reader, return_exceptions=True)
        await self.senders[index].close()

    def reconnect_sender(self, index: int) -> None:
        """Sender `index` connects again and sends its share from its next document on."""
        self.senders[index] = self._pki.client(self._address, self.senders[index].agency_code)
        self._absent_senders.discard(index)
        self._read_notices(index)

    def _read_notices(self, index: int) -> None:
        if self._senders_listen:
            reader = asyncio.create_task(self._notices(self.senders[index]))
            self._notice_readers[index] = reader

    async def _notices(self, client: AgencyClient) -> None:
        """A sender's Receive stream: every status notice acknowledged (reopened if it breaks;
        cancelled when the sender leaves)."""
        while True:
            call = client.receive()
            try:
                await call.subscribed()
                async for item in call:
                    notice = item.status if item.HasField("status") else item.recall
                    await client.acknowledge_notice(notice.notice_id)
                    self.tally.notices += 1
            except (grpc.aio.AioRpcError, ReceiveStreamError):
                if self._stopping:
                    return
                self.stream_restarts += 1
                await asyncio.sleep(0.2)
            finally:
                call.cancel()

    def present(self, sender: int) -> bool:
        return sender not in self._absent_senders

    def attachment(self, sender: int) -> common_pb2.AttachmentRef:
        """The attachment sender number `sender` uploaded, as its documents cite it."""
        name = "van-ban.pdf" if self._signed_pdf else "phu-luc.pdf"
        return self._uploads[sender].ref(name, "application/pdf")

    def prepare(self, count: int) -> list[Prepared]:
        """`count` signed submissions, spread over the senders present, each to two
        recipients."""
        prepared = []
        present = [i for i in range(len(self.senders)) if i not in self._absent_senders]
        for index in range(count):
            sender_index = present[index % len(present)]
            sender = self.senders[sender_index]
            number = f"{self._run:05d}{next(self._numbers):06d}"
            first, second = next(self._pairs)
            header = document_header(
                sender.agency_code,
                [self.recipients[first].agency_code, self.recipients[second].agency_code],
                number,
                "Đo tải trục liên thông",
            )
            refs = [self.attachment(sender_index)]
            request = pb.SubmitRequest(
                consignment_id=f"bench-{uuid.uuid4()}",
                header=header,
                attachments=refs,
                signatures=sender.sign(header, refs),
            )
            prepared.append(Prepared(number, sender_index, request))
        return prepared

    async def run_step(self, rate: float, duration_s: float, *, drain_s: float) -> StepResult:
        """Offers `rate` documents/s for `duration_s`, then waits up to `drain_s` for every copy
        to be acknowledged."""
        documents = self.prepare(max(1, round(rate * duration_s)))
        scheduled: dict[str, float] = {}
        answers = Offered()
        submit_ms, answered, rejected, routes = (
            answers.submit_ms,
            answers.answered,
            answers.rejected,
            answers.routes,
        )
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic() + 0.1
        overloaded = False
        for index, document in enumerate(documents):
            at = start + index / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if index % 50 == 0 and self._overloaded(routes, scheduled, rate):
                overloaded = True
                break
            scheduled[document.number] = at
            tasks.append(self.send(document, at, answers))
        offered = len(tasks)
        # The span the offered documents were scheduled over (a stopped step: until it stopped).
        ran_s = max(offered / rate, time.monotonic() - start if overloaded else 0.0)
        await asyncio.gather(*tasks)
        drained = await self._drain(routes, drain_s)
        copies = [self.tally.copies[d] for d in routes]
        delivered = [c for c in copies if c.arrived is not None]
        last = max((c.arrived for c in delivered if c.arrived is not None), default=start)
        return StepResult(
            offered_docs_per_s=rate,
            planned_s=duration_s,
            ran_s=ran_s,
            offered_docs=offered,
            accepted_docs=len(submit_ms),
            rejected=dict(rejected),
            # Over the time until the last answer: a server that falls behind accepts slower
            # than it is offered.
            accepted_docs_per_s=len(submit_ms) / max(max(answered, default=start) - start, ran_s),
            copies=len(copies),
            copies_delivered=len(delivered),
            copies_acknowledged=sum(c.acknowledged is not None for c in copies),
            delivered_copies_per_s=len(delivered) / max(last - start, ran_s),
            submit_ms=percentiles(submit_ms),
            delivered_ms=percentiles(
                [(c.arrived - c.scheduled) * 1000 for c in delivered if c.arrived]
            ),
            acknowledge_ms=percentiles([c.acknowledge_ms for c in copies if c.acknowledge_ms]),
            overloaded=overloaded,
            drained=drained,
        )

    def send(self, document: Prepared, at: float, into: Offered) -> asyncio.Task[None]:
        """Submits `document` (scheduled for `at`) now; its answer is recorded in `into`."""
        task = asyncio.create_task(self._submit(document, at, into))
        submitting = self._submitting[document.sender]
        submitting.add(task)
        task.add_done_callback(submitting.discard)
        return task

    async def _submit(self, document: Prepared, at: float, into: Offered) -> None:
        for attempt in itertools.count():
            try:
                response = await self.senders[document.sender].exchange.Submit(
                    document.request, timeout=60
                )
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt < self._submit_retries:
                    await asyncio.sleep(0.2)
                    continue
                into.rejected[exc.code().name] += 1
                return
        into.answered.append(time.monotonic())
        into.submit_ms.append((into.answered[-1] - at) * 1000)
        for route in response.receipt.routes:
            copy = _Copy(document.number, route.effective_recipient, at)
            copy.arrived = self.tally.arrivals_before_route.pop(route.delivery_id, None)
            acked = self.tally.acknowledged_before_route.pop(route.delivery_id, None)
            if acked is not None:
                copy.acknowledged, copy.acknowledge_ms = acked
            self.tally.copies[route.delivery_id] = copy
            into.routes.append(route.delivery_id)

    def _overloaded(self, routes: list[str], scheduled: dict[str, float], rate: float) -> bool:
        now = time.monotonic()
        in_flight = len(scheduled) - len(routes) // RECIPIENTS_PER_DOCUMENT
        if in_flight > max(100.0, rate * OVERLOAD_AGE_S):
            return True
        stale = 0
        for delivery_id in routes[-int(rate * 10) - 1 :]:
            copy = self.tally.copies[delivery_id]
            if copy.arrived is None and now - copy.scheduled > OVERLOAD_AGE_S:
                stale += 1
        return stale > max(30.0, rate / 2)

    async def _drain(self, routes: list[str], within_s: float) -> bool:
        """Waits until every copy in `routes` is acknowledged; False if time ran out."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if all(self.tally.copies[d].acknowledged is not None for d in routes):
                return True
            await asyncio.sleep(0.05)
        return False

    async def drain_all(self, stall_s: float, within_s: float) -> bool:
        """Waits until every copy of the run is acknowledged, as long as acknowledgements keep
        coming (none for `stall_s`: gives up) and at most `within_s`."""
        deadline = time.monotonic() + within_s
        done, progress = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_done = sum(c.acknowledged is not None for c in self.tally.copies.values())
            if now_done == len(self.tally.copies):
                return True
            if now_done > done:
                done, progress = now_done, time.monotonic()
            elif time.monotonic() - progress > stall_s:
                return False
            await asyncio.sleep(0.5)
        return False

    @property
    def run_id(self) -> int:
        """What makes this run's document numbers unique on the database's day."""
        return self._run

    @property
    def unacknowledged(self) -> int:
        return sum(c.acknowledged is None for c in self.tally.copies.values())

    async def _receive(self, index: int, subscribed: asyncio.Event) -> None:
        """Recipient `index`'s push stream, reopened if it breaks (close() and
        disconnect_recipient() end it)."""
        if self._ack_mode is AckMode.STREAM:
            await self._receive_acknowledging(index, subscribed)
            return
        client = self.recipients[index]
        batch = _Batch(client) if self._ack_mode is AckMode.BATCH else None
        if batch is not None:
            self._spawn(index, self._flush(batch))
        try:
            while True:
                call = client.receive()
                try:
                    await call.subscribed()
                    subscribed.set()
                    async for item in call:
                        if not item.HasField("delivery"):
                            # A notice (none expected: bench recipients send nothing).
                            notice = item.status if item.HasField("status") else item.recall
                            await client.acknowledge_notice(notice.notice_id)
                        elif self._arrived(item.delivery.delivery_id):
                            if batch is None:
                                work = self._acknowledge(client, item.delivery.delivery_id)
                                self._spawn(index, work)
                            else:
                                batch.add(item.delivery.delivery_id)
                except (grpc.aio.AioRpcError, ReceiveStreamError):
                    if self._stopping:
                        return
                    self.stream_restarts += 1
                    await asyncio.sleep(0.2)
                finally:
                    call.cancel()
        finally:
            if batch is not None:
                # What arrived is acknowledged once more before the connection closes.
                batch.closing = True
                batch.ready.set()

    async def _receive_acknowledging(self, index: int, subscribed: asyncio.Event) -> None:
        """ReceiveStream: each copy acknowledged on the stream as it arrives."""
        client = self.recipients[index]
        while not self._leaving[index]:
            try:
                async with client.receive_stream(window=STREAM_WINDOW) as stream:
                    self._open_streams[index] = stream
                    # The run's warm-up step makes sure the stream is attached before measuring.
                    subscribed.set()
                    async for item in stream:
                        if self._leaving[index]:
                            continue  # hanging up: pushed again on the next stream
                        if not item.HasField("delivery"):
                            stream.acknowledge(item)
                            continue
                        delivery_id = item.delivery.delivery_id
                        if self._arrived(delivery_id):
                            stream.acknowledge(item)
                            work = self._confirmed(stream, delivery_id, time.monotonic())
                            self._spawn(index, work)
            except grpc.aio.AioRpcError:
                if self._stopping or self._leaving[index]:
                    return
                self.stream_restarts += 1
                await asyncio.sleep(0.2)
            finally:
                self._open_streams[index] = None

    async def _confirmed(
        self, stream: AcknowledgingStream, delivery_id: str, started: float
    ) -> None:
        try:
            result = await stream.confirmed(delivery_id)
        except grpc.aio.AioRpcError as exc:
            # The stream broke first: the copy is pushed again on the next one, unless docaxis
            # had stored the acknowledgement already.
            self.tally.ack_errors[exc.code().name] += 1
            self.tally.unconfirmed.add(delivery_id)
            return
        except asyncio.CancelledError:
            # The DMS hung up the stream (cut_stream) before the confirmation came.
            self.tally.unconfirmed.add(delivery_id)
            raise
        if result.error:
            self.tally.ack_errors["refused on the stream"] += 1
        else:
            self._acknowledged(delivery_id, started)

    async def _flush(self, batch: _Batch) -> None:
        """Sends what `batch` gathered, one AcknowledgeBatch call at a time, until the
        recipient hangs up."""
        while True:
            await batch.ready.wait()
            await asyncio.sleep(BATCH_LINGER_S)
            batch.ready.clear()
            while batch.pending:
                ids, batch.pending = batch.pending[:BATCH_MAX], batch.pending[BATCH_MAX:]
                started = time.monotonic()
                try:
                    results = await batch.client.acknowledge_batch(
                        [pb.AcknowledgeRequest(delivery_id=d) for d in ids]
                    )
                except grpc.aio.AioRpcError as exc:
                    self.tally.ack_errors[exc.code().name] += 1
                    if batch.closing:
                        return  # not acknowledged: pushed again on the next stream
                    batch.pending[:0] = ids  # tried again
                    await asyncio.sleep(0.1)
                    continue
                for delivery_id, result in zip(ids, results, strict=True):
                    if result.error:
                        self.tally.ack_errors["refused in a batch"] += 1
                    else:
                        self._acknowledged(delivery_id, started)
            if batch.closing:
                return

    def _spawn(self, recipient: int, work: Coroutine[Any, Any, None]) -> None:
        """Runs a recipient's acknowledgement work; its hang-up waits for it."""
        task = asyncio.create_task(work)
        acks = self._acks[recipient]
        acks.add(task)
        task.add_done_callback(acks.discard)

    def _arrived(self, delivery_id: str) -> bool:
        """Records a pushed copy; False for one pushed again after its acknowledgement (a
        duplicate: never acknowledged again, only counted)."""
        now = time.monotonic()
        copy = self.tally.copies.get(delivery_id)
        if copy is None:
            # Pushed before its Submit answered: the route is not known yet.
            if delivery_id in self.tally.arrivals_before_route:
                self.tally.redelivered += 1
            else:
                self.tally.arrivals_before_route[delivery_id] = now
        elif copy.acknowledged is not None:
            self.tally.duplicates += 1
            return False
        elif copy.arrived is not None:
            self.tally.redelivered += 1
        else:
            copy.arrived = now
        return True

    async def _acknowledge(self, client: AgencyClient, delivery_id: str) -> None:
        for attempt in range(ACK_RETRIES):
            started = time.monotonic()
            try:
                await client.acknowledge(delivery_id)
            except grpc.aio.AioRpcError as exc:
                self.tally.ack_errors[exc.code().name] += 1
                if attempt + 1 < ACK_RETRIES:
                    await asyncio.sleep(0.1)
                continue
            self._acknowledged(delivery_id, started)
            return

    def _acknowledged(self, delivery_id: str, started: float) -> None:
        """Records that docaxis confirmed the copy's acknowledgement (sent at `started`)."""
        done = time.monotonic()
        copy = self.tally.copies.get(delivery_id)
        if copy is None:  # its Submit has not answered yet
            self.tally.acknowledged_before_route[delivery_id] = (done, (done - started) * 1e3)
        else:
            copy.acknowledged, copy.acknowledge_ms = done, (done - started) * 1000
