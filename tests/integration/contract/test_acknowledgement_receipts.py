"""Group-committed acknowledgements store each copy's transport receipt in the same UPDATE as
the acknowledgement (PostgresLifecycleStore.acknowledge_deliveries): the receipt signs the
stored acknowledgement time, the first receipt stands, and a copy acknowledged earlier without
a receipt gets one without any other change."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from docaxis_client.trust import TransportReceipt
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.service_layer.lifecycle_ports import ReceiptIssuer
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord
from tests.hub_receipts import hub_receipt
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration

FIRST = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)
LATER = FIRST + dt.timedelta(minutes=5)


def issuer(signed: list[DeliveryRecord]) -> ReceiptIssuer:
    def receipt(record: DeliveryRecord) -> TransportReceipt:
        signed.append(record)
        return hub_receipt(record)

    return receipt


async def served(docs: PostgresDocumentStore, delivery_id: str) -> TransportReceipt:
    """The copy's receipt as the store serves it."""
    record = await docs.delivery(delivery_id)
    assert record is not None
    assert record.transport_receipt is not None
    return TransportReceipt.from_json(record.transport_receipt)


async def stored(pool: asyncpg.Pool, delivery_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT state, acknowledged_at, transport_receipt FROM exchange.delivery WHERE id = $1",
        uuid.UUID(delivery_id),
    )
    assert row is not None
    return row


async def test_the_receipt_is_stored_with_the_acknowledgement_and_the_first_stands(
    pool: asyncpg.Pool,
) -> None:
    """Two copies acknowledged in one transaction: each stored acknowledged, with the receipt
    of its own acknowledgement time; acknowledged again later, nothing is signed or changed."""
    docs, lifecycle = PostgresDocumentStore(pool), PostgresLifecycleStore(pool)
    codes = [unique("R"), unique("R")]
    sent = await send(docs, a_submission(unique("S"), codes))
    claims = [(route.delivery_id, route.effective_recipient) for route in sent.receipt.routes]
    signed: list[DeliveryRecord] = []
    outcomes = await lifecycle.acknowledge_deliveries(claims, FIRST, issuer(signed))
    assert outcomes == [Acknowledgement(FIRST, already_acknowledged=False)] * 2
    assert sorted(r.delivery_id for r in signed) == sorted(d for d, _ in claims)
    for delivery_id, _ in claims:
        row = await stored(pool, delivery_id)
        assert (row["state"], row["acknowledged_at"]) == ("acknowledged", FIRST)
        assert (await served(docs, delivery_id)).acknowledged_at == FIRST
    first = {d: await served(docs, d) for d, _ in claims}
    signed.clear()
    again = await lifecycle.acknowledge_deliveries(claims, LATER, issuer(signed))
    assert again == [Acknowledgement(FIRST, already_acknowledged=True)] * 2
    assert signed == []
    for delivery_id, _ in claims:
        assert await served(docs, delivery_id) == first[delivery_id]


async def test_a_copy_acknowledged_without_a_receipt_gets_one_and_nothing_else(
    pool: asyncpg.Pool,
) -> None:
    """Acknowledged on the single-copy path (whose receipt is a later, separate step), then
    acknowledged again in a group: the receipt is issued for the first acknowledgement's time,
    and the copy is otherwise as it was."""
    docs, lifecycle = PostgresDocumentStore(pool), PostgresLifecycleStore(pool)
    recipient = unique("R")
    sent = await send(docs, a_submission(unique("S"), [recipient]))
    delivery_id = sent.receipt.routes[0].delivery_id
    await docs.acknowledge(delivery_id, recipient, FIRST)
    before = await stored(pool, delivery_id)
    assert before["transport_receipt"] is None
    signed: list[DeliveryRecord] = []
    (outcome,) = await lifecycle.acknowledge_deliveries(
        [(delivery_id, recipient)],
        LATER,
        issuer(signed),
    )
    assert outcome == Acknowledgement(FIRST, already_acknowledged=True)
    after = await stored(pool, delivery_id)
    assert (after["state"], after["acknowledged_at"]) == (before["state"], FIRST)
    assert (await served(docs, delivery_id)).acknowledged_at == FIRST
