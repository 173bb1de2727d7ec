"""A document's ledger proof status, checked by the gateway itself: the services hand over the
document's ledger events and a receipt for the latest one (index, inclusion proof, signed
checkpoint); the gateway verifies the checkpoint with the log's trust policy (log signature, the
quorum of witness cosignatures it asks for, key validity) and the inclusion proof against its
root. The services' word alone is never shown as "verified".

The trust policy comes from a file an operator pinned (DOCAXIS_GATEWAY_LEDGER_TRUST_POLICY,
the same trust-policy.json auditors use) or, without one, from the axis's own GetTrustPolicy;
the page says which.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from docaxis.ledger.v1 import ledger_service_pb2 as lpb

from docaxis_client.ledger.entry import EntryError, parse_entry
from docaxis_client.ledger.merkle import ProofError, hash_leaf, verify_inclusion
from docaxis_client.ledger.note import NoteError
from docaxis_client.ledger.policy import PolicyError, TrustPolicy
from docaxis_client.ledger.receipt import ReceiptError, parse_receipt
from gateway.auth import Administrator
from gateway.problems import Problem
from gateway.rest.app import Context


class ProofState(enum.StrEnum):
    VERIFIED = "verified"
    PENDING = "pending"  # not yet covered by a published checkpoint
    FAILED = "failed"
    NONE = "none"  # nothing logged for the document (yet)


@dataclass(frozen=True, slots=True)
class DocumentProof:
    state: ProofState
    events: list[lpb.DocumentEvent] = field(default_factory=list)
    pending_events: int = 0
    checkpoint_size: int = 0
    index: int = 0
    detail: str = ""
    pinned_policy: bool = False


class LedgerProofs:
    def __init__(self, ctx: Context, policy_file: str = "") -> None:
        self._ctx = ctx
        self._pinned = TrustPolicy.load(Path(policy_file)) if policy_file else None
        self._published: TrustPolicy | None = None

    async def _policy(self, admin: Administrator) -> TrustPolicy:
        if self._pinned is not None:
            return self._pinned
        if self._published is None:
            response = await self._ctx.call(
                self._ctx.services.ledger.GetTrustPolicy, lpb.GetTrustPolicyRequest(), admin
            )
            self._published = TrustPolicy.from_json(response.policy_json)
        return self._published

    async def _check_entry(
        self, event: lpb.DocumentEvent, document_uuid: str, admin: Administrator
    ) -> None:
        """The proven leaf is the hash of a canonical entry about this document (not merely some
        leaf of the log the services pointed at)."""
        answer = await self._ctx.call(
            self._ctx.services.ledger.GetEntries,
            lpb.GetEntriesRequest(start=event.index, end=event.index + 1),
            admin,
        )
        if len(answer.entries) != 1 or hash_leaf(answer.entries[0].body) != event.leaf_hash:
            raise ReceiptError(f"entry {event.index}'s body does not hash to the proven leaf")
        if parse_entry(answer.entries[0].body).doc != document_uuid:
            raise ReceiptError(f"entry {event.index} is not about document {document_uuid}")

    async def document_proof(self, document_uuid: str, admin: Administrator) -> DocumentProof:
        try:
            answer = await self._ctx.call(
                self._ctx.services.ledger.GetDocumentEvents,
                lpb.GetDocumentEventsRequest(document_uuid=document_uuid),
                admin,
            )
        except Problem as problem:
            if problem.status == 404:
                return DocumentProof(ProofState.NONE)
            return DocumentProof(ProofState.FAILED, detail=f"{problem.reason}: {problem.detail}")
        events = list(answer.events)
        if not answer.latest_receipt:
            return DocumentProof(ProofState.PENDING, events, answer.pending_events)
        pinned = self._pinned is not None
        try:
            policy = await self._policy(admin)
            receipt = parse_receipt(answer.latest_receipt)
            # The whole policy: log key, witness quorum and key windows, as an auditor checks.
            trusted = policy.open(receipt.checkpoint_note)
            checkpoint = trusted.checkpoint
            latest = events[-1]
            if receipt.index != latest.index:
                raise ReceiptError(
                    f"the receipt is for entry {receipt.index}, not the latest event {latest.index}"
                )
            await self._check_entry(latest, document_uuid, admin)
            verify_inclusion(
                receipt.index,
                checkpoint.size,
                latest.leaf_hash,
                receipt.proof,
                checkpoint.root_hash,
            )
        except (ReceiptError, NoteError, ProofError, PolicyError, EntryError, IndexError) as exc:
            return DocumentProof(
                ProofState.FAILED,
                events,
                answer.pending_events,
                detail=str(exc),
                pinned_policy=pinned,
            )
        return DocumentProof(
            ProofState.VERIFIED,
            events,
            answer.pending_events,
            checkpoint_size=checkpoint.size,
            index=receipt.index,
            pinned_policy=pinned,
        )
