"""Tamper drills against real Postgres: the guards refuse edits, and what a superuser edits
anyway is caught offline against a checkpoint the auditor saved earlier."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from docaxis_client.ledger.merkle import hash_leaf, mth
from docaxis_client.ledger.note import Checkpoint, NoteSigner, sign_checkpoint
from docaxis_client.ledger.policy import TrustPolicy
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.common.leadership import PostgresLeadership, Singleton
from services.ledger.adapters.postgres import (
    READER_ROLE,
    SEQUENCER_ROLE,
    PostgresLedgerReader,
    PostgresLedgerWriter,
)
from services.ledger.audit.export import ExportGapError
from services.ledger.audit.verify import AuditReport, audit_export
from services.ledger.entrypoints.writer import LedgerWriterLoop
from services.ledger.export import export_ledger
from services.ledger.service_layer.ports import FencedOutError
from tests.infra import SuiteServices
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ORIGIN = "drills.docaxis.test/v1"
# Tables that hold rows in these drills (row triggers only fire on rows), and all log tables.
POPULATED = ("entry", "entry_p0000", "tile", "checkpoint", "signing_key")
LOG_TABLES = (
    "entry",
    "entry_p0000",
    "entry_p0001",
    "entry_overflow",
    "tile",
    "checkpoint",
    "signing_key",
    "key_retirement",
    "cosignature",
    "fork_report",
)


async def fresh_database(services: SuiteServices, name: str) -> str:
    url = await postgres.recreate_database(services.database_url, name)
    await migrate(url)
    return url


@pytest.fixture(scope="module")
async def drill_url(services: SuiteServices) -> str:
    """Shared by the drills; the tamper drills leave it forged on purpose."""
    return await fresh_database(services, "docaxis_drills")


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture(scope="module")
async def populated(drill_url: str, signer: NoteSigner) -> int:
    """300 entries: past one full tile, so every populated table has rows to refuse edits of."""
    conn = await asyncpg.connect(drill_url)
    try:
        await stage(conn, 300)
    finally:
        await conn.close()
    return await sequence_all(drill_url, signer)


@pytest.fixture
async def superuser(drill_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(drill_url)
    yield conn
    await conn.close()


async def disable_guards(conn: asyncpg.Connection, *tables: str) -> None:
    """What a superuser bent on tampering does first (and what the guards cannot prevent)."""
    for table in tables:
        await conn.execute(f"ALTER TABLE ledger.{table} DISABLE TRIGGER USER")


async def restore_guards(conn: asyncpg.Connection, *tables: str) -> None:
    # ENABLE ALWAYS takes trigger names, not ALL.
    for table in tables:
        for trigger in ("no_update_delete", "no_truncate"):
            await conn.execute(f"ALTER TABLE ledger.{table} ENABLE ALWAYS TRIGGER {trigger}")


async def stage(conn: asyncpg.Connection, count: int, doc: str | None = None) -> None:
    """Business code's side: events into ledger.pending, as the application role."""
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE app_writer")
        await conn.executemany(
            """
            INSERT INTO ledger.pending (entry_type, doc_uuid, document_id, from_agency, actor,
                occurred_at, data)
            VALUES ('submission', $1, 'X,2025/01/01,1/A', '000.00.00.H45', 'drill', now(), $2)
            """,
            [(uuid.UUID(doc or str(uuid.uuid4())), json.dumps({"n": i})) for i in range(count)],
        )


