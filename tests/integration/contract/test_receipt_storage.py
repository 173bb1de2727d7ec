"""A copy's transport receipt is stored out of line without a try at compressing it (migration
0034): the hub's signed receipts do not compress by what pglz asks, and the try cost about 1 %
of Postgres's CPU on the delivery path."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration


async def test_the_receipt_column_is_stored_external(pool: asyncpg.Pool) -> None:
    storage = await pool.fetchval(
        "SELECT attstorage FROM pg_attribute "
        "WHERE attrelid = 'exchange.delivery'::regclass AND attname = 'transport_receipt'"
    )
    assert storage == b"e"  # "char", which asyncpg reads as bytes


async def test_a_receipt_is_stored_whole_out_of_line_even_when_it_would_compress(
    pool: asyncpg.Pool,
) -> None:
    """A value that pglz would compress (the default storage did) is stored as written: so no
    receipt is tried. (Written directly: only the column's storage is under test.)"""
    docs = PostgresDocumentStore(pool)
    sent = await send(docs, a_submission(unique("S"), [unique("R")]))
    delivery_id = sent.receipt.routes[0].delivery_id
    receipt = b"receipt " * 400  # 3,200 bytes, above the threshold at which a row is toasted
    await pool.execute(
        "UPDATE exchange.delivery SET transport_receipt = $2 WHERE id = $1",
        uuid.UUID(delivery_id),
        receipt,
    )
    stored = await pool.fetchrow(
        "SELECT pg_column_compression(transport_receipt) AS method, "
        "pg_column_size(transport_receipt) AS size FROM exchange.delivery WHERE id = $1",
        uuid.UUID(delivery_id),
    )
    assert stored is not None
    assert (stored["method"], stored["size"]) == (None, len(receipt))
