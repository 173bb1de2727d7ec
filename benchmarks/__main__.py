"""`python -m benchmarks`: ledger sequencing throughput on a private Postgres.

Starts its own Postgres on loopback (deploy/local/postgres.sh, port BENCH_PG_PORT, default
55434), stages events the way business transactions do, and times the sequencer through the real
adapter (COPY of canonical bodies, full tiles, tree state) in batches. Prints figures only.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from benchmarks.uploads import bench_attachment
from docaxis_client.ledger.note import NoteSigner
from services.app import migrate
from services.common import postgres
from services.ledger.adapters.postgres import SEQUENCER_ROLE, PostgresLedgerWriter

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "bench.docaxis.local/v1"


def _postgres(action: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/local/postgres.sh"), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


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


async def main() -> None:
    port = os.environ.get("BENCH_PG_PORT", "55434")
    env = {"DOCAXIS_LOCAL_DIR": str(REPO / ".local" / "bench"), "DOCAXIS_PG_PORT": port}
    base = _postgres("start", env)
    try:
        url = await postgres.recreate_database(base, "docaxis_bench")
        await migrate(url)
        count = int(os.environ.get("BENCH_LEDGER_EVENTS", "100000"))
        print(f"ledger sequencer: {count} staged events, Postgres 15 on loopback, fsync on")
        for batch in (1000, 8192):  # the writer loop grows from 1000 to 8192 under a backlog
            rates = [await bench_sequencer(url, count, batch) for _ in range(2)]
            print(
                f"  batch {batch:>5}: {statistics.median(rates):>9,.0f} entries/s sequenced "
                f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
            )
        size = int(os.environ.get("BENCH_ATTACHMENT_MIB", "200"))
        up, down = await bench_attachment(url, size)
        print(
            f"attachment of {size} MiB through the Postgres store (no gRPC): "
            f"upload {up:,.0f} MiB/s (chunks committed one by one, then verified), "
            f"download {down:,.0f} MiB/s"
        )
    finally:
        _postgres("stop", env)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
