"""The ledger writer as a real process: kill -9 mid-stream, then the auditor's tools."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.audit import export_and_verify
from tests.e2e.processes import DOCAXIS, AxisProcess
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

EVENTS = 40_000


async def test_a_killed_sequencer_loses_no_event_and_never_reuses_an_index(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """kill -9 while a backlog is being sequenced; after a restart every staged event is in the
    log exactly once, indices are gapless, and `docaxis audit export` + `docaxis audit verify
    full` pass on the result."""
    ledger = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        pki=pki,
        command=(str(DOCAXIS), "run", "--components", "ledger"),
        name="ledger",
    )
    await ledger.start()  # migrates the fresh database
    db = await asyncpg.connect(e2e_database_url)
    try:
        marker = uuid.uuid4()
        await db.execute(
            """
            INSERT INTO ledger.pending (entry_type, doc_uuid, document_id, actor, occurred_at, data)
            SELECT 'submission', $1, 'X,2025/01/01,1/A', 'e2e', now(), jsonb_build_object('n', n)
            FROM generate_series(0, $2 - 1) AS n
            """,
            marker,
            EVENTS,
        )
        await eventually(
            lambda: db.fetchval("SELECT size FROM ledger.tree_state"),
            lambda size: size >= 1000,
            within=30,
            every=0.005,
        )
        ledger.kill()
        remaining = await db.fetchval("SELECT count(*) FROM ledger.pending")
        assert 0 < remaining < EVENTS, "the kill should land mid-backlog"
        await ledger.start()
        async with asyncio.timeout(60):
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM ledger.pending"),
                lambda pending: pending == 0,
                within=60,
            )
            size = await db.fetchval("SELECT size FROM ledger.tree_state")
            await eventually(
                lambda: db.fetchval("SELECT coalesce(max(size), 0) FROM ledger.checkpoint"),
                lambda signed: signed >= size,
                within=60,
            )
        numbers = [
            json.loads(r["body"])["data"]["n"]
            for r in await db.fetch(
                "SELECT body FROM ledger.entry WHERE doc_id = $1 ORDER BY seq", marker
            )
        ]
        assert sorted(numbers) == list(range(EVENTS))
        seqs = await db.fetch("SELECT seq FROM ledger.entry ORDER BY seq")
        assert [r["seq"] for r in seqs] == list(range(size))
    finally:
        await db.close()
        assert await ledger.terminate() == 0, ledger.logs()

    exported = await export_and_verify(e2e_database_url, ledger_key_file, tmp_path)
    assert f"exported {size} entries" in exported
