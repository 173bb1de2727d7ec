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
import re
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
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_copies import LOCK_PUBLISHED_SQL
from services.exchange.adapters.postgres_lifecycle import (
    ACKNOWLEDGEMENT_LOCK_SQL,
    LIFECYCLE_STATUSES_SQL,
    LINKS_ANSWERED_SQL,
    LINKS_REPLIES_SQL,
    NOTICE_CLAIM_SQL,
    NOTICE_DECISION_SQL,
    NOTICE_LOCK_SQL,
    VERSIONS_SQL,
)
from services.exchange.service_layer.admin_ports import DocumentQuery
from services.ledger.adapters.postgres import DOCUMENT_ENTRIES
from tests.infra import SuiteServices
from tests.query_plans import plan_nodes

pytestmark = pytest.mark.integration

# 3,000 documents from 20 senders (a bench document's width: its rows' size is what a scan of the
# table costs the planner), three of them replies to D1500, a copy each to 199 agencies and every
# tenth a second to one that receives many (A200, a ministry: 300): 3 % of the copies live
# (accepted, queued, pushed), the others acknowledged or dead-lettered; a 01 and its notice to
# the sender per acknowledged copy, 2 % of them unacknowledged; the outbox rows the relay has yet
# to settle; 3,000 notices never handed over to one agency that is not reading them (A199),
# about copies it did not send; and the directory's 2,000 certificate bindings.
HISTORY = """
INSERT INTO exchange.blob (sha256, size, storage_id)
SELECT md5(i::text) || md5((-i)::text), 100, gen_random_uuid() FROM generate_series(1, 3000) i;
INSERT INTO exchange.blob_owner (sha256, agency)
SELECT md5(i::text) || md5((-i)::text), 'A' || lpad((i % 20)::text, 3, '0')
FROM generate_series(1, 3000) i;
INSERT INTO exchange.blob_chunk (storage_id, start_offset, data)
SELECT storage_id, 0, convert_to(repeat('x', 100), 'UTF8') FROM exchange.blob;
INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
    business_type, header, submitted_at, verification)
SELECT gen_random_uuid(), 'D' || i, 'A' || lpad((i % 20)::text, 3, '0'), 'C' || i, md5(i::text),
    0, jsonb_build_object('sender', 'A' || lpad((i % 20)::text, 3, '0'),
        'recipients', jsonb_build_array('A001'), 'code_number', i::text,
        'code_notation', 'DT-TAI', 'promulgation_date', '2026-12-01',
        'subject', repeat('Về việc sáp nhập đơn vị hành chính cấp xã ', 3),
        'promulgation_place', 'Hà Nội', 'document_type', 1, 'type_name', 'Công văn',
        'content', '', 'signer_competence', 'KT. GIÁM ĐỐC', 'signer_position', 'Phó Giám đốc',
        'signer_full_name', 'Nguyễn Văn A', 'due_date', NULL, 'priority', 0,
        'business_type', 0, 'response_for', '[]'::jsonb, 'to_places', '[]'::jsonb),
    timestamptz '2026-12-01' + i * interval '1 minute',
    jsonb_build_object('signatures', jsonb_build_array(jsonb_build_object('role', 'person',
        'status', 'valid', 'subject', repeat('CN=Nguyễn Văn A, ', 6),
        'issuer', repeat('CN=Bench CA, ', 6))))
FROM generate_series(1, 3000) i;
UPDATE exchange.document SET header = jsonb_set(header, '{response_for}', '["D1500"]')
WHERE document_id IN ('D1510', 'D1520', 'D1530');
INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient, recipient,
    state, accepted_at, queued_at, pushed_at, push_count)
SELECT gen_random_uuid(), d.uuid, k, r, r,
    CASE WHEN d.n % 100 = 0 THEN 'pushed' WHEN d.n % 100 = 1 THEN 'queued'
         WHEN d.n % 100 = 2 THEN 'accepted' WHEN d.n % 500 = 3 THEN 'dead_lettered'
         ELSE 'acknowledged' END,
    d.submitted_at, d.submitted_at, d.submitted_at, 1
FROM (SELECT uuid, submitted_at, row_number() OVER (ORDER BY submitted_at) n
      FROM exchange.document) d
CROSS JOIN LATERAL (
    SELECT k, CASE k WHEN 0 THEN 'A' || lpad(((d.n + 1) % 199)::text, 3, '0') ELSE 'A200' END r
    FROM generate_series(0, CASE WHEN d.n % 10 = 0 THEN 1 ELSE 0 END) k
) c;
UPDATE exchange.delivery SET acknowledged_at = accepted_at, transport_receipt = '\\x00'
WHERE state = 'acknowledged';
INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at, recorded_at,
    reported_by)
SELECT id, 's' || id, '01', acknowledged_at, acknowledged_at, recipient
FROM exchange.delivery WHERE acknowledged_at IS NOT NULL;
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at, pushed_at,
    push_count, acknowledged_at)
SELECT gen_random_uuid(), doc.sender, 'status', s.delivery_id, s.id, s.recorded_at,
    s.recorded_at, 1, CASE WHEN s.id % 50 = 0 THEN NULL ELSE s.recorded_at END
FROM exchange.delivery_status s JOIN exchange.delivery d ON d.id = s.delivery_id
JOIN exchange.document doc ON doc.uuid = d.document_uuid;
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at)
SELECT gen_random_uuid(), 'A199', 'status', delivery_id, id, recorded_at
FROM exchange.delivery_status;
INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload, delivery_id,
    published_at)
SELECT recipient, id::text, 't', '\\x00', id,
    CASE WHEN state = 'accepted' THEN NULL ELSE accepted_at END
FROM exchange.delivery;
INSERT INTO directory.certificate_binding (spki_sha256, agency_code, role, subject, issuer,
    serial, not_after, bound_by)
SELECT md5('k' || i) || md5('-k' || i), 'A' || lpad((i % 200)::text, 3, '0'), 'person',
    repeat('CN=Nguyễn Văn A, ', 6), repeat('CN=Bench CA, ', 6), i::text, NULL, 'operator'
FROM generate_series(1, 2000) i;
"""

