"""The ledger's use cases for readers: who may see which entries, receipts over the served
checkpoint, the log's own trust policy, and fork evidence checked before it is kept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from docaxis_client.ledger.merkle import ProofError, verify_consistency
from docaxis_client.ledger.note import Checkpoint, NoteError, open_checkpoint
from docaxis_client.ledger.policy import TrustPolicy, WitnessKey
from docaxis_client.ledger.receipt import build_receipt
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    RejectedError,
    ValidationError,
)
from services.common.identity import Caller, Role
from services.ledger.service_layer.ports import ForkRecorder, LedgerReader, StoredEntry


@dataclass(frozen=True, slots=True)
class DocumentEvents:
    entries: list[StoredEntry]
    # An inclusion receipt of the latest entry in the served checkpoint (b"" before it has one).
    latest_receipt: bytes
    # How many of the entries no served checkpoint covers yet.
    pending: int


@dataclass(frozen=True, slots=True)
class ForkReport:
    report_id: int
    finding: str


class LedgerHandlers:
    def __init__(
        self,
        reader: LedgerReader,
        origin: str,
        *,
        witnesses: Sequence[WitnessKey] = (),
        quorum: int = 0,
        forks: ForkRecorder | None = None,
    ) -> None:
        self.reader = reader
        self._origin = origin
        self._witnesses = tuple(witnesses)
        self._quorum = quorum
        self._forks = forks

    async def trust_policy(self) -> TrustPolicy:
        """The log's own account of its keys and witnesses; auditors should also obtain it out
        of band, since whoever runs the log writes this answer."""
        keys = await self.reader.signing_keys()
        if not keys:
            raise RejectedError("the ledger has not signed a checkpoint yet", reason="UNAVAILABLE")
        own = TrustPolicy.from_signing_keys(self._origin, keys)
        return TrustPolicy(own.origin, own.log_keys, self._witnesses, self._quorum)

    async def document_events(self, caller: Caller, document_uuid: str) -> DocumentEvents:
        entries = await self.reader.document_entries(document_uuid)
        if not entries:
            raise NotFoundError("no such document in the log")
        _check_party(caller, entries)
        checkpoint = await self.reader.latest_checkpoint()
        latest = entries[-1]
        receipt = b""
        pending = len(entries)
        if checkpoint is not None:
            pending = sum(1 for e in entries if e.seq >= checkpoint.size)
            if latest.seq < checkpoint.size:
                proof = await self.reader.inclusion_proof(latest.seq, checkpoint.size)
                receipt = build_receipt(latest.seq, proof, checkpoint.note)
        return DocumentEvents(entries, receipt, pending)

    async def receipt(self, caller: Caller, index: int) -> tuple[bytes, StoredEntry]:
        """The inclusion receipt of entry `index` in the served checkpoint, and the entry."""
        entries = await self.reader.entries(index, index + 1)
        if not entries:
            raise NotFoundError(f"no entry {index}")
        _check_party(caller, entries)
        checkpoint = await self.reader.latest_checkpoint()
        if checkpoint is None or checkpoint.size <= index:
            raise RejectedError(
                "no published checkpoint covers this entry yet; retry shortly",
                reason="UNAVAILABLE",
            )
        proof = await self.reader.inclusion_proof(index, checkpoint.size)
        return build_receipt(index, proof, checkpoint.note), entries[0]

    async def served_size(self) -> int:
        checkpoint = await self.reader.latest_checkpoint()
        if checkpoint is None:
            raise NotFoundError("no checkpoint has been published yet")
        return checkpoint.size

    async def check_size(self, size: int) -> None:
        if size == 0 or size > await self.reader.tree_size():
            raise ValidationError(
                "invalid tree size", [FieldViolation("tree_size", "between 1 and the log's size")]
            )

    async def report_fork(
        self, reporter: str, trusted_note: bytes, conflicting_note: bytes, detail: str
    ) -> ForkReport:
        """Keeps evidence of a split view once it checks out: both notes signed by the log's
        key, and no consistency between them."""
        if self._forks is None:
            raise RejectedError("this process keeps no fork reports", reason="UNAVAILABLE")
        policy = await self.trust_policy()
        notes = {"trusted_note": trusted_note, "conflicting_note": conflicting_note}
        opened: list[Checkpoint] = []
        for name, note in notes.items():
            try:
                opened.append(open_checkpoint(note, self._origin, policy.verifiers)[0])
            except NoteError as exc:
                raise _no_fork(name, f"not a checkpoint of this log's key: {exc}") from None
        finding = await self._fork_finding(*opened)
        if finding is None:
            raise _no_fork("conflicting_note", "the log's consistency proof joins the two")
        report_id = await self._forks.record_fork(
            reporter, trusted_note, conflicting_note, f"{finding}; reporter says: {detail[:500]}"
        )
        return ForkReport(report_id, finding)

    async def _fork_finding(self, a: Checkpoint, b: Checkpoint) -> str | None:
        """Why two checkpoints signed by the log's key cannot both be its history, or None."""
        if a.size == b.size:
            return None if a.root_hash == b.root_hash else f"two roots for size {a.size}"
        old, new = (a, b) if a.size < b.size else (b, a)
        if new.size > await self.reader.tree_size():
            return f"a checkpoint of size {new.size}, which this log never reached"
        if old.size == 0:
            return None
        proof = await self.reader.consistency_proof(old.size, new.size)
        try:
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
        except ProofError as exc:
            return f"no consistency from size {old.size} to {new.size}: {exc}"
        return None


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


def _no_fork(field: str, why: str) -> ValidationError:
    return ValidationError(
        "the evidence shows no fork", [FieldViolation(field, why)], reason="FORK_EVIDENCE_INVALID"
    )
