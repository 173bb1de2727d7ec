"""The operators' and agencies' reads with filters, each run by its adapter as the service runs
it (a pool of postgres.create_pool: generic plans, postgres.PLANNER_SETTINGS) with each
combination of its filters that an index serves differently, on test_statement_plans's history.
The statements each read sends are recorded (asyncpg's query logger), and each is explained again
on its own prepared statement, on the plan the read used (EXPLAIN ANALYZE EXECUTE, rolled back;
custom plans where the read asked for them, postgres.planned_for_values): its scans may read no
more rows than the read is asked about. A statement with an optional filter (`$n IS NULL OR …`)
has one generic plan for every combination, which reads what the broadest one needs: the console's
search read all 3,000 documents for one (docs/perf/README.md, "Every statement under generic
plans"). Plans made three ways: on empty tables (a new deployment's first reads, kept until
the tables are analyzed), on young statistics (never analyzed) and on current ones.

The hot statements of the delivery path are in test_statement_plans.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.exchange.adapters.postgres import (
    PostgresDocumentStore,
    insert_submissions,
    load_documents,
)
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore, insert_status
from services.exchange.adapters.postgres_peers import PostgresPeerStates
from services.exchange.adapters.postgres_reports import PostgresReportStore
from services.exchange.adapters.postgres_uploads import PostgresAbandonedUploads
from services.exchange.adapters.signature_chains import SignatureChains
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain.model import DeliveryState, Signature
from services.exchange.domain.statuses import StatusCode, StatusEntry, StatusReport
from services.exchange.service_layer.admin_ports import DocumentQuery
from services.exchange.service_layer.lifecycle_ports import PageCursor
from services.exchange.service_layer.ports import NewSubmission
from services.ledger.adapters.postgres import PostgresLedgerCheckpoints, PostgresLedgerReader
from tests.infra import SuiteServices
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    events_for,
)
from tests.plan_history import HISTORY, LOG, without_autovacuum
from tests.query_plans import leading_columns, literals, plan_nodes, rows_read, whole_index_scan

pytestmark = pytest.mark.integration

# Beside the history: a directory of 30 provinces and 3,000 communes (a seventh closed by the
# reorganisation of 2025), a due date on every tenth document (kept with its copies, as
# postgres._copies_sql stores it), a 03 an hour after the 01 on the acknowledged copies and a 06
# an hour later on those with a due date, but for the last hundred documents and two in a
# hundred (their times kept with the copies, as postgres_lifecycle.insert_status keeps them),
# and the copies to twenty agencies
# whose DMSs stopped answering dead-lettered (306; with their documents' senders, as
# postgres_copies.save_sql stores them), half of them routed through a peer hub (HUB-B, which
# also has 30 copies waiting); two agencies' copies withdrawn (30); 110 documents that came from
# two other peers, with their forwarded copies, their notices keeping their hops as
# postgres_lifecycle.stage_notices stores them; D1500's verification as Track reads it; 3,000
# checkpoints, all but the last three cosigned by two witnesses; the walks of the copies' due dates
# and of the notices' hops begun in the middle of the history (the 120th document's time; every
# notice of the history is the walk's, as a process of a version before 0039 stages them); two
# signatures on every document, the organisation's chain (its sender's) stored by reference,
# the official's (one a document) by reference on even documents, inline on odd ones (as before
# 0043).
OPERATIONS = """
UPDATE exchange.document SET verification = '{"mode": "signed"}' WHERE document_id = 'D1500';
INSERT INTO directory.agency (code, name, parent_code, kind, valid_from)
SELECT 'P' || lpad(i::text, 2, '0'), 'Tỉnh ' || i, NULL, 'province', '2020-01-01'
FROM generate_series(1, 30) i;
INSERT INTO directory.agency (code, name, parent_code, kind, valid_from, valid_to)
SELECT 'P' || lpad((i % 30 + 1)::text, 2, '0') || '-X' || lpad(i::text, 4, '0'), 'Xã ' || i,
    'P' || lpad((i % 30 + 1)::text, 2, '0'), 'commune', '2020-01-01',
    CASE WHEN i % 7 = 0 THEN date '2025-07-01' END
