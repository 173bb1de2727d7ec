"""Writing an auditor's export (services/ledger/audit/README.md format) from the database."""

from __future__ import annotations

from pathlib import Path

from docaxis_client.ledger.policy import TrustPolicy
from services.ledger.adapters.postgres import PostgresLedgerReader
from services.ledger.audit.export import (
    CHECKPOINT_DIR,
    CHECKPOINT_SUFFIX,
    ENTRIES_FILE,
    POLICY_FILE,
)


async def export_ledger(reader: PostgresLedgerReader, origin: str, target: Path) -> tuple[int, int]:
    """Writes trust policy, every entry and every checkpoint; returns (entries, checkpoints).

    Checkpoints are read first: every entry they cover is then certainly in the entry pages read
    afterwards, since the log only grows.
    """
    checkpoints = await reader.checkpoints()
    keys = await reader.signing_keys()
    target.mkdir(parents=True, exist_ok=True)
    policy = TrustPolicy.from_signing_keys(origin, keys)
    (target / POLICY_FILE).write_text(policy.to_json(), encoding="utf-8")
    entries = 0
    with (target / ENTRIES_FILE).open("wb") as out:
        async for page, count in reader.export_entries():
            out.write(page)
            entries += count
    folder = target / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    for checkpoint in checkpoints:
        (folder / f"{checkpoint.size}{CHECKPOINT_SUFFIX}").write_bytes(checkpoint.note)
    return entries, len(checkpoints)