async def sequence_all(url: str, signer: NoteSigner) -> int:
    """Drains staging into the log and publishes a checkpoint; returns the tree size."""
    pool = await postgres.create_pool(url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
    try:
        writer = PostgresLedgerWriter(pool, ORIGIN)
        await writer.take_over()
        await writer.record_keys([signer])
        while await writer.sequence_batch(500):
            pass
        await writer.publish_checkpoint([signer])
        size: int = await pool.fetchval("SELECT size FROM ledger.tree_state")
        return size
    finally:
        await pool.close()


def outside_policy(*signers: NoteSigner) -> TrustPolicy:
    """The auditor's own policy: the log key(s) it obtained out of band."""
    return TrustPolicy.for_keys(ORIGIN, [s.verifier.vkey for s in signers])


async def audit(url: str, target: Path, signer: NoteSigner, saved: bytes) -> AuditReport:
    return audit_export(
        await export(url, target), policy=outside_policy(signer), saved_checkpoints=[saved]
    )


async def export(url: str, target: Path) -> Path:
    pool = await postgres.create_pool(url, min_size=1, max_size=1, role=READER_ROLE)
    try:
        await export_ledger(PostgresLedgerReader(pool), ORIGIN, target)
    finally:
        await pool.close()
    return target


@pytest.mark.parametrize("table", POPULATED)
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
async def test_log_tables_refuse_update_delete_and_truncate(
    superuser: asyncpg.Connection, populated: int, table: str, replica: bool
) -> None:
    """Even a superuser's plain UPDATE, DELETE and TRUNCATE are refused, also with
    session_replication_role = replica (triggers are enabled ALWAYS)."""
    assert await superuser.fetchval(f"SELECT count(*) FROM ledger.{table}") > 0  # noqa: S608
    if replica:
        await superuser.execute("SET session_replication_role = replica")
    column, value = {
        "tile": ("idx", "idx + 1"),
        "checkpoint": ("size", "size + 1"),
        "signing_key": ("name", "'x'"),
    }.get(table, ("entry_type", "'forged'"))
    for statement in (
        f"UPDATE ledger.{table} SET {column} = {value}",  # noqa: S608 - fixed test tables
        f"DELETE FROM ledger.{table}",  # noqa: S608
        f"TRUNCATE ledger.{table}",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await superuser.execute(statement)


@pytest.mark.parametrize("partition", ["entry_p0001", "entry_overflow"])
async def test_empty_partitions_refuse_truncate(
    superuser: asyncpg.Connection, populated: int, partition: str
) -> None:
    """TRUNCATE of a partition does not fire the parent's trigger: each has its own."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await superuser.execute(f"TRUNCATE ledger.{partition}")


async def test_every_log_table_and_partition_has_its_triggers_enabled_always(
    superuser: asyncpg.Connection,
) -> None:
    """A partition added without the triggers would be an unguarded hole in the log."""
    partitions = await superuser.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits "
        "WHERE inhparent = 'ledger.entry'::regclass"
    )
    assert {p["name"] for p in partitions} == {
        f"ledger.{t}" for t in LOG_TABLES if t.startswith("entry_")
    }
    rows = await superuser.fetch(
        """
        SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'ledger' AND NOT t.tgisinternal
        """
    )
    found = {(r["relname"], r["tgname"]): r["tgenabled"] for r in rows}
    for table in LOG_TABLES:
        for trigger in ("no_update_delete", "no_truncate"):
            assert found.get((table, trigger)) == b"A", (table, trigger)  # "char": bytes


async def test_a_forged_leaf_hash_violates_the_check_constraint(
    superuser: asyncpg.Connection,
) -> None:
    """The database refuses an entry whose leaf hash does not match its bytes."""
    with pytest.raises(asyncpg.CheckViolationError, match="leaf_hash_ok"):
        await superuser.execute(
            "INSERT INTO ledger.entry (seq, entry_type, logged_at, body, leaf_hash) "
            "VALUES (999999, 'key', now(), '\\x7b7d', $1)",
            hash_leaf(b"something else"),
        )


async def test_the_application_role_can_only_stage(drill_url: str) -> None:
    """app_writer inserts into staging and cannot read, write or sequence the log itself."""
    conn = await asyncpg.connect(drill_url, server_settings={"role": "app_writer"})
    try:
        for statement in (
            "SELECT count(*) FROM ledger.entry",
            "INSERT INTO ledger.entry (seq, entry_type, logged_at, body, leaf_hash) "
            "VALUES (0, 'x', now(), '\\x00', '\\x00')",
            "UPDATE ledger.tree_state SET size = 0",
            "DELETE FROM ledger.pending",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_superuser_edit_with_recomputed_hashes_is_caught_by_a_saved_checkpoint(
    superuser: asyncpg.Connection,
    drill_url: str,
    signer: NoteSigner,
    tmp_path: Path,
    populated: int,
) -> None:
    """The attacker disables the guards, rewrites an entry and its leaf hash (the CHECK holds),
    and even re-signs a checkpoint of the forged tree; the auditor's saved note exposes it."""
    await stage(superuser, 20)
    size = await sequence_all(drill_url, signer)
    saved = await superuser.fetchval("SELECT note FROM ledger.checkpoint WHERE size = $1", size)
    clean = await audit(drill_url, tmp_path / "before", signer, saved)
    assert clean.ok, clean.to_json()

    victim = size - 5
    body = bytes(await superuser.fetchval("SELECT body FROM ledger.entry WHERE seq = $1", victim))
    forged = body.replace(b'"actor":"drill"', b'"actor":"drilx"')
    assert forged != body
    await disable_guards(superuser, "entry", "checkpoint")
    try:
        await superuser.execute(
            "UPDATE ledger.entry SET body = $2, leaf_hash = $3 WHERE seq = $1",
            victim,
            forged,
            hash_leaf(forged),
        )
        await superuser.execute("DELETE FROM ledger.checkpoint")
    finally:
        await restore_guards(superuser, "entry", "checkpoint")
    # The forged tree, with a fresh checkpoint signed by the (stolen) log key.
    leaves = [
        bytes(r["leaf_hash"])
        for r in await superuser.fetch("SELECT leaf_hash FROM ledger.entry ORDER BY seq")
    ]
    note = sign_checkpoint(Checkpoint(ORIGIN, size, mth(leaves)), [signer])
    await superuser.execute(
        "INSERT INTO ledger.checkpoint (size, root, note) VALUES ($1, $2, $3)",
        size,
        mth(leaves),
        note,
    )

    report = await audit(drill_url, tmp_path / "after", signer, saved)
    assert not report.ok
    assert report.divergence is not None
    assert "saved_checkpoint" in report.divergence.kind


async def test_a_restore_that_lost_published_entries_is_caught(
    services: SuiteServices, signer: NoteSigner, tmp_path: Path
) -> None:
    """Entries a saved checkpoint covers are gone after a bad restore. While the tree state
    still counts them the exporter refuses (a gap); once the restore's older tree state is back
    too, the export is self-consistent and the auditor's saved checkpoint says what is lost."""
    url = await fresh_database(services, "docaxis_restore")
    superuser = await asyncpg.connect(url)
    try:
        await stage(superuser, 10)
        size = await sequence_all(url, signer)
        saved = await superuser.fetchval("SELECT note FROM ledger.checkpoint WHERE size = $1", size)
        await disable_guards(superuser, "entry", "entry_p0000")
        try:
            await superuser.execute("DELETE FROM ledger.entry WHERE seq >= $1", size - 4)
        finally:
            await restore_guards(superuser, "entry", "entry_p0000")
        with pytest.raises(ExportGapError, match=f"entries \\[{size - 4}, {size}\\) are missing"):
            await export(url, tmp_path / "restored")
        assert not (tmp_path / "restored").exists()
        assert not (tmp_path / "restored.partial").exists()
        await superuser.execute("UPDATE ledger.tree_state SET size = $1", size - 4)
    finally:
        await superuser.close()
    report = await audit(url, tmp_path / "restored", signer, saved)
    assert report.divergence is not None
    # (the database kept its own checkpoint of that size too, reported first)
    assert report.divergence.kind in {"saved_checkpoint_beyond_export", "checkpoint_beyond_entries"}
    assert report.divergence.index == size - 4


async def test_the_exporter_refuses_a_gap_in_the_middle(
    services: SuiteServices, signer: NoteSigner, tmp_path: Path
) -> None:
    """A deleted entry would shift every later one: the exporter stops at the hole."""
    url = await fresh_database(services, "docaxis_gap")
    superuser = await asyncpg.connect(url)
    try:
        await stage(superuser, 12)
        await sequence_all(url, signer)
        await disable_guards(superuser, "entry", "entry_p0000")
        try:
            await superuser.execute("DELETE FROM ledger.entry WHERE seq = 5")
        finally:
            await restore_guards(superuser, "entry", "entry_p0000")
    finally:
        await superuser.close()
    with pytest.raises(ExportGapError, match="entry 5 is missing"):
        await export(url, tmp_path / "gap")
    assert not (tmp_path / "gap").exists()


async def test_a_second_writer_waits_and_takes_over_without_reusing_an_index(
    superuser: asyncpg.Connection, drill_url: str, signer: NoteSigner
) -> None:
    """Two writers: one leads, the other stands by; when the leader stops, the other sequences
    the rest; indices stay gapless and every staged event is logged exactly once."""
    base = await superuser.fetchval("SELECT size FROM ledger.tree_state")
    pools = [
        await postgres.create_pool(drill_url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
        for _ in range(2)
    ]
    loops = [
        LedgerWriterLoop(
            PostgresLeadership(Singleton.LEDGER_SEQUENCER, drill_url, role=SEQUENCER_ROLE),
            PostgresLedgerWriter(pool, ORIGIN),
            [signer],
            batch_size=50,
            idle_wait_s=0.02,
        )
        for pool in pools
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(loop.run(stop)) for loop, stop in zip(loops, stops, strict=True)]
    try:
        async with asyncio.timeout(10):
            waits = [asyncio.ensure_future(loop.leading.wait()) for loop in loops]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
        leader = 0 if loops[0].leading.is_set() else 1
        assert not loops[1 - leader].leading.is_set()
        marker = str(uuid.uuid4())
        await stage(superuser, 300, doc=marker)
        stops[leader].set()
        await tasks[leader]
        async with asyncio.timeout(10):
            await loops[1 - leader].leading.wait()
        await eventually(
            lambda: superuser.fetchval("SELECT count(*) FROM ledger.pending"),
            lambda pending: pending == 0,
            within=20,
        )
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
        for pool in pools:
            await pool.close()
    rows = await superuser.fetch(
        "SELECT seq, body FROM ledger.entry WHERE doc_id = $1 ORDER BY seq", uuid.UUID(marker)
    )
    assert sorted(json.loads(r["body"])["data"]["n"] for r in rows) == list(range(300))
    size = await superuser.fetchval("SELECT size FROM ledger.tree_state")
    seqs = [
        r["seq"]
        for r in await superuser.fetch(
            "SELECT seq FROM ledger.entry WHERE seq >= $1 ORDER BY seq", base
        )
    ]
    assert seqs == list(range(base, size))


async def test_a_writer_taken_over_from_can_no_longer_append_or_sign(
    superuser: asyncpg.Connection, drill_url: str, signer: NoteSigner
) -> None:
    """Fencing: a former leader that did not notice it lost its lock (its next batch is already
    under way) finds the successor's newer epoch and writes nothing; the successor appends."""
    pools = [
        await postgres.create_pool(drill_url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
        for _ in range(2)
    ]
    try:
        former, successor = (PostgresLedgerWriter(pool, ORIGIN) for pool in pools)
        first = await former.take_over()
        assert await successor.take_over() == first + 1
        size = await superuser.fetchval("SELECT size FROM ledger.tree_state")
        await stage(superuser, 5)
        with pytest.raises(FencedOutError):
            await former.sequence_batch(100)
        with pytest.raises(FencedOutError):
            await former.publish_checkpoint([signer])
        assert await superuser.fetchval("SELECT size FROM ledger.tree_state") == size
        assert await successor.sequence_batch(100) == 5
        assert await successor.publish_checkpoint([signer]) is not None
    finally:
        for pool in pools:
            await pool.close()


async def test_a_key_rotation_is_recorded_in_the_log_and_dual_signed_checkpoints_verify(
    services: SuiteServices, signer: NoteSigner, tmp_path: Path
) -> None:
    """Adding a key logs a `key` entry; during the overlap checkpoints carry both signatures; after
    it only the new key signs and the old one is retired (a `key` entry and its valid_until in
    the exported policy); the audit passes against the auditor's policy of both keys."""
    drill_url = await fresh_database(services, "docaxis_rotation")
    superuser = await asyncpg.connect(drill_url)
    successor = NoteSigner.generate(ORIGIN)
    await stage(superuser, 3)
    await sequence_all(drill_url, signer)
    for signers in ([signer, successor], [successor]):
        pool = await postgres.create_pool(drill_url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
        try:
            writer = PostgresLedgerWriter(pool, ORIGIN)
            await writer.take_over()
            await writer.record_keys(signers)
            await stage(superuser, 2)
            while await writer.sequence_batch(100):
                pass
            published = await writer.publish_checkpoint(signers)
        finally:
            await pool.close()
        assert published is not None
        signature_lines = [
            line for line in published.note.split(b"\n") if line.startswith(b"\xe2\x80\x94")
        ]
        assert len(signature_lines) == len(signers)
    key_entries = [
        json.loads(r["body"])["data"]["vkey"]
        for r in await superuser.fetch("SELECT body FROM ledger.entry WHERE entry_type = 'key'")
    ]
    assert successor.verifier.vkey in key_entries
    assert signer.verifier.vkey in key_entries
    retired = [
        json.loads(r["body"])["data"]
        for r in await superuser.fetch("SELECT body FROM ledger.entry WHERE entry_type = 'key'")
        if json.loads(r["body"])["data"]["event"] == "checkpoint_key_retired"
    ]
    assert retired == [{"event": "checkpoint_key_retired", "vkey": signer.verifier.vkey}]
    await superuser.close()
    folder = await export(drill_url, tmp_path / "rotated")
    exported = TrustPolicy.load(folder / "trust-policy.json")
    until = {k.verifier.vkey: k.valid_until for k in exported.log_keys}
    assert until[signer.verifier.vkey] is not None
    assert until[successor.verifier.vkey] is None
    report = audit_export(folder, policy=outside_policy(signer, successor))
    assert report.ok, report.to_json()
    self_trusted = audit_export(folder)
    assert self_trusted.divergence is None
    assert self_trusted.exit_code == 3
