"""Migration 0008 (issue 17, finding 2): copies the old code let a recipient acknowledge after
they were withdrawn lose that acknowledgement and their transport receipt; other copies keep
theirs."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

import services.exchange
from services.exchange.adapters.postgres import PostgresDocumentStore
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration

MIGRATION = (
    Path(services.exchange.__file__).parent
    / "migrations"
    / "0008_withdrawn_copies_unacknowledged.sql"
)


async def test_copies_acknowledged_after_their_withdrawal_are_unacknowledged(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresDocumentStore(pool)
    recalled, received, agreed = unique("W"), unique("R"), unique("A")
    sent = await send(store, a_submission(unique("S"), [recalled, received, agreed]))
    copies = {r.effective_recipient: uuid.UUID(r.delivery_id) for r in sent.receipt.routes}
    # What the old code stored: the first copy withdrawn before receipt, then acknowledged
    # anyway with a receipt; the others acknowledged normally, the last one then agreeing to a
    # recall.
    async with pool.acquire() as conn:
        for code, recall_state, state in (
            (recalled, "withdrawn", "withdrawn"),
            (received, None, "acknowledged"),
            (agreed, "agreed", "withdrawn"),
        ):
            await conn.execute(
                """
                UPDATE exchange.delivery SET state = $2, recall_state = $3,
                    acknowledged_at = now(), transport_receipt = '\\x7b7d'
                WHERE id = $1
                """,
                copies[code],
                state,
                recall_state,
            )
        await conn.execute(MIGRATION.read_text())
        rows = {
            r["id"]: (r["acknowledged_at"] is None, r["transport_receipt"] is None)
            for r in await conn.fetch(
                "SELECT id, acknowledged_at, transport_receipt FROM exchange.delivery "
                "WHERE id = ANY($1::uuid[])",
                list(copies.values()),
            )
        }
    assert rows == {
        copies[recalled]: (True, True),
        copies[received]: (False, False),
        copies[agreed]: (False, False),
    }
