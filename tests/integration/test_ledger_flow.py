"""The ledger behind a running axis: every exchange state change, provable offline."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from docaxis_client.client import AgencyClient
from docaxis_client.ledger.merkle import hash_leaf, verify_consistency, verify_inclusion
from docaxis_client.ledger.note import open_checkpoint
from docaxis_client.ledger.policy import TrustPolicy
from services.common import postgres
from services.common.grpc_errors import error_details
from services.ledger.adapters.postgres import PostgresLedgerReader
from services.ledger.audit.verify import audit_export, verify_receipt_evidence
from services.ledger.export import export_ledger
from services.settings import DEFAULT_LEDGER_ORIGIN
from tests.conftest import make_header
from tests.integration.test_exchange_flow import next_delivery
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]


async def settled(
    stub: lpb_grpc.LedgerServiceAsyncStub, document_uuid: str, *expected: str
) -> lpb.GetDocumentEventsResponse:
    """Waits until the document's entries include `expected` (entry types, with repeats) and
    a published checkpoint covers them all."""

    async def events() -> lpb.GetDocumentEventsResponse | None:
        try:
            return await stub.GetDocumentEvents(
                lpb.GetDocumentEventsRequest(document_uuid=document_uuid)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            return None

    def complete(response: lpb.GetDocumentEventsResponse | None) -> bool:
        if response is None:
            return False
        types = [e.entry_type for e in response.events]
        return response.pending_events == 0 and all(
            types.count(t) >= expected.count(t) for t in expected
        )

    response = await eventually(events, complete, within=20)
    assert response is not None
    return response


async def test_a_documents_whole_history_is_in_the_log_with_an_offline_receipt(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    """Submission, routing, queueing, push and acknowledgement each become an entry, chained by
    `prev`; the sender's receipt for the latest verifies offline against the trust policy."""
    sender, recipient = await register_agencies(2)
    stream = clients[recipient].receive()
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    ).receipt
    delivery = await next_delivery(stream)
    await clients[recipient].acknowledge(delivery.delivery_id)
    stream.cancel()

    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = lpb_grpc.LedgerServiceStub(channel)
        history = await settled(
            stub,
            receipt.document_uuid,
            "submission",
            "routing",
            "delivery",
            "delivery",
            "receipt",
            "status",  # 01 (arrived), recorded when the recipient acknowledges
        )
        # The log holds facts in commit order. The relay commits "queued" only once the broker has
        # confirmed, and the DMS may have been pushed and acknowledged before that.
        types = [e.entry_type for e in history.events]
        # Submission, routing and (for a signed document) signature verifications commit in one
        # transaction, before any delivery fact.
        accepted = types[: types.index("delivery")]
        assert accepted[0] == "submission"
        assert sorted(accepted[1:]) == ["routing", *["verification"] * (len(accepted) - 2)]
        assert sorted(types[len(accepted) :]) == ["delivery", "delivery", "receipt", "status"]
        entries = await stub.GetEntries(
            lpb.GetEntriesRequest(start=history.events[0].index, end=history.events[-1].index + 1),
        )
        raw = {e.index: e.body for e in entries.entries}
        bodies = {index: json.loads(body) for index, body in raw.items()}
        chain = [bodies[e.index] for e in history.events]
        assert {b["doc"] for b in chain} == {receipt.document_uuid}
        assert "prev" not in chain[0]
        for previous, body in zip(history.events, chain[1:], strict=False):
            assert body["prev"]["seq"] == previous.index
        deliveries = [b for b in chain if b["type"] == "delivery"]
        assert sorted(b["data"]["event"] for b in deliveries) == ["pushed", "queued"]
        addressed = [b for b in chain if b["type"] in {"routing", "delivery", "receipt"}]
        assert [b["to"] for b in addressed] == [recipient] * 4

        policy = TrustPolicy.from_json(
            (await stub.GetTrustPolicy(lpb.GetTrustPolicyRequest())).policy_json
        )
        latest = history.events[-1]
        report = verify_receipt_evidence(raw[latest.index], history.latest_receipt, policy)
        assert report.ok, report.to_json()
        tampered = raw[latest.index].replace(b'"actor":"exchange"', b'"actor":"exchangf"')
        assert tampered != raw[latest.index]
        assert not verify_receipt_evidence(tampered, history.latest_receipt, policy).ok

        # The sender may read its document's history; an outsider learns nothing.
        own = await clients[sender].ledger.GetDocumentEvents(
            lpb.GetDocumentEventsRequest(document_uuid=receipt.document_uuid)
        )
        assert [e.index for e in own.events] == [e.index for e in history.events]
        (outsider,) = await register_agencies(1)
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await clients[outsider].ledger.GetDocumentEvents(
                lpb.GetDocumentEventsRequest(document_uuid=receipt.document_uuid)
            )
        assert error_details(hidden.value).code is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await clients[sender].ledger.GetEntries(lpb.GetEntriesRequest(start=0, end=1))
        assert error_details(denied.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_served_proofs_verify_against_signed_checkpoints(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    """Inclusion proofs for entries and the consistency proof between two checkpoints verify
    with the RFC 9162 algorithms against roots from signed notes."""
    sender, recipient = await register_agencies(2)
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = lpb_grpc.LedgerServiceStub(channel)
        policy = TrustPolicy.from_json(
            (await stub.GetTrustPolicy(lpb.GetTrustPolicyRequest())).policy_json
        )
        first = (
            await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        ).receipt
        await settled(stub, first.document_uuid, "submission", "routing")
        old = await stub.GetCheckpoint(lpb.GetCheckpointRequest())
        second = (
            await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        ).receipt
        await settled(stub, second.document_uuid, "submission", "routing")
        new = await stub.GetCheckpoint(lpb.GetCheckpointRequest())
        assert new.size > old.size
        old_cp, _ = open_checkpoint(old.note, policy.origin, policy.verifiers)
        new_cp, _ = open_checkpoint(new.note, policy.origin, policy.verifiers)
        consistency = await stub.GetConsistencyProof(
            lpb.GetConsistencyProofRequest(old_size=old.size, new_size=new.size),
        )
        verify_consistency(
            old.size, new.size, list(consistency.hashes), old_cp.root_hash, new_cp.root_hash
        )
        for index in {0, old.size - 1, new.size // 2, new.size - 1}:
            entry = (
                await stub.GetEntries(lpb.GetEntriesRequest(start=index, end=index + 1))
            ).entries[0]
            assert entry.leaf_hash == hash_leaf(entry.body)
            proof = await stub.GetInclusionProof(
                lpb.GetInclusionProofRequest(index=index, tree_size=new.size),
            )
            verify_inclusion(index, new.size, entry.leaf_hash, list(proof.hashes), new_cp.root_hash)
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await stub.GetInclusionProof(
                lpb.GetInclusionProofRequest(index=0, tree_size=new.size + 10**6),
            )
        assert error_details(too_big.value).reason == "VALIDATION"


async def test_an_export_of_the_live_log_passes_the_offline_audit(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    axis: str,
    pki: SuitePki,
    database_url: str,
    tmp_path: Path,
) -> None:
    """`docaxis audit export` of the running log replays clean: tree, signatures, consistency,
    every document's back-pointer chain."""
    sender, recipient = await register_agencies(2)
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    ).receipt
    async with pki.channel(axis, pki.admin_certificate) as channel:
        await settled(
            lpb_grpc.LedgerServiceStub(channel), receipt.document_uuid, "submission", "routing"
        )
    pool = await postgres.create_pool(database_url, min_size=1, max_size=1, role="ledger_reader")
    try:
        entries, checkpoints = await export_ledger(
            PostgresLedgerReader(pool), DEFAULT_LEDGER_ORIGIN, tmp_path
        )
    finally:
        await pool.close()
    assert entries > 0
    assert checkpoints > 0
    report = audit_export(tmp_path)
    assert report.divergence is None, report.to_json()
    assert report.exit_code == 3  # only the log's own keys: an auditor brings a policy
