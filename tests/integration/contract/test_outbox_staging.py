"""Staging outbox rows in one statement (copies at Submit, notices at acknowledgement): rows in
the order given (the relay publishes by id), each routed to its recipient or to the peer hub its
copy goes through, in its document's trace."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from docaxis.exchange.v1 import events_pb2

from services.exchange.adapters.postgres import (
    DELIVERY_MESSAGE_TYPE,
    OUTBOX_CHANNEL,
    PostgresDocumentStore,
    stage_delivery_messages,
)
from services.exchange.adapters.postgres_lifecycle import stage_notices
from services.exchange.adapters.rabbit import NOTICE_MESSAGE_TYPE
from services.exchange.domain.model import Receipt, Route
from services.exchange.service_layer.ports import NewSubmission
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    ACCEPTED_AT,
    a_submission,
    events_for,
)

pytestmark = pytest.mark.integration

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def three_documents(pool: asyncpg.Pool) -> list[Receipt]:
    """Three documents of two copies each; the second copy of each goes through a peer hub;
    the first document has a trace, the others none."""
    store = PostgresDocumentStore(pool)
    receipts = []
    for n in range(3):
        submission = a_submission(unique("S"), [unique("R"), unique("R")])
        near, far = submission.header.recipients
        receipt = Receipt(
            str(uuid.uuid4()),
            submission.header.document_id,
            submission.consignment_id,
            ACCEPTED_AT,
            (Route(near, near, str(uuid.uuid4())), Route(far, far, str(uuid.uuid4()), "HUBB")),
        )
        item = NewSubmission(
            submission,
            receipt,
            "f" * 64,
            events_for(receipt, submission.header.sender),
            traceparent=TRACE if n == 0 else None,
        )
        assert await store.store_submissions([item]) == [None]
        receipts.append(receipt)
    return receipts


async def test_copies_are_staged_in_the_order_given_routed_and_traced(pool: asyncpg.Pool) -> None:
    """Six copies of three documents, interleaved: one row each, ids ascending in the list's
    order, the peer hub's routing key for a copy that goes through it, the document's trace."""
    receipts = await three_documents(pool)
    copies = [
        (receipt.document_uuid, route.effective_recipient, route.delivery_id)
        for index in (1, 0)
        for receipt in reversed(receipts)
        for route in receipt.routes[index : index + 1]
    ]
    keys = [uuid.UUID(delivery_id) for _, _, delivery_id in copies]
    async with pool.acquire() as conn, conn.transaction():
        # Submit staged them too: only these rows are looked at.
        await conn.execute("DELETE FROM exchange.outbox WHERE delivery_id = ANY($1::uuid[])", keys)
        await stage_delivery_messages(conn, copies)
        await stage_delivery_messages(conn, [])
        rows = await conn.fetch(
            """
            SELECT routing_key, message_id, message_type, payload, delivery_id, traceparent
            FROM exchange.outbox WHERE delivery_id = ANY($1::uuid[]) ORDER BY id
            """,
            keys,
        )
    hubs = {route.delivery_id for receipt in receipts for route in receipt.routes if route.hub}
    traced = {route.delivery_id for route in receipts[0].routes}
    assert [
        (
            r["routing_key"],
            r["message_id"],
            r["message_type"],
            r["payload"],
            str(r["delivery_id"]),
            r["traceparent"],
        )
        for r in rows
    ] == [
        (
            "hub.HUBB" if delivery_id in hubs else recipient,
            delivery_id,
            DELIVERY_MESSAGE_TYPE,
            events_pb2.DeliveryQueued(
                delivery_id=delivery_id, document_uuid=document_uuid, recipient=recipient
            ).SerializeToString(),
            delivery_id,
            TRACE if delivery_id in traced else None,
        )
        for document_uuid, recipient, delivery_id in copies
    ]


async def test_notices_are_staged_in_the_order_given_routed_and_traced(pool: asyncpg.Pool) -> None:
    """Notices to each document's sender, in the list's order: to the agency itself,
    or to the hub the document came from, or to a hub the caller names; in the trace of the
    notice's document; a notice id unknown to the database goes to its agency, untraced."""
    receipts = await three_documents(pool)
    async with pool.acquire() as conn, conn.transaction():
        # The third document came from another hub: its sender's statuses go back there.
        await conn.execute(
            "UPDATE exchange.document SET from_hub = 'HUBA' WHERE uuid = $1",
            uuid.UUID(receipts[2].document_uuid),
        )
        notices: list[tuple[str, str]] = []
        for receipt in reversed(receipts):
            sender = await conn.fetchval(
                "SELECT sender FROM exchange.document WHERE uuid = $1",
                uuid.UUID(receipt.document_uuid),
            )
            notice_id = str(uuid.uuid4())
            await conn.execute(
                """
                INSERT INTO exchange.notice (id, agency, kind, delivery_id, created_at)
                VALUES ($1, $2, 'recall', $3, now())
                """,
                uuid.UUID(notice_id),
                sender,
                uuid.UUID(receipt.routes[0].delivery_id),
            )
            notices.append((sender, notice_id))
        unknown = (unique("S"), str(uuid.uuid4()))
        await stage_notices(conn, [*notices, unknown])
        named = (unique("S"), str(uuid.uuid4()))
        await stage_notices(conn, [named], hub="HUBC")
        rows = await conn.fetch(
            """
            SELECT routing_key, message_id, message_type, payload, traceparent
            FROM exchange.outbox WHERE message_id = ANY($1::text[]) ORDER BY id
            """,
            [notice_id for _, notice_id in [*notices, unknown, named]],
        )
    # Newest document first: the third came from HUBA, the first has the trace.
    expected_routes = ["hub.HUBA", notices[1][0], notices[2][0], unknown[0], "hub.HUBC"]
    expected_traces = [None, None, TRACE, None, None]
    assert [dict(r) for r in rows] == [
        {
            "routing_key": route,
            "message_id": notice_id,
            "message_type": NOTICE_MESSAGE_TYPE,
            "payload": events_pb2.NoticeQueued(
                notice_id=notice_id, agency=agency
            ).SerializeToString(),
            "traceparent": trace,
        }
        for (agency, notice_id), route, trace in zip(
            [*notices, unknown, named], expected_routes, expected_traces, strict=True
        )
    ]


