"""What the ledger's entrypoints need of storage: read the log, keep fork evidence, sequence
and sign under one leader, keep witnesses' cosignatures. The Postgres adapters implement these;
unit tests use fakes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from docaxis_client.ledger.note import NoteSigner


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


class FencedOutError(RuntimeError):
    """Another writer took over the log since this one did (its epoch is newer): stand by."""


class Sequencer(Protocol):
    """What the leading writer does to the log: sequence staged events, sign checkpoints."""

    async def take_over(self) -> int:
        """Makes this writer the only one that may append (an older leader's next batch raises
        FencedOutError); returns its epoch."""
        ...

    async def record_keys(self, signers: Sequence[NoteSigner]) -> list[str]: ...

    async def sequence_batch(self, limit: int) -> int:
        """Sequences up to `limit` staged events; returns how many."""
        ...

    async def publish_checkpoint(self, signers: Sequence[NoteSigner]) -> StoredCheckpoint | None:
        """Signs the tree if it grew since the last checkpoint."""
        ...


class LeaderTerm(Protocol):
    """One instance's hold on the writer's leadership."""

    def lost(self) -> bool:
        """True once the hold has gone (its connection dropped): stand by again."""
        ...

    async def release(self) -> None: ...


class Leadership(Protocol):
    """One writer leads at a time; the others wait for the leader to go."""

    async def try_lead(self) -> LeaderTerm | None:
        """The hold, or None while another instance leads."""
        ...


class CheckpointsToCosign(Protocol):
    """The checkpoints witnesses are asked to cosign, with the proofs they check."""

    async def latest_signed_checkpoint(self) -> StoredCheckpoint | None: ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...


class CosignatureStore(Protocol):
    async def store_cosignatures(
        self, size: int, cosignatures: Sequence[tuple[str, str, dt.datetime]]
    ) -> None:
        """(witness vkey, signature line, cosignature time) for checkpoint `size`."""
        ...
