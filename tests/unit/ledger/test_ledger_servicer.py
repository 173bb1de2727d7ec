"""LedgerService through a real grpc.aio server over a fake of its LedgerReader port: who may
read what, validation, and what a caller gets of its own documents."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.ledger.v1 import ledger_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health

from services.common.grpc_errors import error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.ledger.entrypoints.grpc_api import SERVICE_NAME, LedgerServicer
from services.ledger.service_layer.handlers import LedgerHandlers
from services.ledger.service_layer.ports import StoredCheckpoint, StoredEntry

SENDER, RECIPIENT, STRANGER = "000.00.01.H45", "000.00.11.H45", "000.00.99.H45"
DOCUMENT = str(uuid.uuid4())


def _entry(seq: int) -> StoredEntry:
    body = json.dumps({"from": SENDER, "to": [RECIPIENT], "seq": seq}).encode()
    return StoredEntry(seq, "submitted", body, bytes([seq]) * 32)


class FakeLedgerReader:
    """A log of three entries of one document, no checkpoint yet."""

    def __init__(self) -> None:
        self.log = [_entry(n) for n in range(3)]

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        return None

    async def signing_keys(self) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
        return []

    async def tree_size(self) -> int:
        return len(self.log)

    async def entries(self, start: int, end: int) -> list[StoredEntry]:
        return self.log[start:end]

    async def document_entries(self, document_uuid: str) -> list[StoredEntry]:
        return self.log if document_uuid == DOCUMENT else []

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        raise AssertionError("no checkpoint: no proof is asked for")

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        raise AssertionError("not used here")

    async def tile(self, level: int, index: int, width: int, size: int) -> bytes | None:
        return None

    async def entry_bundle(self, index: int, width: int, size: int) -> bytes | None:
        return None


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.LedgerServiceAsyncStub]:
    servicer = LedgerServicer(
        LedgerHandlers(FakeLedgerReader(), "ledger.test/v1"), HeaderCallerResolver()
    )
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: pb_grpc.add_LedgerServiceServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.LedgerServiceStub(channel)
    await server.stop(None)


async def test_an_administrator_reads_the_raw_log(stub: pb_grpc.LedgerServiceAsyncStub) -> None:
    response = await stub.GetEntries(
        pb.GetEntriesRequest(start=0, end=2), metadata=role_metadata(Role.ADMIN), timeout=5
    )
    assert [e.index for e in response.entries] == [0, 1]
    assert response.entries[1].leaf_hash == bytes([1]) * 32


async def test_an_agency_may_not_read_the_raw_log(stub: pb_grpc.LedgerServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetEntries(
            pb.GetEntriesRequest(start=0, end=2), metadata=agency_metadata(SENDER), timeout=5
        )
    assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_bad_range_names_its_field(stub: pb_grpc.LedgerServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetEntries(
            pb.GetEntriesRequest(start=2, end=2), metadata=role_metadata(Role.ADMIN), timeout=5
        )
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert [v.field for v in details.violations] == ["end"]


@pytest.mark.parametrize("party", [SENDER, RECIPIENT])
async def test_a_party_reads_its_documents_events_pending_a_checkpoint(
    stub: pb_grpc.LedgerServiceAsyncStub, party: str
) -> None:
    response = await stub.GetDocumentEvents(
        pb.GetDocumentEventsRequest(document_uuid=DOCUMENT),
        metadata=agency_metadata(party),
        timeout=5,
    )
    assert [e.index for e in response.events] == [0, 1, 2]
    assert response.pending_events == 3
    assert response.latest_receipt == b""


async def test_another_agency_is_told_the_document_is_not_there(
    stub: pb_grpc.LedgerServiceAsyncStub,
) -> None:
    for document, agency in ((DOCUMENT, STRANGER), (str(uuid.uuid4()), SENDER)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetDocumentEvents(
                pb.GetDocumentEventsRequest(document_uuid=document),
                metadata=agency_metadata(agency),
                timeout=5,
            )
        assert error_details(refused.value).code is grpc.StatusCode.NOT_FOUND
