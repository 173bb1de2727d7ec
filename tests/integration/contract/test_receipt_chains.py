"""Transport receipts stored without the hub's chain (migration 0035): each copy's row holds its
receipt with the chain referred to, exchange.receipt_chain the chain once; the stores serve the
receipt as the hub signed it, byte for byte, and it verifies; a receipt stored whole before is
served as it is; a chain row that was altered or lost is refused, never served."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from docaxis_client.trust import TransportReceipt, verify_receipt
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.adapters.receipt_chains import StoredChainError, chain_named, hub_chain
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord
from tests.hub_receipts import hub_identity, hub_receipt, receipt_ca
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration

# Within the test hubs' certificates' validity (from an hour before they were issued).
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def _acknowledged(
    pool: asyncpg.Pool, recipients: int, *, hub: str | None = None
) -> list[DeliveryRecord]:
    """A document's copies acknowledged in one group, each with the receipt of `hub` (a name
    of hub_identity's), as the store serves them after."""
    docs, lifecycle = PostgresDocumentStore(pool), PostgresLifecycleStore(pool)
    sent = await send(docs, a_submission(unique("S"), [unique("R") for _ in range(recipients)]))
    claims = [(route.delivery_id, route.effective_recipient) for route in sent.receipt.routes]
    identity = hub_identity() if hub is None else hub_identity(hub)
    outcomes = await lifecycle.acknowledge_deliveries(
        claims, NOW, lambda record: hub_receipt(record, identity)
    )
    assert outcomes == [Acknowledgement(NOW, already_acknowledged=False)] * recipients
    records = [await docs.delivery(delivery_id) for delivery_id, _ in claims]
    return [record for record in records if record is not None]


async def _row(pool: asyncpg.Pool, delivery_id: str) -> bytes:
    stored: bytes = await pool.fetchval(
        "SELECT transport_receipt FROM exchange.delivery WHERE id = $1", uuid.UUID(delivery_id)
    )
    return stored


async def test_the_served_receipt_is_the_one_signed_and_verifies(pool: asyncpg.Pool) -> None:
    """What both stores serve is the receipt signed afresh for the copy, byte for byte (its
    key is Ed25519: deterministic), and the offline verifier accepts it; the row holds it
    without the chain."""
    for record in await _acknowledged(pool, 2):
        signed = hub_receipt(record)
        assert record.transport_receipt == signed.to_json()
        served = TransportReceipt.from_json(record.transport_receipt)
        assert verify_receipt(served, receipt_ca().trust_store()) == hub_identity().certificate
        row = await _row(pool, record.delivery_id)
        assert chain_named(row) == hub_chain(signed.chain).sha256
        assert len(row) < len(record.transport_receipt) - 1_000
        # The single-copy path's store answers the same, and keeps the first.
        again = await PostgresDocumentStore(pool).save_transport_receipt(record.delivery_id, signed)
        assert again == record.transport_receipt


async def test_every_receipt_of_a_key_shares_one_chain_row(pool: asyncpg.Pool) -> None:
    """Two groups, two stores: one row of the hub's chain; another key's chain a row of its
    own."""
    records = [*await _acknowledged(pool, 2), *await _acknowledged(pool, 1)]
    other = await _acknowledged(pool, 1, hub="docaxis other hub")
    digests = {chain_named(await _row(pool, r.delivery_id)) for r in records}
    assert digests == {hub_chain(hub_identity().chain_der()).sha256}
    (theirs,) = {chain_named(await _row(pool, r.delivery_id)) for r in other}
    assert theirs not in digests
    rows = await pool.fetchval(
        "SELECT count(*) FROM exchange.receipt_chain WHERE sha256 = ANY($1::bytea[])",
        [*digests, theirs],
    )
    assert rows == 2


async def test_a_receipt_stored_whole_is_served_unchanged(pool: asyncpg.Pool) -> None:
    """A receipt stored before migration 0035, chain and all, is served as it is, and stays
    the copy's receipt (the first stands)."""
    docs = PostgresDocumentStore(pool)
    recipient = unique("R")
    sent = await send(docs, a_submission(unique("S"), [recipient]))
    delivery_id = sent.receipt.routes[0].delivery_id
    await docs.acknowledge(delivery_id, recipient, NOW)
    record = await docs.delivery(delivery_id)
    assert record is not None
    whole = hub_receipt(record).to_json()
    await pool.execute(
        "UPDATE exchange.delivery SET transport_receipt = $2 WHERE id = $1",
        uuid.UUID(delivery_id),
        whole,
    )
    served = await PostgresDocumentStore(pool).delivery(delivery_id)
    assert served is not None
    assert served.transport_receipt == whole
    later = hub_receipt(record, hub_identity("docaxis other hub"))
    assert await docs.save_transport_receipt(delivery_id, later) == whole
    assert await _row(pool, delivery_id) == whole


async def test_an_altered_or_missing_chain_is_refused(pool: asyncpg.Pool) -> None:
    """A chain row whose bytes no longer hash to its key (another hub's chain put in its
    place), or a chain row gone: the receipt is not served, by a process that reads it."""
    (record,) = await _acknowledged(pool, 1, hub="docaxis altered hub")
    sha256 = chain_named(await _row(pool, record.delivery_id))
    assert sha256 is not None
    other = hub_chain(hub_identity("docaxis other hub").chain_der()).text
    await pool.execute(
        "UPDATE exchange.receipt_chain SET chain = $2 WHERE sha256 = $1", sha256, other
    )
    with pytest.raises(StoredChainError, match="does not match"):
        await PostgresDocumentStore(pool).delivery(record.delivery_id)
    await pool.execute("DELETE FROM exchange.receipt_chain WHERE sha256 = $1", sha256)
    with pytest.raises(StoredChainError, match="no stored chain"):
        await PostgresDocumentStore(pool).delivery(record.delivery_id)