# The log: one document's 200 entries, the statistics taken then (a new axis's first
# autoanalyze), then four entries for each document of the history.
LOG = """
INSERT INTO ledger.entry (seq, entry_type, doc_id, logged_at, body, leaf_hash)
SELECT seq, 'x', doc_id, now(), body, sha256('\\x00'::bytea || body)
FROM (SELECT seq, doc_id, convert_to(seq::text, 'UTF8') body FROM (
    SELECT i - 1 AS seq, '00000000-0000-4000-8000-000000000001'::uuid doc_id
    FROM generate_series(1, 200) i
) e) e;
ANALYZE ledger.entry_p0000;
INSERT INTO ledger.entry (seq, entry_type, doc_id, logged_at, body, leaf_hash)
SELECT seq, 'x', uuid, now(), body, sha256('\\x00'::bytea || body)
FROM (SELECT 199 + row_number() OVER (ORDER BY k, d.submitted_at) seq, d.uuid,
          convert_to(d.uuid::text || k, 'UTF8') body
      FROM exchange.document d CROSS JOIN generate_series(1, 4) k) e;
"""

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
    Hot("the relay's batch", PUBLISH_SQL, "SELECT 20"),
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
        await _without_autovacuum(conn)
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
        literals = [
            f"{await conn.fetchval(f'SELECT quote_nullable($1::{t}::text)', value)}::{t}"
            for t, value in zip(types, arguments, strict=True)
        ]
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({', '.join(literals)})"
        )
    finally:
        await transaction.rollback()
        await conn.execute("DEALLOCATE hot")
    return dict(json.loads(explained)[0]["Plan"])


async def _without_autovacuum(conn: asyncpg.Connection) -> None:
    """The statistics stay those the test takes, whatever autovacuum would do meanwhile."""
    for (table,) in await conn.fetch(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname IN ('exchange', 'ledger', 'directory') "
        "AND c.relkind = 'r'"
    ):
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


