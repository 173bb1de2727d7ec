"""Staging ledger events (exchange side): one statement for a whole transaction's events, and
ledger.pending ids in the order the events were given, since the ledger sequences by id."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres import ACTOR, stage_ledger_events
from services.exchange.domain.delivery import LedgerEvent
from tests.infra import SuiteServices

pytestmark = pytest.mark.integration


@pytest.fixture
async def database_url(services: SuiteServices) -> str:
    """A database of its own: the suite's axis sequences what is staged in the shared one."""
    url = await postgres.recreate_database(services.database_url, "docaxis_ledger_staging")
    await migrate(url)
    return url


async def test_events_are_staged_in_the_order_given(database_url: str) -> None:
    """Sixty events of three documents, interleaved, with empty and non-ASCII fields: every
    column as given, and their ids ascend in the list's order."""
    at = dt.datetime(2026, 12, 6, 1, 30, tzinfo=dt.UTC)
    documents = [str(uuid.uuid4()) for _ in range(3)]
    events = [
        LedgerEvent(
            entry_type=f"type-{n}",
            doc_uuid=documents[n % 3],
            document_id=f"{n}/CV-Sở",
            occurred_at=at + dt.timedelta(seconds=n),
            from_agency="000.00.00.H98" if n % 2 else "",
            to_agency="" if n % 2 else "001.00.00.H98",
            data={"n": n, "tên": "Nguyễn Văn Bền"},
        )
        for n in reversed(range(60))
    ]
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await stage_ledger_events(conn, events)
        rows = await conn.fetch(
            """
            SELECT entry_type, doc_uuid, document_id, from_agency, to_agency, actor, occurred_at,
                data::text AS data
            FROM ledger.pending WHERE doc_uuid = ANY($1::uuid[]) ORDER BY id
            """,
            [uuid.UUID(d) for d in documents],
        )
    finally:
        await conn.close()
    assert [
        (r["entry_type"], str(r["doc_uuid"]), r["document_id"], r["from_agency"], r["to_agency"])
        for r in rows
    ] == [(e.entry_type, e.doc_uuid, e.document_id, e.from_agency, e.to_agency) for e in events]
    assert {r["actor"] for r in rows} == {ACTOR}
    assert [r["occurred_at"] for r in rows] == [e.occurred_at for e in events]
    assert [r["data"] for r in rows] == [
        f'{{"n": {e.data["n"]}, "tên": "Nguyễn Văn Bền"}}' for e in events
    ]
