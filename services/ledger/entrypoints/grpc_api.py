"""LedgerService over gRPC: checkpoints, entries, proofs and receipts."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import structlog
from docaxis.ledger.v1 import ledger_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as pb_grpc

from docaxis_client.ledger.tiles import (
    MAX_TILE_LEVEL,
    TILE_WIDTH,
)
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver, Role
from services.common.metrics import AxisMetrics, ForkSource
from services.ledger.service_layer.handlers import LedgerHandlers

log = structlog.get_logger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["LedgerService"].full_name
MAX_ENTRIES = 1000


class LedgerServicer(pb_grpc.LedgerServiceServicer):
    def __init__(
        self,
        handlers: LedgerHandlers,
        callers: CallerResolver,
        *,
        metrics: AxisMetrics | None = None,
    ) -> None:
        self._handlers = handlers
        self._reader = handlers.reader  # plain reads: checkpoints, entries, proofs, tiles
        self._callers = callers
        self._metrics = metrics

    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCheckpointResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            checkpoint = await self._reader.latest_checkpoint()
            if checkpoint is None:
                raise NotFoundError("no checkpoint has been published yet")
            return pb.GetCheckpointResponse(
                note=checkpoint.note, size=checkpoint.size, root_hash=checkpoint.root
            )

    async def GetEntries(
        self, request: pb.GetEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetEntriesResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            if caller.role is not Role.ADMIN:
                raise PermissionDeniedError("reading the raw log is for auditors (administrators)")
            if request.end <= request.start or request.end - request.start > MAX_ENTRIES:
                raise ValidationError(
                    "invalid range",
                    [FieldViolation("end", f"start < end <= start + {MAX_ENTRIES}")],
                )
            entries = await self._reader.entries(request.start, request.end)
            return pb.GetEntriesResponse(
                entries=[pb.Entry(index=e.seq, body=e.body, leaf_hash=e.leaf_hash) for e in entries]
            )

    async def GetDocumentEvents(
        self, request: pb.GetDocumentEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetDocumentEventsResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            try:
                uuid.UUID(request.document_uuid)
            except ValueError:
                raise ValidationError(
                    "invalid document uuid", [FieldViolation("document_uuid", "must be a UUID")]
                ) from None
            events = await self._handlers.document_events(caller, request.document_uuid)
            return pb.GetDocumentEventsResponse(
                events=[
                    pb.DocumentEvent(index=e.seq, entry_type=e.entry_type, leaf_hash=e.leaf_hash)
                    for e in events.entries
                ],
                latest_receipt=events.latest_receipt,
                pending_events=events.pending,
            )

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInclusionProofResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            await self._handlers.check_size(request.tree_size)
            if request.index >= request.tree_size:
                raise ValidationError("invalid index", [FieldViolation("index", "< tree_size")])
            proof = await self._reader.inclusion_proof(request.index, request.tree_size)
            return pb.GetInclusionProofResponse(hashes=proof)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetConsistencyProofResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            await self._handlers.check_size(request.new_size)
            if not 0 < request.old_size <= request.new_size:
                raise ValidationError(
                    "invalid sizes", [FieldViolation("old_size", "0 < old_size <= new_size")]
                )
            proof = await self._reader.consistency_proof(request.old_size, request.new_size)
            return pb.GetConsistencyProofResponse(hashes=proof)

    async def GetReceipt(
        self, request: pb.GetReceiptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReceiptResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            receipt, entry = await self._handlers.receipt(caller, request.index)
            return pb.GetReceiptResponse(receipt=receipt, entry=entry.body)

    async def GetTrustPolicy(
        self, request: pb.GetTrustPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTrustPolicyResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            return pb.GetTrustPolicyResponse(
                policy_json=(await self._handlers.trust_policy()).to_json()
            )

    async def GetTile(
        self, request: pb.GetTileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTileResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            width = _width(request.width)
            if request.level > MAX_TILE_LEVEL:
                raise ValidationError(
                    "invalid tile", [FieldViolation("level", f"at most {MAX_TILE_LEVEL}")]
                )
            size = await self._handlers.served_size()
            data = await self._reader.tile(request.level, request.index, width, size)
            if data is None:
                raise NotFoundError(f"no such tile in the tree of the served checkpoint ({size})")
            return pb.GetTileResponse(data=data, tree_size=size)

    async def GetEntryBundle(
        self, request: pb.GetEntryBundleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetEntryBundleResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            width = _width(request.width)
            size = await self._handlers.served_size()
            data = await self._reader.entry_bundle(request.index, width, size)
            if data is None:
                raise NotFoundError(f"no such bundle in the served checkpoint's tree ({size})")
            return pb.GetEntryBundleResponse(data=data, tree_size=size)

    async def ReportFork(
        self, request: pb.ReportForkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportForkResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            reporter = caller.agency_code or caller.subject or caller.role.value
            report = await self._handlers.report_fork(
                reporter, request.trusted_note, request.conflicting_note, request.detail
            )
            log.error(
                "ledger_fork_reported",
                reporter=reporter,
                finding=report.finding,
                id=report.report_id,
            )
            if self._metrics is not None:
                self._metrics.ledger_fork(ForkSource.CLIENT)
            return pb.ReportForkResponse(report_id=report.report_id, finding=report.finding)


def _width(width: int) -> int:
    if width > TILE_WIDTH:
        raise ValidationError("invalid width", [FieldViolation("width", "0 (full) or 1..256")])
    return width or TILE_WIDTH
