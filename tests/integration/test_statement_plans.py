"""The delivery path's hot statements against real Postgres, as asyncpg runs them (prepared, in
a session with the pools' planner settings, postgres.PLANNER_SETTINGS: the generic plan from
the first execution on; the custom plans are checked too), on a history of a few thousand
documents most of whose copies and notices are done with, a few live: on statistics as
young as a fresh deployment's or the bench's (the exchange's tables never analyzed, the log's
taken while it held one document) and on current ones. Each statement reads no more than what it
is asked about: a walk of a table or of a whole index (what these statistics have led the
planner to, docs/perf/README.md "Young statistics") reads thousands of rows here.

Statements with a test of their own: the notices' coalescing clause
(contract/test_notice_coalescing_plan.py), the sequencer's claim and each document's last entry
(test_ledger_sequencer.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres_bindings import FIND_SQL
from services.exchange.adapters.postgres import (
    PUBLISH_SQL,
    SETTLE_SQL,
    SUBMIT_LOOKUPS_SQL,
    UNOWNED_ATTACHMENTS_SQL,
)
from services.exchange.adapters.postgres_copies import (
    LOCK_PUBLISHED_SQL,
    RECORD_FAILURES_SQL,
    STORED_FAILURES_SQL,
)
from services.exchange.adapters.postgres_lifecycle import (
    ACKNOWLEDGEMENT_LOCK_SQL,
    LIFECYCLE_STATUSES_SQL,
    LINKS_ANSWERED_SQL,
    LINKS_REPLIES_SQL,
    NOTICE_ACKNOWLEDGE_SQL,
    NOTICE_CLAIM_SQL,
    NOTICE_DECISION_SQL,
    NOTICE_LOCK_SQL,
    VERSIONS_SQL,
)
from services.ledger.adapters.postgres import DOCUMENT_ENTRIES
from tests.infra import SuiteServices
from tests.plan_history import HISTORY, LOG, without_autovacuum
from tests.query_plans import (
    explain_prepared,
    leading_columns,
    literals,
    plan_nodes,
    rows_read,
    whole_index_scan,
)

pytestmark = pytest.mark.integration

# A probe reads the rows it returns and a few others; a walk reads thousands here.
READ_AT_MOST = 60
# Ten live copies: what a push claim, an acknowledgement group or a relay batch works on.
LIVE = "SELECT d.id, doc.sender FROM exchange.delivery d JOIN exchange.document doc "
LIVE += "ON doc.uuid = d.document_uuid WHERE d.state = 'pushed' ORDER BY d.id LIMIT 10"
# Ten notices waiting for their senders.
WAITING = "SELECT id FROM exchange.notice WHERE acknowledged_at IS NULL AND agency <> 'A199' "
WAITING += "ORDER BY id LIMIT 10"


@dataclass(frozen=True)
class Hot:
    """A statement, where it runs, and a query of the history giving its arguments (one row)."""

    name: str
    sql: str
    arguments: str


HOT = (
    Hot(
        "the notice decision (an acknowledgement group's first ones, a status report)",
        NOTICE_DECISION_SQL,
        f"SELECT array_agg(DISTINCT sender), array_agg(sender), array_agg(id), array_agg(id), "  # noqa: S608 - constants only
        f"NULL::text FROM ({LIVE}) live",
    ),
    Hot(
        "the copies' lock of an acknowledgement group, with its notice decision's reads",
        ACKNOWLEDGEMENT_LOCK_SQL,
        f"SELECT array_agg(id) FROM ({LIVE}) live",  # noqa: S608 - constants only
    ),
    Hot(
        "the copies' lock of a push claim (with the relay's time of publish)",
        LOCK_PUBLISHED_SQL,
        f"SELECT array_agg(id) FROM ({LIVE}) live",  # noqa: S608 - constants only
    ),
    Hot(
        "the copies' failed hand-overs to a peer hub (a batch the peer asked for again)",
        RECORD_FAILURES_SQL,
        "SELECT array_agg(id), array_agg('PEER_RECEIPT_INVALID'::text), "  # noqa: S608 - constants only
        f"array_agg('hub national: SIGNER_MISMATCH'::text) FROM ({LIVE}) live",
    ),
    Hot(
        "the copies' last failed hand-overs, of those a push claim's limit dead-letters",
        STORED_FAILURES_SQL,
        f"SELECT array_agg(id) FROM ({LIVE}) live",  # noqa: S608 - constants only
    ),
    Hot("the relay's batch", PUBLISH_SQL, "SELECT 20, '{}'::text[]"),
    Hot(
        "the relay's batch, an agency's messages held",
        PUBLISH_SQL,
        "SELECT 20, ARRAY['A007']",
    ),
    Hot("the relay's settling pass", SETTLE_SQL, "SELECT 20, 1.0::float8"),
    Hot(
        "the notices' lock of a push or an acknowledgement",
        NOTICE_LOCK_SQL,
        f"SELECT array_agg(id) FROM ({WAITING}) n",  # noqa: S608 - constants only
    ),
    Hot(
        "a push of notices",
        NOTICE_CLAIM_SQL,
        f"SELECT array_agg(id) FROM ({WAITING}) n",  # noqa: S608 - constants only
    ),
    Hot(
        "an acknowledgement of notices, with the NOTIFYs of what it settled",
        NOTICE_ACKNOWLEDGE_SQL,
        "SELECT array_agg(id), now(), ARRAY['exchange_acknowledged'], "  # noqa: S608 - constants only
        f"ARRAY[string_agg(id::text, ',')] FROM ({WAITING}) n",
    ),
    Hot(
        "Submit's lookups (the sender's blobs, an earlier consignment)",
        SUBMIT_LOOKUPS_SQL,
        "SELECT 'A007', array_agg(sha256), 'C7', array_agg(sha256) FROM (SELECT sha256 FROM "
        "exchange.blob_owner WHERE agency = 'A007' ORDER BY sha256 LIMIT 3) b",
    ),
    Hot(
        "Submit's versions of a document a replacement names",
        VERSIONS_SQL,
        "SELECT 'D1500'",
    ),
    Hot(
        "Track's statuses of a document's copies",
        LIFECYCLE_STATUSES_SQL,
        "SELECT uuid FROM exchange.document WHERE document_id = 'D1500'",
    ),
    Hot(
        "a refusal's recheck of the sender's blobs, a federated submission's",
        UNOWNED_ATTACHMENTS_SQL,
        "SELECT 'A007', array_agg(sha256) FROM (SELECT sha256 FROM exchange.blob_owner "
        "WHERE agency = 'A007' ORDER BY sha256 LIMIT 3) b",
    ),
    Hot(
        "Track's links: the documents a reply answers, as a recipient of many sees them",
        LINKS_ANSWERED_SQL,
        "SELECT header -> 'response_for', 'A200', uuid FROM exchange.document "
        "WHERE document_id = 'D1510'",
    ),
    Hot(
        "Track's links: a document's replies, as a recipient of many sees them",
        LINKS_REPLIES_SQL,
        "SELECT document_id, 'A200', uuid FROM exchange.document WHERE document_id = 'D1500'",
    ),
    Hot(
        "the directory's certificate bindings of keys (Submit's signature checks)",
        FIND_SQL,
        "SELECT NULL::text, array_agg(spki_sha256) FROM (SELECT spki_sha256 "
        "FROM directory.certificate_binding ORDER BY spki_sha256 DESC LIMIT 2) k",
    ),
    Hot(
        "the directory's certificate bindings of an agency",
        FIND_SQL,
        "SELECT 'A007', NULL::text[]",
    ),
    Hot(
        "the ledger's entries of a document",
        DOCUMENT_ENTRIES,
        "SELECT uuid FROM exchange.document WHERE document_id = 'D1500'",
    ),
)


@pytest.fixture
async def history(services: SuiteServices) -> str:
    url = await postgres.recreate_database(services.database_url, "docaxis_statement_plans")
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await without_autovacuum(conn)
        await conn.execute(HISTORY)
        await conn.execute(LOG)
    finally:
        await conn.close()
    return url


async def _explained(
    conn: asyncpg.Connection, sql: str, arguments: Sequence[object], plan_mode: str
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` prepared (as asyncpg runs it) under `plan_mode`, rolled back."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
        await conn.execute(f"PREPARE hot AS {sql}")
        types = await conn.fetchval(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'hot'"
        )
        values = await literals(conn, types, arguments)
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({', '.join(values)})"
        )
    finally:
        await transaction.rollback()
        await conn.execute("DEALLOCATE hot")
    return dict(json.loads(explained)[0]["Plan"])


def _walks(plan: dict[str, Any], leading: dict[str, str]) -> list[str]:
    """The plan's scans that read more than READ_AT_MOST rows of a table, and those of an index
    on a condition that leaves its first column free (`leading`: index name -> first column):
    such a scan reads the whole index and reports only the rows that match."""
    found: list[str] = []
    for node in plan_nodes(plan):
        if whole := whole_index_scan(node, leading):
            found.append(whole)
        if (read := rows_read(node)) > READ_AT_MOST:
            found.append(
                f"{node['Node Type']} {node['Relation Name']} {node.get('Index Name', '')}: "
                f"{read:.0f} rows"
            )
    return found


@pytest.mark.parametrize("statistics", ["young", "analyzed"])
async def test_each_hot_statement_reads_only_what_it_is_asked_about(
    history: str, statistics: str
) -> None:
    conn = await asyncpg.connect(history, server_settings=postgres.PLANNER_SETTINGS)
    try:
        if statistics == "analyzed":
            await conn.execute("ANALYZE")
        leading = await leading_columns(conn)
        walks: list[str] = []
        for hot in HOT:
            arguments = await conn.fetchrow(hot.arguments)
            assert arguments is not None
            for plan_mode in ("force_generic_plan", "force_custom_plan"):
                plan = await _explained(conn, hot.sql, list(arguments), plan_mode)
                walks += [f"{hot.name}, {plan_mode}: {w}" for w in _walks(plan, leading)]
    finally:
        await conn.close()
    assert not walks, "\n".join(walks)


async def test_each_hot_statement_planned_on_empty_tables_reads_only_what_it_is_asked_about(
    services: SuiteServices,
) -> None:
    """The pools' sessions keep a statement's generic plan from its first execution, which on a
    new deployment (and in the bench, during its warm-up) comes while the tables are nearly
    empty; it is planned again only when the statistics of a table it reads change. Each hot
    statement is planned here on the empty tables (executed once, on NULL arguments), then run
    on that plan once the history is in. Two indexes with the same rows on an empty table cost
    the same (one row each), and the planner may keep the one that reads every row of a value:
    Submit's consignment check took document_sender_submitted (the sender's documents), Track's
    links delivery_inbox (the caller's copies)."""
    url = await postgres.recreate_database(services.database_url, "docaxis_statement_plans_new")
    await migrate(url)
    conn = await asyncpg.connect(url, server_settings=postgres.PLANNER_SETTINGS)
    try:
        await without_autovacuum(conn)
        for number, hot in enumerate(HOT):
            await conn.execute(f"PREPARE hot{number} AS {hot.sql}")
            count = await conn.fetchval(
                "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
                f"hot{number}",
            )
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(f"EXECUTE hot{number}({', '.join(['NULL'] * count)})")
            finally:
                await transaction.rollback()
        await conn.execute(HISTORY)
        await conn.execute(LOG)
        leading = await leading_columns(conn)
        walks: dict[str, list[str]] = {}
        for number, hot in enumerate(HOT):
            arguments = await conn.fetchrow(hot.arguments)
            assert arguments is not None
            plan = await explain_prepared(conn, f"hot{number}", list(arguments))
            if found := _walks(plan, leading):
                walks[hot.name] = found
    finally:
        await conn.close()
    assert not walks, walks
