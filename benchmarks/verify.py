"""What a run proves at its end: nothing left unacknowledged, the ledger caught up, and the
exported ledger verifying as an auditor verifies it (the bench and the chaos run share these)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from benchmarks.stack import DOCAXIS, this_checkout


async def ledger_pending(database_url: str, within_s: float) -> int:
    """Events not yet sequenced, after waiting up to `within_s` for the writer to catch up."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within_s
        while True:
            pending: int = await conn.fetchval("SELECT count(*) FROM ledger.pending")
            if pending == 0 or time.monotonic() > deadline:
                return pending
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def verify_ledger(database_url: str, key_file: Path, folder: Path) -> tuple[bool, int]:
    """`docaxis audit export` then `docaxis audit verify full` against a trust policy made from
    the log's key (what an auditor is given out of band), as `make audit` does."""
    shutil.rmtree(folder, ignore_errors=True)
    env = {**this_checkout(os.environ), "DOCAXIS_DATABASE_URL": database_url}
    policy = folder.with_name("trust-policy.json")
    policy.unlink(missing_ok=True)
    commands = [
        ["ledger", "trust-policy", "--key-file", str(key_file), "--out", str(policy)],
        ["audit", "export", str(folder)],
        ["audit", "verify", "full", str(folder), "--trust-policy", str(policy)],
    ]
    outputs = []
    for command in commands:
        result = subprocess.run(
            [str(DOCAXIS), *command], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
            return False, 0
        outputs.append(result.stdout)
    export = outputs[1]
    return True, int(export.split()[1]) if export.startswith("exported") else 0