FROM generate_series(1, 3000) i;
UPDATE exchange.document SET header = jsonb_set(header, '{due_date}', '"2026-12-03"')
WHERE substr(document_id, 2)::int % 10 = 0;
UPDATE exchange.delivery d SET due_date = (doc.header ->> 'due_date')::date
FROM exchange.document doc
WHERE doc.uuid = d.document_uuid AND doc.header ->> 'due_date' IS NOT NULL;
INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at, recorded_at,
    reported_by)
SELECT d.id, 's' || d.id || c.code, c.code, d.acknowledged_at + c.after,
    d.acknowledged_at + c.after, d.recipient
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
CROSS JOIN LATERAL (SELECT substr(doc.document_id, 2)::int n) n
CROSS JOIN (VALUES ('03', interval '1 hour'), ('06', interval '2 hours')) c (code, after)
WHERE d.state = 'acknowledged' AND n.n <= 2900 AND n.n % 100 NOT IN (7, 50)
    AND (c.code = '03' OR d.due_date IS NOT NULL);
UPDATE exchange.delivery d SET answered_at = s.answered_at, registered_at = s.registered_at
FROM (SELECT delivery_id,
          min(occurred_at) FILTER (WHERE code IN ('02', '06')) AS answered_at,
          min(occurred_at) FILTER (WHERE code IN ('02', '03')) AS registered_at
      FROM exchange.delivery_status GROUP BY delivery_id) s
WHERE d.id = s.delivery_id;
UPDATE exchange.delivery SET state = 'dead_lettered', dead_lettered_at = accepted_at,
    dead_letter_reason = 'max pushes', acknowledged_at = NULL,
    via_hub = CASE WHEN recipient >= 'A160' THEN 'HUB-B' END
WHERE recipient BETWEEN 'A150' AND 'A169' AND state = 'acknowledged';
UPDATE exchange.delivery d SET dead_letter_sender = doc.sender FROM exchange.document doc
WHERE d.state = 'dead_lettered' AND doc.uuid = d.document_uuid;
UPDATE exchange.delivery SET state = 'withdrawn', recall_state = 'withdrawn'
WHERE recipient IN ('A190', 'A191') AND state = 'acknowledged';
UPDATE exchange.delivery SET via_hub = 'HUB-B'
WHERE recipient >= 'A180' AND state IN ('accepted', 'queued', 'pushed');
UPDATE exchange.document SET from_hub = CASE WHEN substr(document_id, 2)::int <= 2100
    THEN 'HUB-C' ELSE 'HUB-D' END
WHERE substr(document_id, 2)::int BETWEEN 2001 AND 2110;
INSERT INTO exchange.forwarded_copy (origin_uuid, recipient, from_hub, delivery_id, hop_receipt,
    accepted_at)
SELECT gen_random_uuid(), d.recipient, doc.from_hub, d.id, '\\x00', d.accepted_at
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE doc.from_hub IS NOT NULL;
UPDATE exchange.notice n
SET via_hub = CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE d.id = n.delivery_id
    AND CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END IS NOT NULL;
UPDATE exchange.copy_due_date_walk SET began_at = '2026-12-02 01:00+00',
    walked_to = '2026-12-02 01:00+00';
UPDATE exchange.notice_hop_walk SET began_at = '2026-12-02 01:00+00',
    walked_to = '2026-12-02 01:00+00';
UPDATE exchange.document SET verification = NULL WHERE document_id IN ('D1400', 'D1401');
INSERT INTO exchange.signature_chain (sha256, certificates)
SELECT DISTINCT sha256(int4send(octet_length(c)) || c), ARRAY[c]
FROM exchange.document CROSS JOIN LATERAL (SELECT convert_to(sender, 'UTF8') c) c
UNION ALL
SELECT sha256(int4send(octet_length(c)) || c), ARRAY[c]
FROM exchange.document CROSS JOIN LATERAL (SELECT convert_to(document_id, 'UTF8') c) c
WHERE substr(document_id, 2)::int % 2 = 0;
INSERT INTO exchange.document_signature (document_uuid, position, role, algorithm, value,
    certificate_chain, chain_sha256)
