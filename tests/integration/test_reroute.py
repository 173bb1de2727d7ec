"""Mail waiting for an agency that a reorganisation closes moves to the successor, found by the
exchange's periodic sweep: copies (queued afresh, ledgered), notices, and what cannot move is
dead-lettered where sender and administrators see it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.service_layer.handlers import DirectoryHandlers
from services.exchange.service_layer.reroute import RECIPIENT_CLOSED
from tests.conftest import VIETNAM, Register, make_header, served, settings_for
from tests.infra import SuiteServices
from tests.integration.test_exchange_flow import next_delivery, no_delivery
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def reroute_database(services: SuiteServices) -> str:
    """A database of its own: the sweeps run in one process per axis (elected), and on the
    suite's database the suite's axis, which sweeps only at start, holds that role."""
    url = await postgres.recreate_database(services.database_url, "docaxis_reroute")
    await migrate(url)
    return url


@pytest.fixture(scope="module")
async def directory(reroute_database: str) -> AsyncIterator[DirectoryHandlers]:
    """register_agencies registers in the reroute database."""
    pool = await postgres.create_pool(reroute_database, min_size=1, max_size=2)
    yield DirectoryHandlers(PostgresAgencies(pool))
    await pool.close()


@pytest.fixture(scope="module")
async def sweeping_axis(
    reroute_database: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[str]:
    """The whole axis on its own database and the suite's broker, sweeping every 0.1 s."""
    settings = dataclasses.replace(
        settings_for(reroute_database, services.amqp_url, ledger_key_file, pki=pki),
        reroute_interval_s=0.1,
    )
    async with served(settings) as address:
        yield address


async def _reorganise(
    axis: str, pki: SuitePki, kind: dpb.ReorganisationKind.ValueType, old: str, new: str = ""
) -> None:
    today = dt.datetime.now(VIETNAM).date().isoformat()
    async with pki.channel(axis, pki.admin_certificate) as channel:
        await dpb_grpc.DirectoryServiceStub(channel).RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=kind,
                    effective_date=today,
                    old_codes=[old],
                    new_codes=[new] if new else [],
                )
            ),
            timeout=10,
        )


