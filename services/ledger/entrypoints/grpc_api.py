"""LedgerService over gRPC: checkpoints, entries, proofs and receipts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import structlog
from docaxis.ledger.v1 import ledger_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as pb_grpc

from docaxis_client.ledger.merkle import ProofError, verify_consistency
from docaxis_client.ledger.note import Checkpoint, NoteError, open_checkpoint
from docaxis_client.ledger.policy import TrustPolicy, WitnessKey
from docaxis_client.ledger.receipt import build_receipt
from docaxis_client.ledger.tiles import (
    MAX_TILE_LEVEL,
    TILE_WIDTH,
)
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    ValidationError,
)
from services.common.grpc_errors import domain_errors
from services.common.identity import Caller, CallerResolver, Role
from services.common.metrics import AxisMetrics, ForkSource
from services.ledger.service_layer.ports import ForkRecorder, LedgerReader, StoredEntry
from services.ledger.witnesses import WitnessEndpoint

log = structlog.get_logger(__name__)

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
        reader: LedgerReader,
        callers: CallerResolver,
        origin: str,
        *,
        witnesses: Sequence[WitnessEndpoint] = (),
        quorum: int = 0,
        forks: ForkRecorder | None = None,
        metrics: AxisMetrics | None = None,
    ) -> None:
        self._reader = reader
        self._callers = callers
        self._origin = origin
        self._forks = forks
        self._metrics = metrics
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
            size = await self._served_size()
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
            size = await self._served_size()
            data = await self._reader.entry_bundle(request.index, width, size)
            if data is None:
                raise NotFoundError(f"no such bundle in the served checkpoint's tree ({size})")
            return pb.GetEntryBundleResponse(data=data, tree_size=size)

    async def ReportFork(
        self, request: pb.ReportForkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportForkResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            if self._forks is None:
                raise RejectedError("this process keeps no fork reports", reason="UNAVAILABLE")
            policy = await self.trust_policy()
            notes = {"trusted_note": request.trusted_note}
            notes["conflicting_note"] = request.conflicting_note
            opened: list[Checkpoint] = []
            for name, note in notes.items():
                try:
                    opened.append(open_checkpoint(note, self._origin, policy.verifiers)[0])
                except NoteError as exc:
                    raise _no_fork(name, f"not a checkpoint of this log's key: {exc}") from None
            finding = await self._fork_finding(*opened)
            if finding is None:
                raise _no_fork("conflicting_note", "the log's consistency proof joins the two")
            reporter = caller.agency_code or caller.subject or caller.role.value
            report_id = await self._forks.record_fork(
                reporter,
                request.trusted_note,
                request.conflicting_note,
                f"{finding}; reporter says: {request.detail[:500]}",
            )
            log.error("ledger_fork_reported", reporter=reporter, finding=finding, id=report_id)
            if self._metrics is not None:
                self._metrics.ledger_fork(ForkSource.CLIENT)
            return pb.ReportForkResponse(report_id=report_id, finding=finding)

    async def _fork_finding(self, a: Checkpoint, b: Checkpoint) -> str | None:
        """Why two checkpoints signed by the log's key cannot both be its history, or None."""
        if a.size == b.size:
            return None if a.root_hash == b.root_hash else f"two roots for size {a.size}"
        old, new = (a, b) if a.size < b.size else (b, a)
        if new.size > await self._reader.tree_size():
            return f"a checkpoint of size {new.size}, which this log never reached"
        if old.size == 0:
            return None
        proof = await self._reader.consistency_proof(old.size, new.size)
        try:
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
        except ProofError as exc:
            return f"no consistency from size {old.size} to {new.size}: {exc}"
        return None

    async def _served_size(self) -> int:
        checkpoint = await self._reader.latest_checkpoint()
        if checkpoint is None:
            raise NotFoundError("no checkpoint has been published yet")
        return checkpoint.size

    async def _check_size(self, size: int) -> None:
        if size == 0 or size > await self._reader.tree_size():
            raise ValidationError(
                "invalid tree size", [FieldViolation("tree_size", "between 1 and the log's size")]
            )


def _width(width: int) -> int:
    if width > TILE_WIDTH:
        raise ValidationError("invalid width", [FieldViolation("width", "0 (full) or 1..256")])
    return width or TILE_WIDTH


def _no_fork(field: str, why: str) -> ValidationError:
    return ValidationError(
        "the evidence shows no fork", [FieldViolation(field, why)], reason="FORK_EVIDENCE_INVALID"
    )
