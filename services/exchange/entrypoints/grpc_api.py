"""ExchangeService over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
import structlog
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.receive import SUBSCRIBED_HEADER
from services.common import tracing
from services.common.errors import (
    DomainError,
    FieldViolation,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from services.common.grpc_errors import abort_with_domain_error, domain_errors, status_details
from services.common.grpc_handlers import drain_requests
from services.common.grpc_serialized import passing_serialized
from services.common.identity import CallerResolver
from services.common.metrics import (
    AxisMetrics,
    DeliveryMode,
    SubmissionOutcome,
)
from services.common.rabbit import BROKER_ERRORS
from services.exchange.domain.withdrawal import CopyWithdrawnError
from services.exchange.entrypoints.convert import (
    receipt_to_pb,
    submission_from_pb,
    timestamp,
    track_to_pb,
)
from services.exchange.entrypoints.lifecycle_convert import (
    add_lifecycles,
    fetched_notice,
    link_to_pb,
    pending_to_pb,
    recall_outcome_to_pb,
    report_from_pb,
    status_to_pb,
)
from services.exchange.entrypoints.streams import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    AcknowledgingStream,
    Pusher,
    acknowledged_items,
    acknowledgement_result,
    count_acknowledged,
    stop,
    unless_revoked,
    window_of,
)
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.inbox_ports import AgencyInboxes, InFlight
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import Acknowledgement, PushItem
from services.exchange.service_layer.upload_ports import UploadState

log = structlog.get_logger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExchangeService"].full_name
MAX_SUBMIT_BATCH = 100
SUBMIT_BATCH_METHOD = f"/{SERVICE_NAME}/SubmitBatch"
# The methods whose pushed items go out serialized by the servicer (DeliveryProtos.received).
SERIALIZING_METHODS = ("Receive", "ReceiveStream")


class LedgerAnchor(Protocol):
    async def latest_note(self) -> bytes:
        """The latest served checkpoint note with its cosignatures, or b"" before the first."""
        ...


class ExchangeServicer(pb_grpc.ExchangeServiceServicer):
    def __init__(
        self,
        handlers: ExchangeHandlers,
        callers: CallerResolver,
        inbox: AgencyInboxes,
        in_flight: InFlight,
        lifecycle: LifecycleHandlers | None = None,
        *,
        metrics: AxisMetrics,
        ledger: LedgerAnchor | None = None,
    ) -> None:
        self._ledger = ledger
        self._handlers = handlers
        self._callers = callers
        self._inbox = inbox
        self._in_flight = in_flight
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._pusher = Pusher(handlers, lifecycle, in_flight, metrics)

    async def _ledger_checkpoint(self) -> bytes:
        """The ledger's latest served (cosigned) checkpoint: a proof anchor for the client."""
        return b"" if self._ledger is None else await self._ledger.latest_note()

    def _handed_over(self, mode: DeliveryMode, push: PushItem) -> None:
        # Every copy is accepted together with its document, at the document's submission time.
        self._metrics.handed_over(mode, push.submitted_at, first=push.first_handover)

    def _require_lifecycle(self) -> LifecycleHandlers:
        if self._lifecycle is None:
            raise NotFoundError("statuses, recalls and pull mode are not served here")
        return self._lifecycle

    async def UploadAttachment(
        self,
        request_iterator: AsyncIterator[pb.UploadAttachmentRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.UploadAttachmentResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("part") != "declaration":
                raise ValidationError(
                    "an upload starts with its declaration",
                    [FieldViolation("declaration", "the first message must be the declaration")],
                )
            declaration = first.declaration
            try:
                await self._handlers.upload_attachment(
                    agency, declaration.sha256, declaration.size, _chunks(request_iterator)
                )
            except DomainError:
                await drain_requests(request_iterator)
                raise
            return pb.UploadAttachmentResponse(sha256=declaration.sha256, size=declaration.size)

    async def BeginUpload(
        self, request: pb.BeginUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BeginUploadResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            state = await self._handlers.uploads.begin(
                agency, request.declaration.sha256, request.declaration.size
            )
            return pb.BeginUploadResponse(upload=upload_status_to_pb(state))

    async def UploadChunks(
        self,
        request_iterator: AsyncIterator[pb.UploadChunksRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.UploadChunksResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            try:
                state = await self._handlers.uploads.receive(
                    agency, ((r.upload_id, r.offset, r.chunk) async for r in request_iterator)
                )
            except DomainError:
                await drain_requests(request_iterator)
                raise
            return pb.UploadChunksResponse(upload=upload_status_to_pb(state))

    async def GetUpload(
        self, request: pb.GetUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetUploadResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            state = await self._handlers.uploads.state(agency, request.upload_id)
            return pb.GetUploadResponse(upload=upload_status_to_pb(state))

    async def Submit(
        self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SubmitResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            return await self._submit(agency, request)

    async def SubmitBatch(
        self, request: pb.SubmitBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SubmitBatchResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            if len(request.documents) > MAX_SUBMIT_BATCH:
                raise ValidationError(
                    "too many documents",
                    [FieldViolation("documents", f"at most {MAX_SUBMIT_BATCH} per call")],
                )
            # Each document on its own, concurrently: verified, stored and answered as Submit
            # would; one refusal leaves the others untouched.
            outcomes = await asyncio.gather(
                *(self._submit_one(agency, document) for document in request.documents)
            )
            return pb.SubmitBatchResponse(results=outcomes)

    async def _submit_one(self, agency: str, request: pb.SubmitRequest) -> pb.SubmitResult:
        try:
            return pb.SubmitResult(response=await self._submit(agency, request))
        except DomainError as exc:
            self._metrics.rejected(SUBMIT_BATCH_METHOD, exc.reason)
            return pb.SubmitResult(error=status_details(exc))

    async def _submit(self, agency: str, request: pb.SubmitRequest) -> pb.SubmitResponse:
        submission, problems = submission_from_pb(request)
        if self._lifecycle is not None:  # updates and replacements supersede copies
            result = await self._lifecycle.submit(agency, submission, wire_problems=problems)
        else:
            result = await self._handlers.submit(agency, submission, wire_problems=problems)
        self._metrics.submitted(
            SubmissionOutcome.REPLAYED if result.replayed else SubmissionOutcome.ACCEPTED
        )
        tracing.annotate(document_uuid=result.receipt.document_uuid)
        return pb.SubmitResponse(
            receipt=receipt_to_pb(result.receipt),
            replayed=result.replayed,
            ledger_checkpoint=await self._ledger_checkpoint(),
        )

    async def Receive(  # type: ignore[override]  # items go out serialized: add_to_server
        self, request: pb.ReceiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ReceiveResponse | bytes]:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
        pushed: list[str] = []
        log.info("receive_stream_opened", agency=agency)
        try:
            async with self._inbox.consume(agency) as inbox:
                # Attached to the queue: tell the DMS, so that it need not guess when to send.
                await context.send_initial_metadata(((SUBSCRIBED_HEADER, "true"),))
                try:
                    while True:
                        async with domain_errors(context):
                            # Ended at once should the agency's certificate be revoked meanwhile.
                            batch = await unless_revoked(
                                inbox.batch(DEFAULT_WINDOW), self._callers, context
                            )
                            # Checked again before every batch (cached, so cheap).
                            self._callers.resolve(context)
                        if not batch:
                            break
                        for message, item in await self._pusher.claim(agency, batch):
                            self._in_flight.add(message.item_id, message.message)
                            pushed.append(message.item_id)
                            yield b"".join(item)
                finally:
                    # Before the channel closes and the broker requeues what was not
                    # acknowledged: otherwise the next stream could receive a requeued copy
                    # while this one still "holds" it, ack it as a duplicate and lose it.
                    self._in_flight.forget(pushed)
        except BROKER_ERRORS as exc:
            await self._broker_lost(context, agency, exc)
        finally:
            log.info("receive_stream_closed", agency=agency, pushed=len(pushed))

    async def _broker_lost(
        self, context: grpc.aio.ServicerContext[Any, Any], agency: str, exc: BaseException
    ) -> None:
        # The broker dropped the channel or connection (restart, failover): nothing is lost,
        # unacknowledged items are requeued; tell the DMS to reconnect.
        log.warning("receive_stream_broker_lost", agency=agency, error=repr(exc))
        await abort_with_domain_error(
            context,
            UnavailableError(
                "the message broker dropped this stream; reconnect", retry_after_s=1.0
            ),
        )

    async def ReceiveStream(  # type: ignore[override]  # items go out serialized: add_to_server
        self,
        request_iterator: AsyncIterator[pb.ReceiveStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ReceiveStreamResponse | bytes]:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            lifecycle = self._require_lifecycle()
            # The first request opens the stream: its window applies before anything is pushed.
            first = await anext(aiter(request_iterator), None)
            if first is None:
                return
            stream = AcknowledgingStream(
                agency,
                self._pusher,
                lifecycle,
                self._in_flight,
                self._callers,
                self._metrics,
                context,
                window=window_of(first, DEFAULT_WINDOW),
            )
        log.info("receive_stream_opened", agency=agency, window=stream.window, acknowledging=True)
        stream.room.set()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with self._inbox.consume(agency, prefetch=MAX_WINDOW) as inbox:
                await context.send_initial_metadata(((SUBSCRIBED_HEADER, "true"),))
                try:
                    if first.acknowledgements:
                        await stream.acknowledge(list(first.acknowledgements))
                    tasks = [
                        asyncio.create_task(stream.read(request_iterator)),
                        asyncio.create_task(stream.push(inbox)),
                    ]
                    async with domain_errors(context):
                        async for response in stream.responses():
                            yield response
                finally:
                    await stop(*tasks)
                    stream.close()
                    self._in_flight.forget(stream.pushed)
        except BROKER_ERRORS as exc:
            await self._broker_lost(context, agency, exc)
        finally:
            log.info("receive_stream_closed", agency=agency, pushed=len(stream.pushed))

    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AcknowledgeResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            if self._lifecycle is None:
                if request.WhichOneof("item") == "notice_id":
                    self._require_lifecycle()
                outcome: Acknowledgement | DomainError = await self._handlers.acknowledge(
                    agency, request.delivery_id
                )
            else:
                # Also records the 01 (arrived) status, group-committed with other callers'.
                (outcome,) = await self._lifecycle.acknowledge_items(
                    agency, acknowledged_items([request])
                )
            if isinstance(outcome, CopyWithdrawnError):
                # The recipient's own copy, finished: no stream is to push it again.
                await self._in_flight.settle(request.delivery_id)
            if isinstance(outcome, DomainError):
                raise outcome
            # Only after the database commit: a crash in between redelivers, and the redelivered
            # copy is skipped because the item is already acknowledged.
            await self._in_flight.settle(request.delivery_id or request.notice_id)
            count_acknowledged(self._metrics, [request], [outcome])
            return pb.AcknowledgeResponse(
                acknowledged_at=timestamp(outcome.acknowledged_at),
                already_acknowledged=outcome.already_acknowledged,
            )

    async def AcknowledgeBatch(
        self, request: pb.AcknowledgeBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AcknowledgeBatchResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            outcomes = await self._require_lifecycle().acknowledge_items(
                agency, acknowledged_items(request.items)
            )
            for item, outcome in zip(request.items, outcomes, strict=True):
                if isinstance(outcome, Acknowledgement):
                    await self._in_flight.settle(item.delivery_id or item.notice_id)
            count_acknowledged(self._metrics, request.items, outcomes)
            return pb.AcknowledgeBatchResponse(
                results=[
                    acknowledgement_result(i, o)
                    for i, o in zip(request.items, outcomes, strict=True)
                ]
            )

    async def Track(
        self, request: pb.TrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TrackResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            which = request.WhichOneof("document")
            track = await self._handlers.track(
                agency,
                document_uuid=request.document_uuid if which == "document_uuid" else None,
                document_id=request.document_id if which == "document_id" else None,
            )
            response = track_to_pb(track)
            if self._lifecycle is not None:
                add_lifecycles(response, await self._lifecycle.lifecycles(track))
                in_reply_to, replies = await self._lifecycle.links(agency, track)
                response.in_reply_to.extend(link_to_pb(link) for link in in_reply_to)
                response.replies.extend(link_to_pb(link) for link in replies)
            response.ledger_checkpoint = await self._ledger_checkpoint()
            return response

    async def ReportStatus(
        self, request: pb.ReportStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportStatusResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            report, problems = report_from_pb(request)
            outcome = await self._require_lifecycle().report_status(
                agency, request.delivery_id, report, wire_problems=problems
            )
            return pb.ReportStatusResponse(
                status=status_to_pb(outcome.entry), already_recorded=outcome.already_recorded
            )

    async def Recall(
        self, request: pb.RecallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecallResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            outcomes = await self._require_lifecycle().recall(
                agency, request.document_uuid, request.reason, list(request.recipients)
            )
            return pb.RecallResponse(recipients=[recall_outcome_to_pb(o) for o in outcomes])

    async def ListPending(
        self, request: pb.ListPendingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPendingResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            items, token = await self._require_lifecycle().list_pending(
                agency, request.page_size, request.page_token
            )
            return pb.ListPendingResponse(
                items=[pending_to_pb(i) for i in items], next_page_token=token
            )

    async def Fetch(
        self, request: pb.FetchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FetchResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            lifecycle = self._require_lifecycle()
            if request.WhichOneof("item") == "notice_id":
                return fetched_notice(await lifecycle.fetch_notice(agency, request.notice_id))
            push = await lifecycle.fetch_delivery(agency, request.delivery_id)
            self._handed_over(DeliveryMode.PULL, push)
            response = pb.FetchResponse()
            self._pusher.deliveries.fill(response.delivery, push)
            return response

    async def GetTransportReceipt(
        self, request: pb.GetTransportReceiptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTransportReceiptResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            receipt = await self._handlers.transport_receipt(agency, request.delivery_id)
            return pb.GetTransportReceiptResponse(
                receipt=receipt, ledger_checkpoint=await self._ledger_checkpoint()
            )

    async def DownloadAttachment(
        self, request: pb.DownloadAttachmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.DownloadAttachmentResponse]:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            pieces = await self._handlers.download(
                agency, request.document_uuid, request.sha256, request.offset
            )
        async for offset, chunk in pieces:
            yield pb.DownloadAttachmentResponse(offset=offset, chunk=chunk)


async def _chunks(requests: AsyncIterator[pb.UploadAttachmentRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise ValidationError(
                "one declaration per upload",
                [FieldViolation("declaration", "only the first message is a declaration")],
            )
        yield request.chunk


def upload_status_to_pb(state: UploadState) -> pb.UploadStatus:
    return pb.UploadStatus(
        upload_id=state.upload_id,
        sha256=state.sha256,
        size=state.size,
        committed_size=state.committed_size,
        complete=state.complete,
    )


def add_to_server(servicer: ExchangeServicer, server: Any) -> None:
    """The generated registration, Receive's and ReceiveStream's pushed items passed to the
    wire as the servicer serialized them."""
    pb_grpc.add_ExchangeServiceServicer_to_server(
        servicer, passing_serialized(server, SERVICE_NAME, SERIALIZING_METHODS)
    )