async def test_waiting_mail_follows_a_merger_and_what_cannot_move_is_dead_lettered(
    sweeping_axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    sender, ward, successor, closed, reader = await register_agencies(5)
    clients = {code: pki.client(sweeping_axis, code) for code in (sender, ward, successor, reader)}
    try:
        s, w, n, r = (clients[c] for c in (sender, ward, successor, reader))
        # Waiting for the ward: a copy for it alone, and one of a document its successor also
        # has; a status notice about what the ward itself sent. Waiting for `closed`: a copy.
        alone = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [ward]))).receipt
        both = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [ward, successor]))).receipt
        doomed = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [closed]))).receipt
        sent_by_ward = (await w.submit(f"c-{uuid.uuid4()}", make_header(ward, [reader]))).receipt
        (item,) = (await r.list_pending()).items
        await r.fetch(item)
        await r.acknowledge_item(item)  # 01 for the ward, waiting as a notice

        await _reorganise(sweeping_axis, pki, dpb.REORGANISATION_KIND_MERGE, ward, successor)
        await _reorganise(sweeping_axis, pki, dpb.REORGANISATION_KIND_CLOSE, closed)

        async def successors_mail() -> list[pb.PendingItem]:
            return list((await n.list_pending(page_size=500)).items)

        def moved(items: list[pb.PendingItem]) -> bool:
            return {alone.document_uuid, sent_by_ward.document_uuid} <= {
                i.document_uuid for i in items
            }

        items = await eventually(successors_mail, moved)
        copies = [i for i in items if i.document_uuid == alone.document_uuid]
        assert [(i.kind, i.sender) for i in copies] == [(pb.ITEM_KIND_DELIVERY, sender)]
        fetched = await n.fetch(copies[0])
        assert fetched.delivery.header.subject == "Thử nghiệm"
        notices = [i for i in items if i.document_uuid == sent_by_ward.document_uuid]
        assert [(i.kind, i.sender) for i in notices] == [(pb.ITEM_KIND_STATUS, reader)]
        # The successor's own copy of `both` is there once; the ward's was not moved onto it.
        assert [i.document_uuid for i in items].count(both.document_uuid) == 1

        track = await s.track(alone.document_uuid)
        (copy,) = track.recipients
        assert (copy.requested_recipient, copy.effective_recipient) == (ward, successor)
        # Fetched by the successor above: its first hand-over.
        assert (copy.state, copy.push_count) == (pb.DELIVERY_STATE_PUSHED, 1)
        for receipt, code in ((both, ward), (doomed, closed)):
            # The sweep moves a code's mail and dead-letters the rest in two transactions, and
            # goes through the codes one by one: wait for it, not just for the move seen above.
            async def copy_of(document_uuid: str = receipt.document_uuid, to: str = code) -> Any:
                track = await s.track(document_uuid)
                (stuck,) = [c for c in track.recipients if c.effective_recipient == to]
                return stuck

            stuck = await eventually(
                copy_of, lambda c: c.state == pb.DELIVERY_STATE_DEAD_LETTERED, within=30
            )
            assert (stuck.state, stuck.dead_letter_reason) == (
                pb.DELIVERY_STATE_DEAD_LETTERED,
                RECIPIENT_CLOSED,
            )
        # Nothing waits for the closed codes any more, so later sweeps leave everything be.
        assert not (await w.list_pending()).items

        # The move is a ledger fact.
        async with pki.channel(sweeping_axis, pki.admin_certificate) as channel:
            ledger = lpb_grpc.LedgerServiceStub(channel)

            async def routings() -> int:
                events = await ledger.GetDocumentEvents(
                    lpb.GetDocumentEventsRequest(document_uuid=alone.document_uuid), timeout=10
                )
                return [e.entry_type for e in events.events].count("routing")

            assert await eventually(routings, lambda n: n == 2, within=30) == 2
    finally:
        for client in clients.values():
            await client.close()


async def test_codes_merged_into_one_move_in_acceptance_order_keeping_the_first_listed_copy(
    sweeping_axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    """Two wards merged into one successor in one reorganisation: their waiting copies reach the
    successor in the order they were accepted, whatever order the codes sort in, and of a
    document addressed to both, the copy of the ward the sender listed first moves (the other
    is dead-lettered)."""
    sender, first_ward, second_ward, successor = await register_agencies(4)
    low, high = sorted((first_ward, second_ward))
    s, n = pki.client(sweeping_axis, sender), pki.client(sweeping_axis, successor)
    try:
        earlier = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [high]))).receipt
        later = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [low]))).receipt
        both = (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [high, low]))).receipt
        stream = n.receive()
        await stream.subscribed()
        today = dt.datetime.now(VIETNAM).date().isoformat()
        async with pki.channel(sweeping_axis, pki.admin_certificate) as channel:
            await dpb_grpc.DirectoryServiceStub(channel).RecordReorganisation(
                dpb.RecordReorganisationRequest(
                    reorganisation=dpb.Reorganisation(
                        kind=dpb.REORGANISATION_KIND_MERGE,
                        effective_date=today,
                        old_codes=[low, high],
                        new_codes=[successor],
                    )
                ),
                timeout=10,
            )
        arrived = [await next_delivery(stream, within=30) for _ in range(3)]
        await no_delivery(stream, within=1.0)
        stream.cancel()
        assert [(d.document_uuid, d.requested_recipient) for d in arrived] == [
            (earlier.document_uuid, high),
            (later.document_uuid, low),
            (both.document_uuid, high),
        ]

        async def low_copy() -> Any:
            track = await s.track(both.document_uuid)
            (copy,) = [c for c in track.recipients if c.requested_recipient == low]
            return copy

        stuck = await eventually(
            low_copy, lambda c: c.state == pb.DELIVERY_STATE_DEAD_LETTERED, within=30
        )
        assert stuck.dead_letter_reason == RECIPIENT_CLOSED
    finally:
        await s.close()
        await n.close()