async def _explained_prepared(
    conn: asyncpg.Connection, name: str, arguments: Sequence[object]
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the prepared statement `name` on its plan as cached, rolled back."""
    types = await conn.fetchval(
        "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", name
    )
    literals = [
        f"{await conn.fetchval(f'SELECT quote_nullable($1::{t}::text)', value)}::{t}"
        for t, value in zip(types, arguments, strict=True)
    ]
    transaction = conn.transaction()
    await transaction.start()
    try:
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({', '.join(literals)})"
        )
    finally:
        await transaction.rollback()
    return dict(json.loads(explained)[0]["Plan"])


async def _leading_columns(conn: asyncpg.Connection) -> dict[str, str]:
    """Index name -> its first column, for the indexes of the service schemas."""
    return {
        r["relname"]: r["attname"]
        for r in await conn.fetch(
            "SELECT c.relname, a.attname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE c.relnamespace::regnamespace::text IN ('exchange', 'ledger', 'directory')"
        )
    }


def _walks(plan: dict[str, Any], leading: dict[str, str]) -> list[str]:
    """The plan's scans that read more than READ_AT_MOST rows of a table, and those of an index
    on a condition that leaves its first column free (`leading`: index name -> first column):
    such a scan reads the whole index and reports only the rows that match."""
    found: list[str] = []
    for node in plan_nodes(plan):
        index = node.get("Index Name", "")
        condition = node.get("Index Cond", "")
        if condition and index in leading and not re.search(rf"\b{leading[index]}\b", condition):
            found.append(f"{node['Node Type']} {index}: the whole index, for {condition}")
        if "Relation Name" not in node:
            continue
        per_loop = node["Actual Rows"] + sum(
            node.get(k, 0) for k in ("Rows Removed by Filter", "Rows Removed by Index Recheck")
        )
        read = per_loop * node["Actual Loops"]
        if read > READ_AT_MOST:
            found.append(f"{node['Node Type']} {node['Relation Name']} {index}: {read:.0f} rows")
    return found


@pytest.mark.parametrize("statistics", ["young", "analyzed"])
async def test_each_hot_statement_reads_only_what_it_is_asked_about(
    history: str, statistics: str
) -> None:
    conn = await asyncpg.connect(history, server_settings=postgres.PLANNER_SETTINGS)
    try:
        if statistics == "analyzed":
            await conn.execute("ANALYZE")
        leading = await _leading_columns(conn)
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


async def _document_rows_read(conn: asyncpg.Connection) -> int:
    row = await conn.fetchrow(
        "SELECT seq_tup_read, coalesce(idx_tup_fetch, 0) AS fetched FROM pg_stat_user_tables "
        "WHERE relid = 'exchange.document'::regclass"
    )
    assert row is not None
    return int(row["seq_tup_read"]) + int(row["fetched"])


@pytest.mark.parametrize(
    "query",
    [
        DocumentQuery(document_id="D1500"),
        DocumentQuery(code_number="1500", code_notation="DT-TAI"),
        DocumentQuery(sender="A007"),
    ],
    ids=["document id", "code", "sender"],
)
async def test_the_console_search_reads_only_the_documents_its_filters_name(
    history: str, query: DocumentQuery
) -> None:
    """The console's search has every filter optional (`$n IS NULL OR …`), so only a plan made
    for the values given can use the index of the filter given; the generic plan the pools force
    (postgres.PLANNER_SETTINGS) reads every document. Counted as the store runs it, from the
    table's statistics: its connection flushes them before answering the next statement."""
    pool = await postgres.create_pool(history, min_size=1, max_size=1)
    observer = await asyncpg.connect(history)
    try:
        before = await _document_rows_read(observer)
        found = await PostgresAdminStore(pool).search(query, None, 20)
        await pool.fetchval("SELECT pg_stat_force_next_flush()")
        read = await _document_rows_read(observer) - before
    finally:
        await observer.close()
        await pool.close()
    assert found, "the history holds documents that match"
    assert read <= READ_AT_MOST, f"{read} documents read"


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
        await _without_autovacuum(conn)
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
        leading = await _leading_columns(conn)
        walks: dict[str, list[str]] = {}
        for number, hot in enumerate(HOT):
            arguments = await conn.fetchrow(hot.arguments)
            assert arguments is not None
            plan = await _explained_prepared(conn, f"hot{number}", list(arguments))
            if found := _walks(plan, leading):
                walks[hot.name] = found
    finally:
        await conn.close()
    assert not walks, walks
