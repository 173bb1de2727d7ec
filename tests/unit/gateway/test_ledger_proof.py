"""The console's ledger proof status: "verified" only when the gateway itself verified the
checkpoint signature, the inclusion proof and that the proven leaf is an entry about the
document; anything else says so."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from docaxis.ledger.v1 import ledger_service_pb2 as lpb

from docaxis_client.ledger.merkle import MemoryTree, hash_leaf, inclusion_proof
from docaxis_client.ledger.note import Checkpoint, NoteSigner, sign_checkpoint
from docaxis_client.ledger.policy import TrustPolicy
from docaxis_client.ledger.receipt import build_receipt
from gateway.admin.ledger_proof import LedgerProofs, ProofState
from gateway.auth import Administrator
from gateway.clients import Services
from gateway.metrics import GatewayMetrics
from gateway.rest.app import Context
from tests.unit.ledger.synthetic import (
    ORIGIN,
    build_bodies,
    cosigned,
    doc_id,
    fixed_signer,
    witnessed_policy,
)

ADMIN = Administrator("CN=admin", "1")


class NotFound(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())


@dataclass
class FakeLedger:
    """LedgerService over a synthetic log: 20 entries, a checkpoint over `signed_size`."""

    signer: NoteSigner
    bodies: list[bytes]
    signed_size: int
    claimed_index: int | None = None  # a lying server names another leaf
    witnessed: bool = False  # the checkpoint carries both witnesses' cosignatures

    async def GetDocumentEvents(
        self, request: lpb.GetDocumentEventsRequest, **_: Any
    ) -> lpb.GetDocumentEventsResponse:
        indexes = [
            i
            for i, body in enumerate(self.bodies)
            if json.loads(body).get("doc") == request.document_uuid
        ]
        if not indexes:
            raise NotFound()
        events = [
            lpb.DocumentEvent(index=i, entry_type="x", leaf_hash=hash_leaf(self.bodies[i]))
            for i in indexes
        ]
        latest = self.claimed_index if self.claimed_index is not None else indexes[-1]
        events[-1] = lpb.DocumentEvent(
            index=latest, entry_type="x", leaf_hash=hash_leaf(self.bodies[latest])
        )
        if latest >= self.signed_size:
            return lpb.GetDocumentEventsResponse(events=events, pending_events=1)
        tree = MemoryTree(hash_leaf(b) for b in self.bodies[: self.signed_size])
        note = sign_checkpoint(Checkpoint(ORIGIN, self.signed_size, tree.root()), [self.signer])
        if self.witnessed:
            note = cosigned(note)
        receipt = build_receipt(latest, inclusion_proof(tree, latest, self.signed_size), note)
        return lpb.GetDocumentEventsResponse(events=events, latest_receipt=receipt)

    async def GetEntries(self, request: lpb.GetEntriesRequest, **_: Any) -> lpb.GetEntriesResponse:
        return lpb.GetEntriesResponse(
            entries=[
                lpb.Entry(index=i, body=self.bodies[i], leaf_hash=hash_leaf(self.bodies[i]))
                for i in range(request.start, request.end)
            ]
        )

    async def GetTrustPolicy(
        self, request: lpb.GetTrustPolicyRequest, **_: Any
    ) -> lpb.GetTrustPolicyResponse:
        policy = TrustPolicy.for_keys(ORIGIN, [self.signer.verifier.vkey])
        return lpb.GetTrustPolicyResponse(policy_json=policy.to_json())


@dataclass
class FakeServices:
    ledger: FakeLedger
    timeout_s: float = 5.0


def proofs(ledger: FakeLedger, pinned: Path | None = None) -> LedgerProofs:
    context = Context(cast("Services", FakeServices(ledger)), cast("Any", None), GatewayMetrics())
    return LedgerProofs(context, str(pinned) if pinned else "")


@pytest.fixture
def log() -> FakeLedger:
    return FakeLedger(fixed_signer(), build_bodies(20), signed_size=20)


async def test_a_covered_document_is_verified_with_the_published_policy(log: FakeLedger) -> None:
    proof = await proofs(log).document_proof(doc_id(3), ADMIN)
    assert proof.state is ProofState.VERIFIED, proof.detail
    assert proof.checkpoint_size == 20
    assert proof.index == proof.events[-1].index
    assert not proof.pinned_policy


async def test_a_pinned_policy_with_another_key_fails_the_proof(
    log: FakeLedger, tmp_path: Path
) -> None:
    other = fixed_signer(seed="somebody else's key")
    pinned = tmp_path / "trust-policy.json"
    pinned.write_text(TrustPolicy.for_keys(ORIGIN, [other.verifier.vkey]).to_json())
    proof = await proofs(log, pinned).document_proof(doc_id(3), ADMIN)
    assert proof.state is ProofState.FAILED
    assert proof.pinned_policy


async def test_a_proof_of_another_documents_leaf_fails(log: FakeLedger) -> None:
    # The inclusion proof is genuine, but for entry 1, which is about another document.
    log.claimed_index = 1
    proof = await proofs(log).document_proof(doc_id(3), ADMIN)
    assert proof.state is ProofState.FAILED
    assert "not about document" in proof.detail


async def test_uncovered_events_are_pending_and_unknown_documents_have_none(
    log: FakeLedger,
) -> None:
    log.signed_size = 2
    assert (await proofs(log).document_proof(doc_id(3), ADMIN)).state is ProofState.PENDING
    unknown = "00000000-0000-4000-8000-00000000dead"
    assert (await proofs(log).document_proof(unknown, ADMIN)).state is ProofState.NONE


async def test_a_pinned_policy_with_a_witness_quorum_needs_the_cosignatures(
    log: FakeLedger, tmp_path: Path
) -> None:
    """The proof view applies the whole policy: a log-signed checkpoint without the witnesses'
    cosignatures is not "verified" when the pinned policy asks for two of them."""
    pinned = tmp_path / "trust-policy.json"
    pinned.write_text(witnessed_policy(log.signer, quorum=2).to_json())
    proof = await proofs(log, pinned).document_proof(doc_id(3), ADMIN)
    assert proof.state is ProofState.FAILED
    assert "quorum is 2" in proof.detail
    log.witnessed = True
    proof = await proofs(log, pinned).document_proof(doc_id(3), ADMIN)
    assert proof.state is ProofState.VERIFIED, proof.detail
