"""The ledger's static read API (C2SP tlog-tiles over gRPC), the checkpoint every receipt and
Track response carries, and ReportFork, behind a running axis."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from docaxis_client.client import AgencyClient
from docaxis_client.ledger.merkle import MemoryTree, hash_leaf
from docaxis_client.ledger.note import (
    Checkpoint,
    NoteSigner,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
)
from docaxis_client.ledger.policy import TrustPolicy
from services.common.grpc_errors import error_details
from services.ledger.domain.tiles import decode_entries
from services.settings import DEFAULT_LEDGER_ORIGIN
from tests.conftest import make_header
from tests.integration.test_ledger_flow import settled
from tests.pki import SuitePki

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]


async def test_tiles_and_bundles_rebuild_the_served_checkpoint_and_receipts_carry_it(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    """Any agency reads tiles and entry bundles cut at the served checkpoint; the level-0 tiles
    are the bundles' leaf hashes and fold to the checkpoint's root. Submit and Track hand out
    that checkpoint (the client's monitor anchor)."""
    sender, recipient = await register_agencies(2)
    submitted = await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    document = submitted.receipt.document_uuid
    async with pki.channel(axis, pki.admin_certificate) as channel:
        await settled(lpb_grpc.LedgerServiceStub(channel), document, "submission", "routing")
    track = await clients[sender].track(document)
    assert track.ledger_checkpoint
    size = parse_checkpoint(parse_note(track.ledger_checkpoint)[0]).size
    stub = clients[recipient].ledger
    metadata = clients[recipient].metadata
    checkpoint = await stub.GetCheckpoint(lpb.GetCheckpointRequest(), metadata=metadata)
    served = parse_checkpoint(parse_note(checkpoint.note)[0])
    assert served.size >= size

    leaves: list[bytes] = []
    for index in range((served.size + 255) // 256):
        width = min(256, served.size - index * 256)
        bundle = await stub.GetEntryBundle(
            lpb.GetEntryBundleRequest(index=index, width=width % 256), metadata=metadata
        )
        tile = await stub.GetTile(
            lpb.GetTileRequest(level=0, index=index, width=width % 256), metadata=metadata
        )
        bodies = decode_entries(bundle.data)
        assert len(bodies) == width
        assert [hash_leaf(b) for b in bodies] == [
            tile.data[i : i + 32] for i in range(0, len(tile.data), 32)
        ]
        leaves += [hash_leaf(b) for b in bodies]
    assert MemoryTree(leaves).root() == served.root_hash
    assert hashlib.sha256(b"\x00" + bodies[0]).digest() == leaves[(len(leaves) - 1) // 256 * 256]

    with pytest.raises(grpc.aio.AioRpcError) as beyond:
        await stub.GetTile(
            lpb.GetTileRequest(level=0, index=served.size // 256 + 1), metadata=metadata
        )
    assert beyond.value.code() is grpc.StatusCode.NOT_FOUND


async def test_report_fork_keeps_real_evidence_and_refuses_the_rest(
    clients: dict[str, AgencyClient],
    register_agencies: Register,
    axis: str,
    pki: SuitePki,
    ledger_key_file: Path,
) -> None:
    """Two notes under the log's key with one size and two roots are a fork (kept, counted);
    the log's own consistent checkpoints, or a stranger's note, are FORK_EVIDENCE_INVALID."""
    signer = NoteSigner.from_skey(ledger_key_file.read_text().strip())
    (agency,) = await register_agencies(1)
    stub = clients[agency].ledger
    metadata = clients[agency].metadata
    note = (await stub.GetCheckpoint(lpb.GetCheckpointRequest(), metadata=metadata)).note
    held = parse_checkpoint(parse_note(note)[0])
    split = sign_checkpoint(Checkpoint(DEFAULT_LEDGER_ORIGIN, held.size, b"\x33" * 32), [signer])
    answer = await stub.ReportFork(
        lpb.ReportForkRequest(trusted_note=note, conflicting_note=split, detail="test"),
        metadata=metadata,
    )
    assert answer.report_id > 0
    assert answer.finding == f"two roots for size {held.size}"

    stranger = NoteSigner.generate(DEFAULT_LEDGER_ORIGIN)
    for conflicting in (
        note,
        sign_checkpoint(Checkpoint(DEFAULT_LEDGER_ORIGIN, held.size, b"\x33" * 32), [stranger]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReportFork(
                lpb.ReportForkRequest(trusted_note=note, conflicting_note=conflicting),
                metadata=metadata,
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(refused.value).reason == "FORK_EVIDENCE_INVALID"
    assert TrustPolicy.for_keys(DEFAULT_LEDGER_ORIGIN, [signer.verifier.vkey]).open(note)