SELECT d.uuid, 0, 'organization', 'ES256', '\\x00'::bytea, NULL,
    sha256(int4send(octet_length(c)) || c)
FROM exchange.document d CROSS JOIN LATERAL (SELECT convert_to(d.sender, 'UTF8') c) c
UNION ALL
SELECT d.uuid, 1, 'person', 'Ed25519', '\\x01'::bytea,
    CASE WHEN n % 2 = 1 THEN ARRAY[c] END,
    CASE WHEN n % 2 = 0 THEN sha256(int4send(octet_length(c)) || c) END
FROM exchange.document d
CROSS JOIN LATERAL (SELECT convert_to(d.document_id, 'UTF8') c,
    substr(d.document_id, 2)::int n) c;
INSERT INTO ledger.checkpoint (size, root, note)
SELECT i * 4, sha256(int8send(i)), convert_to('checkpoint ' || i, 'UTF8')
FROM generate_series(1, 3000) i;
INSERT INTO ledger.cosignature (size, witness, line, cosigned_at)
SELECT i * 4, w, '— ' || w || ' ' || md5(i::text) || E'\n', now()
FROM generate_series(1, 2997) i CROSS JOIN (VALUES ('w1'), ('w2')) v (w);
"""

# A page of 20 and what it joins (its documents, copies, statuses) read under 100 rows; a walk of
# the history reads thousands.
PAGE = 100
# The copies with a due date not answered (136 of 600: waiting, or of the two documents in a
# hundred and the last hundred without a 06), each with its document and a probe of its
# statuses.
OPEN_FOR_AN_ANSWER = 3 * 136 + PAGE
# The copies waiting (120), each with its document, and those acknowledged without a 03 (157 of
# 2,844), each with its document and two probes of its statuses.
OPEN_FOR_REGISTRATION = 2 * 120 + 4 * 157 + PAGE
# A peer's dead letters (150 of the 306), each once.
PEERS_DEAD_LETTERS = 150 + PAGE
# What waits for the peers and came from them lately: HUB-B's 150 dead letters and 30 copies
# waiting, the 116 notices waiting for HUB-C and HUB-D (statuses of the documents that came from
# them), the 40 copies each sent lately, and a probe for each.
PEERS_WAITING = 150 + 30 + 116 + 2 * 40 + 10
# Every dead letter (306) and its document.
DEAD_LETTERS = 2 * 306
# The copies waiting (accepted, queued or pushed: 120) and the documents of a state's (30).
WAITING = 120 + 30
AS_OF = dt.datetime(2026, 12, 10, tzinfo=dt.UTC)
DECEMBER = (dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
# The 120th document's time: a cursor in the middle of the history, an hour of it.
MIDDLE = dt.datetime(2026, 12, 2, 1, tzinfo=dt.UTC)
AFTER_MIDDLE = PageCursor(MIDDLE, "00000000-0000-4000-8000-000000000000")


@dataclass(frozen=True)
class Read:
    """An adapter's read with one combination of its filters, and the rows each statement it
    sends may read (its scans' rows, summed)."""

    name: str
    call: Callable[[asyncpg.Pool], Awaitable[object]]
    read_at_most: int = PAGE


def _search(
    query: DocumentQuery, after: PageCursor | None = None, read_at_most: int = PAGE
) -> Read:
    return Read(
        f"the console's search, {query} after {after}",
        lambda pool: PostgresAdminStore(pool).search(query, after, 20),
        read_at_most,
    )


def _dead_letters(
    name: str,
    *,
    agency: str | None = None,
    after: PageCursor | None = None,
    peer: str | None = None,
    read_at_most: int = PAGE,
) -> Read:
    return Read(
        name,
        lambda pool: PostgresAdminStore(pool).dead_letters(agency, after, 20, peer=peer),
        read_at_most,
    )


async def _status_recorded(pool: asyncpg.Pool) -> None:
    """A 03 on a copy with its registration kept on the copy (rolled back): one copy written."""
    async with pool.acquire() as conn:
        copy = await conn.fetchval("SELECT id FROM exchange.delivery ORDER BY id LIMIT 1")
        if copy is None:
            return
        transaction = conn.transaction()
        await transaction.start()
        try:
            await insert_status(
                conn,
                copy,
                StatusEntry(StatusReport("plan-03", StatusCode.ACCEPTED, AS_OF), "A001", AS_OF),
            )
        finally:
            await transaction.rollback()


async def _documents_read_back(pool: asyncpg.Pool) -> None:
    """Two documents as a push carries them, read by a process that knows no chain yet."""
    async with pool.acquire() as conn:
        keys = await conn.fetch(
            "SELECT uuid FROM exchange.document WHERE document_id = ANY($1::text[])",
            ["D1400", "D1401"],
        )
        await load_documents(conn, [k["uuid"] for k in keys], StoredDocuments(), SignatureChains())


async def _submitted_with_a_new_chain(pool: asyncpg.Pool) -> None:
    """Submit's one statement for a document whose signer's chain is new (rolled back): the
    chain's row written beside the signatures, its key probed (ON CONFLICT)."""
    submission = dataclasses.replace(
        a_submission("A001", ["A002", "A003"]),
        signatures=(Signature("person", "Ed25519", b"\x01", (b"leaf", b"ca"), AS_OF),),
    )
    receipt = a_receipt(submission)
    item = NewSubmission(submission, receipt, "f" * 64, events_for(receipt, "A001"))
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await insert_submissions(conn, [item], SignatureChains())
        finally:
            await transaction.rollback()


READS = (
    _search(DocumentQuery()),
    _search(DocumentQuery(), AFTER_MIDDLE),
    _search(DocumentQuery(document_id="D1500")),
    _search(DocumentQuery(code_number="1500", code_notation="DT-TAI")),
    _search(DocumentQuery(sender="A007")),
    _search(DocumentQuery(sender="A007"), AFTER_MIDDLE),
    _search(DocumentQuery(submitted_from=MIDDLE, submitted_before=MIDDLE + dt.timedelta(hours=1))),
    _search(DocumentQuery(sender="A007", state=DeliveryState.ACKNOWLEDGED)),
    _search(DocumentQuery(document_id="D1500", latest_status=StatusCode("01"))),
    _search(DocumentQuery(recipient="A150")),
    # The dead letters, a tenth of the copies here: from them (or a walk of the documents, each
    # with its copies, until 20 have one: some 250).
    _search(DocumentQuery(state=DeliveryState.DEAD_LETTERED), read_at_most=DEAD_LETTERS),
    # A state of the live copies, rare (30 accepted): from the copies waiting, not a walk of the
    # documents until 20 have one (2,099-4,198 rows).
    _search(DocumentQuery(state=DeliveryState.ACCEPTED), read_at_most=WAITING),
    _search(DocumentQuery(state=DeliveryState.ACCEPTED), AFTER_MIDDLE, read_at_most=WAITING),
    # A state of ended copies (30 withdrawn): from them (delivery_ended).
    _search(DocumentQuery(state=DeliveryState.WITHDRAWN)),
    _search(DocumentQuery(latest_status=StatusCode("01"))),
    _dead_letters("the dead letters"),
    _dead_letters("the dead letters, the next page", after=AFTER_MIDDLE),
    # An agency's: a page of its copies' and one of its documents', each from its index.
    _dead_letters("the dead letters, a recipient's", agency="A150"),
    _dead_letters("the dead letters, a sender's", agency="A007"),
    _dead_letters("the dead letters, a sender's, the next page", agency="A007", after=AFTER_MIDDLE),
    _dead_letters("the dead letters, a peer's", peer="HUB-B"),
    # With their count: the peer's 150.
    Read(
        "a peer's dead letters (its resend)",
        lambda pool: PostgresPeerStates(pool).dead_lettered("HUB-B", 20),
        read_at_most=PEERS_DEAD_LETTERS,
    ),
    # The reports: the hub's copies not answered (with a due date) or not registered, or
    # waiting, each with its document and statuses probed, whether of every agency or of one;
    # not every copy with a due date or acknowledged (an agency's read its copies and documents
    # ever: 4 x 166 for A007's, every agency's the hub's 3,300 copies).
    Read(
        "every agency's overdue copies",
        lambda pool: PostgresReportStore(pool).overdue(None, AS_OF, 20),
        read_at_most=OPEN_FOR_AN_ANSWER,
    ),
    Read(
        "an agency's overdue copies",
        lambda pool: PostgresReportStore(pool).overdue("A007", AS_OF, 20),
        read_at_most=OPEN_FOR_AN_ANSWER,
    ),
    Read(
        "every agency's stalled copies",
        lambda pool: PostgresReportStore(pool).stalled(None, AS_OF, dt.timedelta(hours=1), 20),
        read_at_most=OPEN_FOR_REGISTRATION,
    ),
    Read(
        "an agency's stalled copies",
        lambda pool: PostgresReportStore(pool).stalled("A007", AS_OF, dt.timedelta(hours=1), 20),
        read_at_most=OPEN_FOR_REGISTRATION,
    ),
    # A007's 150 documents with their copies' recalls, its 15 copies with their statuses: 364.
    Read(
        "an agency's month's figures",
        lambda pool: PostgresReportStore(pool).monthly(*DECEMBER, ["A007"]),
        read_at_most=400,
    ),
    # The hour's 60 documents and 66 copies, with their statuses (their 03s and 06s too): 462.
    Read(
        "an hour's figures",
        lambda pool: PostgresReportStore(pool).monthly(MIDDLE, MIDDLE + dt.timedelta(hours=1), []),
        read_at_most=500,
    ),
    Read(
        "what waits for each peer (ListPeers)",
        lambda pool: PostgresPeerStates(pool).queues(MIDDLE + dt.timedelta(hours=9)),
        read_at_most=PEERS_WAITING,
    ),
    Read("a status recorded", _status_recorded),
    Read("two documents read back, their signatures' chains", _documents_read_back),
    Read("a document submitted with a new chain", _submitted_with_a_new_chain),
    # A batch of the copies accepted since the migration (the walk begins in the middle of the
    # history here), each without a due date with its document.
    Read(
        "the copies' due dates, a batch",
        lambda pool: PostgresReportStore(pool).date_copies(
            MIDDLE + dt.timedelta(days=1), dt.timedelta(days=1), 20
        ),
    ),
    # A batch of the waiting notices staged since the migration (the walk begins in the middle of
    # the history here), each without a hop with its copy and document.
    Read(
        "the notices' hops, a batch",
        lambda pool: PostgresPeerStates(pool).route_notices(
            MIDDLE + dt.timedelta(days=1), dt.timedelta(days=1), 20
        ),
    ),
    Read(
        "the pull listing of an agency with a backlog",
        lambda pool: PostgresLifecycleStore(pool).pending("A199", None, 20),
    ),
    Read(
        "the pull listing of an agency with a backlog, the next page",
        lambda pool: PostgresLifecycleStore(pool).pending("A199", AFTER_MIDDLE, 20),
    ),
    Read(
        "the pull listing of a ministry",
        lambda pool: PostgresLifecycleStore(pool).pending("A200", None, 20),
    ),
    Read(
        "Track by document id",
        lambda pool: PostgresDocumentStore(pool).track(document_uuid=None, document_id="D1500"),
    ),
    Read("the directory, a page", lambda pool: _agencies(pool, None, None, "")),
    Read("the directory, a province's", lambda pool: _agencies(pool, "P07", None, "")),
    Read("the directory, open ones", lambda pool: _agencies(pool, None, dt.date(2026, 1, 1), "P")),
    Read(
        "the directory, a province's open ones",
        lambda pool: _agencies(pool, "P07", dt.date(2026, 1, 1), "P07-X1000"),
    ),
    Read("the directory's changes", lambda pool: PostgresAgencies(pool).changes(1000, 50)),
    Read("the ledger's entries", lambda pool: PostgresLedgerReader(pool).entries(1000, 1050)),
    Read(
        "the checkpoint with its quorum",
        lambda pool: PostgresLedgerCheckpoints(pool, quorum=2).latest_note(),
    ),
    Read(
        "the latest checkpoint",
        lambda pool: PostgresLedgerReader(pool, quorum=2).latest_checkpoint(),
    ),
)


async def _agencies(
    pool: asyncpg.Pool, parent: str | None, open_on: dt.date | None, after: str
) -> object:
    return await PostgresAgencies(pool).list(
        parent_code=parent, open_on=open_on, after_code=after, limit=20
    )


# What the adapters' statements name; asyncpg's own (type introspection) and the test's are not
# theirs. A statement without parameters has one plan whatever the plan mode: not explained.
_SERVICE_TABLE = re.compile(r"\b(exchange|directory|ledger)\.")


@dataclass(frozen=True)
class Sent:
    """A statement a read sent, with its arguments and the plan mode it ran in."""

    sql: str
    arguments: tuple[object, ...]
    custom: bool


async def _sent_by(pool: asyncpg.Pool, read: Read) -> list[Sent]:
    """Runs `read` on the pool's one connection, recording what it sends."""
    logged: list[LoggedQuery] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(logged.append)
    try:
        await read.call(pool)
        # The logger is called soon after each statement: a round trip lets the last one in.
        await pool.fetchval("SELECT 1")
    finally:
        async with pool.acquire() as conn:
            conn.remove_query_logger(logged.append)
    sent: list[Sent] = []
    custom = False
    for query in logged:
        if query.query.startswith("SET LOCAL plan_cache_mode = force_custom_plan"):
            custom = True
        elif query.query.startswith(("COMMIT", "ROLLBACK")):
            custom = False
        elif query.args and _SERVICE_TABLE.search(query.query):
            sent.append(Sent(query.query, tuple(query.args), custom))
    return sent


async def _explained(conn: postgres.Conn, sent: Sent) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the prepared statement asyncpg made of `sent.sql` on this connection, on
    the plan it keeps (or a custom one), rolled back. Prepared outside asyncpg's statement cache, so
    that explaining evicts none of the statements whose plans are kept there."""
    row = await conn.fetchrow(
        "SELECT name, parameter_types::text[] AS types FROM pg_prepared_statements "
        "WHERE statement = $1",
        sent.sql,
    )
    assert row is not None, sent.sql
    values = await literals(conn, row["types"], sent.arguments)
    transaction = conn.transaction()
    await transaction.start()
    try:
        if sent.custom:
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        explain = await conn.prepare(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {row['name']}({', '.join(values)})"
        )
        explained = await explain.fetchval()
    finally:
        await transaction.rollback()
    return dict(json.loads(explained)[0]["Plan"])


def _read(plan: dict[str, Any], leading: dict[str, str]) -> tuple[int, list[str]]:
    """The rows the plan's scans read (those they returned and those they filtered out, in every
    loop), and its scans of a whole index (a condition that leaves the index's first column free
    reads it all and counts only the rows that match)."""
    nodes = list(plan_nodes(plan))
    whole = [scan for node in nodes if (scan := whole_index_scan(node, leading))]
    return int(sum(rows_read(node) for node in nodes)), whole


async def _overreads(pool: asyncpg.Pool, leading: dict[str, str], planned: str) -> list[str]:
    """Every read's statements that read more than the read may, on `pool`'s plans."""
    found: list[str] = []
    for read in READS:
        for sent in await _sent_by(pool, read):
            async with pool.acquire() as conn:
                plan = await _explained(conn, sent)
            read_rows, whole = _read(plan, leading)
            if read_rows > read.read_at_most or whole:
                mode = "custom" if sent.custom else "generic"
                statement = " ".join(sent.sql.split())[:100]
                found.append(
                    f"{read.name} ({planned}, {mode} plan): {read_rows} rows read "
                    f"(at most {read.read_at_most}) {whole} by {statement}"
                )
    return found


async def test_each_read_with_filters_reads_only_what_it_is_asked_about(
    services: SuiteServices,
) -> None:
    url = await postgres.recreate_database(services.database_url, "docaxis_adapter_plans")
    await migrate(url)
    conn = await asyncpg.connect(url)
    pools: list[asyncpg.Pool] = []
    try:
        await without_autovacuum(conn)
        # A deployment's first reads plan on empty tables; those plans stay until an analyze.
        first = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(first)
        for read in READS:
            await read.call(first)
        await conn.execute(HISTORY)
        await conn.execute(LOG)
        await conn.execute(OPERATIONS)
        leading = await leading_columns(conn)
        found = await _overreads(first, leading, "planned on empty tables")
        young = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(young)
        found += await _overreads(young, leading, "young statistics")
        await conn.execute("ANALYZE")
        analyzed = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(analyzed)
        found += await _overreads(analyzed, leading, "analyzed")
    finally:
        for pool in pools:
            await pool.close()
        await conn.close()
    assert not found, "\n".join(found)


# The attachments of every document but the last twenty's blobs, all stored and last proved held
# a month before the sweep's idle time; then, after a first sweep, ten blobs no document uses,
# held by their agency lately (kept).
ATTACHMENTS = """
UPDATE exchange.blob SET created_at = '2026-11-01';
UPDATE exchange.blob_owner SET owned_at = '2026-11-01';
INSERT INTO exchange.document_attachment (document_uuid, position, name, media_type, size, sha256)
SELECT d.uuid, 0, 'a.pdf', 'application/pdf', 100, md5(i::text) || md5((-i)::text)
FROM exchange.document d CROSS JOIN LATERAL (SELECT substr(d.document_id, 2)::int i) n
WHERE n.i <= 2980;
"""
HELD = """
INSERT INTO exchange.blob (sha256, size, storage_id, created_at)
SELECT md5('h' || i) || md5('-h' || i), 100, gen_random_uuid(), '2026-11-01'
FROM generate_series(1, 10) i;
INSERT INTO exchange.blob_owner (sha256, agency, owned_at)
SELECT md5('h' || i) || md5('-h' || i), 'A001', '2026-12-05' FROM generate_series(1, 10) i;
"""
SWEEP_IDLE_SINCE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SWEEP = Read(
    "the orphan blob sweep",
    lambda pool: PostgresAbandonedUploads(pool).discard_orphan_blobs(SWEEP_IDLE_SINCE),
    # The ten blobs no document uses, each with its document and owner probed.
    read_at_most=3 * 10 + 10,
)


async def test_the_orphan_sweep_reads_only_the_blobs_no_document_is_known_to_use(
    services: SuiteServices,
) -> None:
    """After a sweep has seen the blobs the documents use, the next reads only the others: every
    blob older than the idle time was read by every sweep (3,010 here), the hub's history."""
    url = await postgres.recreate_database(services.database_url, "docaxis_sweep_plans")
    await migrate(url)
    conn = await asyncpg.connect(url)
    pools: list[asyncpg.Pool] = []
    found: list[str] = []
    try:
        await without_autovacuum(conn)
        first = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(first)
        await SWEEP.call(first)
        await conn.execute(HISTORY)
        await conn.execute(ATTACHMENTS)
        assert await SWEEP.call(first) == 20
        await conn.execute(HELD)
        leading = await leading_columns(conn)
        young = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(young)
        await conn.execute("ANALYZE")
        analyzed = await postgres.create_pool(url, min_size=1, max_size=1)
        pools.append(analyzed)
        for pool, planned in zip(pools, ("on empty tables", "young", "analyzed"), strict=True):
            for sent in await _sent_by(pool, SWEEP):
                async with pool.acquire() as explaining:
                    plan = await _explained(explaining, sent)
                read_rows, whole = _read(plan, leading)
                if read_rows > SWEEP.read_at_most or whole:
                    statement = " ".join(sent.sql.split())[:100]
                    found.append(f"{planned}: {read_rows} rows read {whole} by {statement}")
        assert await conn.fetchval("SELECT count(*) FROM exchange.blob") == 2990
    finally:
        for pool in pools:
            await pool.close()
        await conn.close()
    assert not found, "\n".join(found)
