"""The settling of coalesced notices (coalesced_sql, a clause of the acknowledgement's one
statement and of a status report's) against real Postgres, on the statistics of a young notice
table: never analyzed, the planner takes the unhanded notices for a handful and, with the
previous statement, walked all of them (every agency's) for each new notice, 8-10 ms a call
with 12,000 waiting. Each new notice must probe its own copy's."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_acknowledgements import StatusNotice, coalesced_sql
from services.exchange.adapters.postgres_statements import Parameters
from tests.infra import SuiteServices
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send
from tests.query_plans import plan_nodes

pytestmark = pytest.mark.integration

EARLIER = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)
NOW = EARLIER + dt.timedelta(minutes=5)
# Unhanded notices of other agencies about the same copy: enough that a walk of them all costs
# more than a probe by the planner's own figures, were it to know how many there are.
OTHERS = 3000


@pytest.fixture
async def database_url(services: SuiteServices) -> str:
    url = await postgres.recreate_database(services.database_url, "docaxis_coalescing_plan")
    await migrate(url)
    return url


async def _explained(
    conn: asyncpg.Connection, sql: str, values: Sequence[object], plan_mode: str
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` as a prepared statement (as asyncpg runs it) under
    `plan_mode`, in the caller's transaction."""
    types = dict(re.findall(r"\$(\d+)::([a-z\[\]]+)", sql))
    literals = [
        f"{await conn.fetchval(f'SELECT quote_nullable($1::{types[str(i)]}::text)', value)}"
        f"::{types[str(i)]}"
        for i, value in enumerate(values, 1)
    ]
    await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
    await conn.execute(f"PREPARE coalescing AS {sql}")
    try:
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE coalescing({', '.join(literals)})"
        )
    finally:
        await conn.execute("DEALLOCATE coalescing")
    return dict(json.loads(explained)[0]["Plan"])


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_new_notice_probes_its_own_copys_unhanded_notices_on_young_statistics(
    database_url: str, plan_mode: str
) -> None:
    """OTHERS unhanded notices of other agencies and the sender's own about one copy, on a
    notice table never analyzed: a new notice of the sender settles its own, reading no other
    (the previous statement's plan read all of them, in both plan modes)."""
    conn = await asyncpg.connect(database_url)
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    try:
        # The statistics stay those of a table never analyzed, whatever autovacuum would do.
        await conn.execute("ALTER TABLE exchange.notice SET (autovacuum_enabled = false)")
        sender = unique("S")
        sent = await send(PostgresDocumentStore(pool), a_submission(sender, [unique("R")]))
        copy = uuid.UUID(sent.receipt.routes[0].delivery_id)
        rows = await conn.fetch(
            """
            WITH s AS (
                INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at,
                    recorded_at, reported_by)
                SELECT $1, 'waiting' || i, '02', $2::timestamptz + i * interval '1 second', $2, 'X'
                FROM generate_series(0, $4::int) i RETURNING id, status_id
            )
            INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at)
            SELECT gen_random_uuid(),
                CASE WHEN s.status_id = 'waiting0' THEN $3 ELSE 'O' || s.id END,
                'status', $1, s.id, $2
            FROM s RETURNING id, agency, status_row
            """,
            copy,
            EARLIER,
            sender,
            OTHERS,
        )
        (waiting,) = [r for r in rows if r["agency"] == sender]
        new = uuid.uuid4()
        async with conn.transaction():
            # The new notice, as the statement's notices clause would have written it.
            await conn.execute(
                """
                INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row,
                    created_at)
                VALUES ($1, $2, 'status', $3, $4, $5)
                """,
                new,
                sender,
                copy,
                waiting["status_row"],
                NOW,
            )
            p = Parameters()
            sql = coalesced_sql(p, [StatusNotice(new, sender, copy)], NOW)
            plan = await _explained(conn, sql, p.values, plan_mode)
            settled = await conn.fetch(
                "SELECT id, coalesced_into FROM exchange.notice WHERE acknowledged_at = $1", NOW
            )
    finally:
        await pool.close()
        await conn.close()
    assert [tuple(r) for r in settled] == [(waiting["id"], new)]
    scans = [
        n
        for n in plan_nodes(plan)
        if n.get("Relation Name") == "notice" and "Scan" in n["Node Type"]
    ]
    assert scans, plan
    # Each scan of notice found the sender's own notice alone: no walk of the others.
    assert [n["Actual Rows"] * n["Actual Loops"] for n in scans] == [1] * len(scans), plan
    # Besides, at most the new notice itself, which the probe meets and its filter drops: the
    # test writes it first (the statement's notices clause writes it unseen by this clause).
    assert sum(n.get("Rows Removed by Filter", 0) for n in scans) <= 1, plan