async def test_staging_copies_can_wake_the_relay_in_the_same_statement(
    pool: asyncpg.Pool,
) -> None:
    """With wake_relay the rows are staged and OUTBOX_CHANNEL is NOTIFYed at commit; without
    it nothing is (the caller NOTIFYs). One listening session hears in commit order, so a
    marker sent last tells that everything before it has arrived."""
    receipts = await three_documents(pool)
    heard: list[str] = []
    marker = asyncio.Event()
    listener = await pool.acquire()

    def hear(_conn: object, _pid: int, channel: str, _payload: object) -> None:
        heard.append(channel)
        if channel == "test_outbox_marker":
            marker.set()

    try:
        for channel in (OUTBOX_CHANNEL, "test_outbox_marker"):
            await listener.add_listener(channel, hear)
        first, second = (
            [(r.document_uuid, route.effective_recipient, route.delivery_id)]
            for r in receipts[:2]
            for route in r.routes[:1]
        )
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM exchange.outbox WHERE delivery_id = ANY($1::uuid[])",
                    [uuid.UUID(first[0][2]), uuid.UUID(second[0][2])],
                )
                await stage_delivery_messages(conn, second)
            async with conn.transaction():
                await stage_delivery_messages(conn, first, wake_relay=True)
                staged = await conn.fetchval(
                    "SELECT count(*) FROM exchange.outbox WHERE delivery_id = $1",
                    uuid.UUID(first[0][2]),
                )
                assert (staged, heard) == (1, [])  # at commit, not before
            await conn.execute("NOTIFY test_outbox_marker")
        await asyncio.wait_for(marker.wait(), timeout=10)
    finally:
        for channel in (OUTBOX_CHANNEL, "test_outbox_marker"):
            await listener.remove_listener(channel, hear)
        await pool.release(listener)
    assert heard == [OUTBOX_CHANNEL, "test_outbox_marker"]
