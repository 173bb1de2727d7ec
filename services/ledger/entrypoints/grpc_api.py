"""LedgerService over gRPC: checkpoints, entries, proofs and receipts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from docaxis.ledger.v1 import ledger_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as pb_grpc

from docaxis_client.ledger.policy import TrustPolicy, WitnessKey
from docaxis_client.ledger.receipt import build_receipt
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    ValidationError,
)
from services.common.grpc_errors import domain_errors
from services.common.identity import Caller, CallerResolver, Role
from services.ledger.adapters.postgres import PostgresLedgerReader, StoredEntry
from services.ledger.witnesses import WitnessEndpoint

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["LedgerService"].full_name
MAX_ENTRIES = 1000


def _parties(entry: StoredEntry) -> set[str]:
    body = json.loads(entry.body)
    to = body.get("to")
    names = {body.get("from")} | (set(to) if isinstance(to, list) else {to})
    return {name for name in names if isinstance(name, str)}


def _check_party(caller: Caller, entries: list[StoredEntry]) -> None:
    """Administrators see everything; an agency sees what it sent or received."""
    if caller.role is Role.ADMIN:
        return
    agency = caller.require_agency()
    if not any(agency in _parties(e) for e in entries):
        raise NotFoundError("no such entry among those of your documents")


class LedgerServicer(pb_grpc.LedgerServiceServicer):
    def __init__(
        self,
        reader: PostgresLedgerReader,
        callers: CallerResolver,
        origin: str,
        *,
        witnesses: Sequence[WitnessEndpoint] = (),
        quorum: int = 0,
    ) -> None:
        self._reader = reader
        self._callers = callers
        self._origin = origin
        self._witnesses = tuple(WitnessKey(w.verifier) for w in witnesses)
        self._quorum = quorum

    async def trust_policy(self) -> TrustPolicy:
        """The log's own account of its keys and witnesses; auditors should also obtain it out
        of band, since whoever runs the log writes this answer."""
        keys = await self._reader.signing_keys()
        if not keys:
            raise RejectedError("the ledger has not signed a checkpoint yet", reason="UNAVAILABLE")
        own = TrustPolicy.from_signing_keys(self._origin, keys)
        return TrustPolicy(own.origin, own.log_keys, self._witnesses, self._quorum)

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
            entries = await self._reader.document_entries(request.document_uuid)
            if not entries:
                raise NotFoundError("no such document in the log")
            _check_party(caller, entries)
            checkpoint = await self._reader.latest_checkpoint()
            latest = entries[-1]
            receipt = b""
            pending = len(entries)
            if checkpoint is not None:
                pending = sum(1 for e in entries if e.seq >= checkpoint.size)
                if latest.seq < checkpoint.size:
                    proof = await self._reader.inclusion_proof(latest.seq, checkpoint.size)
                    receipt = build_receipt(latest.seq, proof, checkpoint.note)
            return pb.GetDocumentEventsResponse(
                events=[
                    pb.DocumentEvent(index=e.seq, entry_type=e.entry_type, leaf_hash=e.leaf_hash)
                    for e in entries
                ],
                latest_receipt=receipt,
                pending_events=pending,
            )

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInclusionProofResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            await self._check_size(request.tree_size)
            if request.index >= request.tree_size:
                raise ValidationError("invalid index", [FieldViolation("index", "< tree_size")])
            proof = await self._reader.inclusion_proof(request.index, request.tree_size)
            return pb.GetInclusionProofResponse(hashes=proof)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetConsistencyProofResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            await self._check_size(request.new_size)
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
            entries = await self._reader.entries(request.index, request.index + 1)
            if not entries:
                raise NotFoundError(f"no entry {request.index}")
            _check_party(caller, entries)
            checkpoint = await self._reader.latest_checkpoint()
            if checkpoint is None or checkpoint.size <= request.index:
                raise RejectedError(
                    "no published checkpoint covers this entry yet; retry shortly",
                    reason="UNAVAILABLE",
                )
            proof = await self._reader.inclusion_proof(request.index, checkpoint.size)
            return pb.GetReceiptResponse(
                receipt=build_receipt(request.index, proof, checkpoint.note), entry=entries[0].body
            )

    async def GetTrustPolicy(
        self, request: pb.GetTrustPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTrustPolicyResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            return pb.GetTrustPolicyResponse(policy_json=(await self.trust_policy()).to_json())

    async def _check_size(self, size: int) -> None:
        if size == 0 or size > await self._reader.tree_size():
            raise ValidationError(
                "invalid tree size", [FieldViolation("tree_size", "between 1 and the log's size")]
            )
