"""The auditor's tools as real commands: `docaxis audit export`, then `audit verify full`
against a trust policy made from the run's ledger key."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from tests.e2e.processes import DOCAXIS


async def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{command[1:3]}: {done.stdout}{done.stderr}"
    return done.stdout


async def export_and_verify(database_url: str, ledger_key_file: Path, folder: Path) -> str:
    """Exports the ledger of `database_url` into `folder` and verifies it in full; returns the
    export's output (which says how many entries)."""
    exported = await _run(
        [str(DOCAXIS), "audit", "export", str(folder / "export")],
        {"DOCAXIS_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
    )
    policy = folder / "trust-policy.json"
    await _run(
        [
            *(str(DOCAXIS), "ledger", "trust-policy"),
            *("--key-file", str(ledger_key_file), "--out", str(policy)),
        ]
    )
    verified = await _run(
        [
            *(str(DOCAXIS), "audit", "verify", "full", str(folder / "export")),
            *("--trust-policy", str(policy)),
        ]
    )
    assert json.loads(verified)["ok"] is True, verified
    return exported
