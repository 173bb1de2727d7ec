"""Ledger sequencing throughput: stages events the way business transactions do, and times the
sequencer through the real adapter (COPY of canonical bodies, full tiles, tree state) in batches;
then the attachment store's upload and download rates. On a database of their own."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import asyncpg

from benchmarks.uploads import bench_attachment
from docaxis_client.ledger.note import NoteSigner
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.ledger.adapters.postgres import SEQUENCER_ROLE, PostgresLedgerWriter

ORIGIN = "bench.docaxis.local/v1"


async def _stage(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        # ~600-byte bodies, like a routing entry with its ids and hashes.
        await conn.execute(
            """
            INSERT INTO ledger.pending (entry_type, doc_uuid, document_id, from_agency, to_agency,
                actor, occurred_at, data)
            SELECT 'routing', gen_random_uuid(), '000.00.01.H45,2026/11/22,' || n || '/UBND-VP',
                '000.00.01.H45', '000.00.11.H45', 'exchange', now(),
                jsonb_build_object('delivery', gen_random_uuid()::text,
                                   'requested', '000.00.11.H45',
                                   'request_sha256', md5(n::text) || md5((n + 1)::text))
            FROM generate_series(1, $1) AS n
            """,
            count,
        )
    finally:
        await conn.close()


async def bench_sequencer(url: str, count: int, batch: int) -> float:
    await _stage(url, count)
    pool = await postgres.create_pool(url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
    signer = NoteSigner.generate(ORIGIN)
    writer = PostgresLedgerWriter(pool, ORIGIN)
    try:
        await writer.take_over()
        start = time.perf_counter()
        done = 0
        while n := await writer.sequence_batch(batch):
            done += n
        await writer.publish_checkpoint([signer])
        elapsed = time.perf_counter() - start
    finally:
        await pool.close()
    assert done == count
    return count / elapsed


@dataclass(frozen=True, slots=True)
class StoreFigures:
    events: int
    # Median entries/s sequenced per batch size (the writer grows from 1000 to 8192 under a
    # backlog), with each run's figure.
    sequenced_per_s: dict[int, float]
    runs: dict[int, list[float]]
    attachment_mib: int
    upload_mib_per_s: float
    download_mib_per_s: float


async def store_figures(server_url: str, events: int, attachment_mib: int) -> StoreFigures:
    url = await postgres.recreate_database(server_url, "docaxis_bench_store")
    await migrate(url)
    runs = {
        batch: [await bench_sequencer(url, events, batch) for _ in range(2)]
        for batch in (1000, 8192)
    }
    up, down = await bench_attachment(url, attachment_mib)
    return StoreFigures(
        events=events,
        sequenced_per_s={batch: statistics.median(rates) for batch, rates in runs.items()},
        runs=runs,
        attachment_mib=attachment_mib,
        upload_mib_per_s=up,
        download_mib_per_s=down,
    )
