"""What the ledger's entrypoints need of storage: read the log, keep fork evidence. The
Postgres adapters implement these; unit tests use fakes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: bytes


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    entry_type: str
    body: bytes
    leaf_hash: bytes


class LedgerReader(Protocol):
    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest checkpoint with the witness quorum (any, without witnesses)."""
        ...

    async def signing_keys(self) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
        """(vkey, first used, retired or None) of every checkpoint key the log has used."""
        ...

    async def tree_size(self) -> int: ...

    async def entries(self, start: int, end: int) -> list[StoredEntry]: ...

    async def document_entries(self, document_uuid: str) -> list[StoredEntry]: ...

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...

    async def tile(self, level: int, index: int, width: int, size: int) -> bytes | None:
        """C2SP tlog-tiles hash tile, if the tree of `size` leaves fills `width` of it."""
        ...

    async def entry_bundle(self, index: int, width: int, size: int) -> bytes | None:
        """C2SP tlog-tiles entry bundle, if within `size`."""
        ...


class ForkRecorder(Protocol):
    async def record_fork(
        self, reporter: str, trusted_note: bytes, conflicting_note: bytes, detail: str
    ) -> int:
        """Keeps split-view evidence; returns the report's id."""
        ...
