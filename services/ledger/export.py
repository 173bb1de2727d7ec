"""Writing an auditor's export (services/ledger/audit/README.md format) from the database."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from docaxis_client.ledger.policy import TrustPolicy
from services.ledger.adapters.postgres import EntryGapError, PostgresLedgerReader
from services.ledger.audit.export import (
    CHECKPOINT_DIR,
    CHECKPOINT_SUFFIX,
    ENTRIES_FILE,
    INDEX_FILE,
    POLICY_FILE,
    ExportGapError,
    format_index_line,
)
from services.ledger.domain.tiles import encode_entries


async def export_ledger(
    reader: PostgresLedgerReader,
    origin: str,
    target: Path,
    progress: Callable[[int], None] = lambda _done: None,
) -> tuple[int, int]:
    """Writes trust policy, every entry (with its index and leaf hash) and every checkpoint with
    its cosignatures; returns (entries, checkpoints).

    The folder is written beside `target` and renamed into place only when complete, so a gap
    in the database (ExportGapError) leaves no export behind. Checkpoints are read first and
    the entries up to the tree size read next: every entry they cover is then certainly there.
    """
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    checkpoints = await reader.checkpoints()
    keys = await reader.signing_keys()
    size = await reader.tree_size()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        policy = TrustPolicy.from_signing_keys(origin, keys)
        (partial / POLICY_FILE).write_text(policy.to_json(), encoding="utf-8")
        entries = 0
        with (
            (partial / ENTRIES_FILE).open("wb") as bodies,
            (partial / INDEX_FILE).open("wb") as index,
        ):
            async for page in reader.export_entries(size):
                bodies.write(encode_entries(e.body for e in page))
                index.write(b"".join(format_index_line(e.seq, e.leaf_hash) for e in page))
                entries += len(page)
                progress(len(page))
        folder = partial / CHECKPOINT_DIR
        folder.mkdir()
        for checkpoint in checkpoints:
            (folder / f"{checkpoint.size}{CHECKPOINT_SUFFIX}").write_bytes(checkpoint.note)
    except EntryGapError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ExportGapError(f"refusing to export: {exc}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        target.rmdir()
    partial.rename(target)
    return entries, len(checkpoints)
