"""The sequencer's claim of staged events against real Postgres, on the statistics a drained
ledger.pending really has: after the writer empties it, autovacuum records it as empty (reltuples
0) while its pages stay, and the next backlog arrives on those statistics."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from docaxis_client.ledger.note import NoteSigner
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.ledger.adapters.postgres import (
    CLAIM_PENDING,
    LATEST_PER_DOCUMENT,
    SEQUENCER_ROLE,
    PostgresLedgerWriter,
)
from tests.infra import SuiteServices
from tests.integration.test_ledger_guards import ORIGIN, sequence_all, stage
from tests.query_plans import plan_nodes

pytestmark = pytest.mark.integration


@pytest.fixture
async def database_url(services: SuiteServices) -> str:
    url = await postgres.recreate_database(services.database_url, "docaxis_ledger_sequencer")
    await migrate(url)
    return url


async def _drained_and_vacuumed(url: str, signer: NoteSigner) -> int:
    """A first backlog sequenced, then what autovacuum leaves when it cannot truncate; returns
    the tree size."""
    conn = await asyncpg.connect(url)
    try:
        await stage(conn, 500)
        size = await sequence_all(url, signer)
        await conn.execute("VACUUM (TRUNCATE false) ledger.pending")
        stats = await conn.fetchrow(
            "SELECT relpages, reltuples FROM pg_class WHERE oid = 'ledger.pending'::regclass"
        )
        assert stats is not None
        assert (stats["relpages"] > 0, stats["reltuples"]) == (True, 0)  # what this test is about
        return size
    finally:
        await conn.close()


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_backlog_on_empty_statistics_is_claimed_in_one_pass_without_row_locks(
    database_url: str, plan_mode: str
) -> None:
    """300 events staged after the drain: a claim of 100 takes 100, read in one pass over
    staging (the nested loop those statistics used to get ran the subquery once per staged
    row, 300 times here and 100,000 for the bench's backlog, and took all 300: past the pool's
    60-s command timeout for the bench's), and deleted without locking them first (a row lock
    is a WAL record a staged event: the writer's tree-state lock already keeps claims apart)."""
    signer = NoteSigner.generate(ORIGIN)
    size = await _drained_and_vacuumed(database_url, signer)
    conn = await asyncpg.connect(database_url)
    try:
        await stage(conn, 300)
        # Rolled back: what EXPLAIN ANALYZE deletes comes back for the writer.
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
            explained = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM_PENDING, 100)
            claimed = await conn.fetchval("SELECT 300 - count(*) FROM ledger.pending")
        finally:
            await transaction.rollback()
        nodes = list(plan_nodes(json.loads(explained)[0]["Plan"]))
        loops = [n["Actual Loops"] for n in nodes if n["Node Type"] == "Limit"]
        locks = [n for n in nodes if n["Node Type"] == "LockRows"]
        assert (loops, locks, claimed) == ([1], [], 100)
    finally:
        await conn.close()
    # And the writer sequences that whole backlog.
    assert await sequence_all(database_url, signer) == size + 300


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_documents_last_entry_is_found_by_its_index_on_statistics_of_a_young_log(
    database_url: str, plan_mode: str
) -> None:
    """The writer's read of each document's last entry, on statistics taken while the log held
    one document (a new axis's first autoanalyze) and a log since grown to thousands: each
    document is one probe of entry_by_doc. The previous statement's plan, on these statistics,
    walked the partition backwards by the primary key filtering on doc_id (every row, for a
    document with no entry yet)."""
    signer = NoteSigner.generate(ORIGIN)
    conn = await asyncpg.connect(database_url)
    try:
        # The statistics stay those taken here, whatever autovacuum would do meanwhile.
        await conn.execute("ALTER TABLE ledger.entry_p0000 SET (autovacuum_enabled = false)")
        early = str(uuid.uuid4())
        await stage(conn, 200, doc=early)
        await sequence_all(database_url, signer)
        await conn.execute("ANALYZE ledger.entry_p0000")
        await stage(conn, 3000)  # a document each
        size = await sequence_all(database_url, signer)
        last_of_early = await conn.fetchval(
            "SELECT max(seq) FROM ledger.entry WHERE doc_id = $1", uuid.UUID(early)
        )
        unseen = str(uuid.uuid4())
        async with conn.transaction():
            await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
            explained = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + LATEST_PER_DOCUMENT, [early, unseen]
            )
            rows = await conn.fetch(LATEST_PER_DOCUMENT, [early, unseen])
    finally:
        await conn.close()
    assert [(str(r["doc_id"]), r["seq"]) for r in rows] == [(early, last_of_early)]
    scans = [n for n in plan_nodes(json.loads(explained)[0]["Plan"]) if "Relation Name" in n]
    assert scans, explained
    # Every partition probed through entry_by_doc, none read past a document's own entries.
    assert {(n["Relation Name"], n.get("Index Name", "")) for n in scans} == {
        (p, f"{p}_doc_id_seq_idx") for p in ("entry_p0000", "entry_p0001", "entry_overflow")
    }
    assert sum(n.get("Rows Removed by Filter", 0) for n in scans) == 0
    assert size > 3000


async def test_a_batch_reads_its_fencing_token_and_the_tree_state_in_one_statement(
    database_url: str,
) -> None:
    """A batch's transaction reads the writer's epoch and the tree state together, under the
    row's lock: an empty batch is BEGIN, that read, the claim and COMMIT (the epoch and the
    state were two round trips, one after the other, in every batch, empty or not), and a batch
    with events appends them after the same read."""
    pool = await postgres.create_pool(database_url, min_size=1, max_size=1, role=SEQUENCER_ROLE)
    try:
        writer = PostgresLedgerWriter(pool, ORIGIN)
        await writer.take_over()
        # The first statements of a connection read the types they use (asyncpg's own).
        await writer.sequence_batch(10)
        sent: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: sent.append(" ".join(logged.query.split())))
        assert await writer.sequence_batch(10) == 0
        empty, sent[:] = list(sent), []
        staging = await asyncpg.connect(database_url)
        try:
            await stage(staging, 3)
        finally:
            await staging.close()
        assert await writer.sequence_batch(10) == 3
    finally:
        await pool.close()
    fenced = "SELECT writer_epoch, size, root, compact_range, tile_builder FROM ledger.tree_state "
    assert empty == ["BEGIN;", fenced + "FOR UPDATE", " ".join(CLAIM_PENDING.split()), "COMMIT;"]
    assert sent[:3] == empty[:3]
    assert sent[-1] == "COMMIT;"
    assert not [query for query in sent if "writer_epoch" in query and query != sent[1]]
