"""ExchangeService over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from services.common.errors import DomainError, FieldViolation, ValidationError
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.exchange.adapters.rabbit import InFlight, RabbitInbox
from services.exchange.entrypoints.convert import (
    delivery_to_pb,
    receipt_to_pb,
    submission_from_pb,
    timestamp,
    track_to_pb,
)
from services.exchange.service_layer.handlers import ExchangeHandlers

log = structlog.get_logger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExchangeService"].full_name
DRAIN_TIMEOUT_S = 120.0


class ExchangeServicer(pb_grpc.ExchangeServiceServicer):
    def __init__(
        self,
        handlers: ExchangeHandlers,
        callers: CallerResolver,
        inbox: RabbitInbox,
        in_flight: InFlight,
    ) -> None:
        self._handlers = handlers
        self._callers = callers
        self._inbox = inbox
        self._in_flight = in_flight

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
                await _drain(request_iterator)
                raise
            return pb.UploadAttachmentResponse(sha256=declaration.sha256, size=declaration.size)

    async def Submit(
        self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SubmitResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            submission, problems = submission_from_pb(request)
            result = await self._handlers.submit(agency, submission, wire_problems=problems)
            return pb.SubmitResponse(
                receipt=receipt_to_pb(result.receipt), replayed=result.replayed
            )

    async def Receive(
        self, request: pb.ReceiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ReceiveResponse]:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
        pushed: list[str] = []
        log.info("receive_stream_opened", agency=agency)
        try:
            async with self._inbox.consume(agency) as messages:
                async for item in messages:
                    if self._in_flight.holds(item.delivery_id):
                        # A second copy (the relay republished after a crash) of a delivery that
                        # is already pushed and awaiting its acknowledgement.
                        await item.message.ack()
                        continue
                    # Checked again before every push (cached, so cheap): a certificate revoked
                    # while its stream is open stops receiving at once.
                    async with domain_errors(context):
                        self._callers.resolve(context)
                    push = await self._handlers.begin_push(item.delivery_id, agency)
                    if push is None:
                        await item.message.ack()  # acknowledged earlier, or not deliverable
                        continue
                    self._in_flight.add(item.delivery_id, item.message)
                    pushed.append(item.delivery_id)
                    yield pb.ReceiveResponse(delivery=delivery_to_pb(push))
        finally:
            # The stream's channel is closed by now: what was not acknowledged is back in the
            # queue for the next Receive.
            self._in_flight.forget(pushed)
            log.info("receive_stream_closed", agency=agency, pushed=len(pushed))

    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AcknowledgeResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            result = await self._handlers.acknowledge(agency, request.delivery_id)
            # Only after the database commit: a crash in between redelivers, and the redelivered
            # copy is skipped because the delivery is already acknowledged.
            await self._in_flight.settle(request.delivery_id)
            return pb.AcknowledgeResponse(
                acknowledged_at=timestamp(result.acknowledged_at),
                already_acknowledged=result.already_acknowledged,
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
            return track_to_pb(track)

    async def GetTransportReceipt(
        self, request: pb.GetTransportReceiptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTransportReceiptResponse:
        async with domain_errors(context):
            agency = (await self._callers.authenticate(context)).require_agency()
            receipt = await self._handlers.transport_receipt(agency, request.delivery_id)
            return pb.GetTransportReceiptResponse(receipt=receipt)

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


async def _drain(requests: AsyncIterator[pb.UploadAttachmentRequest]) -> None:
    """Reads (and drops) what the client is still sending before refusing an upload.

    grpcio's asyncio client reports INTERNAL instead of the server's status when the server
    ends a client stream before the client has finished writing (grpc/grpc#36066), so a refusal
    is sent only once the client half-closes, or after a bounded wait.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in requests:
                pass


async def _chunks(requests: AsyncIterator[pb.UploadAttachmentRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise ValidationError(
                "one declaration per upload",
                [FieldViolation("declaration", "only the first message is a declaration")],
            )
        yield request.chunk
