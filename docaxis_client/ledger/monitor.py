"""A DMS client as a monitor of its hub's ledger.

The client keeps the latest checkpoint it trusted from each hub (by log origin). Whenever a
response carries a checkpoint (submission receipts, transport receipts, Track), the monitor
verifies it against the client's own trust policy (log key and witness quorum) and checks that
it is consistent with the one it holds, fetching a consistency proof from the hub. Two
checkpoints that no proof joins are a split view: the monitor reports both notes to the hub's
administrators (LedgerService.ReportFork, counted in docaxis_ledger_forks_total) and raises
LedgerForkError, so the DMS stops treating the hub's receipts as settled.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from docaxis_client.ledger.merkle import ProofError, verify_consistency
from docaxis_client.ledger.note import Checkpoint, parse_checkpoint, parse_note
from docaxis_client.ledger.policy import TrustedCheckpoint, TrustPolicy

FetchConsistency = Callable[[int, int], Awaitable[Sequence[bytes]]]
ReportFork = Callable[[bytes, bytes, str], Awaitable[None]]


class LedgerForkError(Exception):
    """The hub showed two checkpoints of its log that cannot both be true."""

    reason = "LEDGER_FORK"

    def __init__(self, message: str, trusted_note: bytes, conflicting_note: bytes) -> None:
        super().__init__(message)
        self.trusted_note = trusted_note
        self.conflicting_note = conflicting_note


class CheckpointStore(Protocol):
    def load(self, origin: str) -> bytes | None: ...

    def save(self, origin: str, note: bytes) -> None: ...


class MemoryCheckpointStore:
    def __init__(self) -> None:
        self._notes: dict[str, bytes] = {}

    def load(self, origin: str) -> bytes | None:
        return self._notes.get(origin)

    def save(self, origin: str, note: bytes) -> None:
        self._notes[origin] = note


class FileCheckpointStore:
    """One file per hub log in a folder the DMS keeps (the notes are public)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, origin: str) -> Path:
        return self._folder / f"{hashlib.sha256(origin.encode()).hexdigest()[:32]}.note"

    def load(self, origin: str) -> bytes | None:
        path = self._path(origin)
        return path.read_bytes() if path.exists() else None

    def save(self, origin: str, note: bytes) -> None:
        path = self._path(origin)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(note)
        tmp.replace(path)


def _checkpoint_of(note: bytes) -> Checkpoint:
    text, _ = parse_note(note)
    return parse_checkpoint(text)


class LedgerMonitor:
    def __init__(
        self,
        policy: TrustPolicy,
        store: CheckpointStore,
        fetch_consistency: FetchConsistency,
        report_fork: ReportFork | None = None,
    ) -> None:
        self.policy = policy
        self._store = store
        self._fetch = fetch_consistency
        self._report = report_fork

    def latest(self) -> bytes | None:
        """The newest checkpoint note this client trusts for the policy's log."""
        return self._store.load(self.policy.origin)

    async def observe(self, note: bytes) -> TrustedCheckpoint:
        """Verify `note` against the policy and the held checkpoint; keep it if newer.

        Raises a typed docaxis_client.ledger.note.NoteError if the policy does not trust it
        (unknown key, quorum not met) and LedgerForkError on a split view (after reporting it).
        """
        trusted = self.policy.open(note)
        new = trusted.checkpoint
        held_note = self._store.load(self.policy.origin)
        if held_note is None:
            self._store.save(self.policy.origin, note)
            return trusted
        held = _checkpoint_of(held_note)
        if new.size == held.size:
            if new.root_hash != held.root_hash:
                await self._fork(held_note, note, f"two roots for size {new.size}")
            return trusted
        old, newer = (held, new) if new.size > held.size else (new, held)
        proof = await self._fetch(old.size, newer.size)
        try:
            verify_consistency(old.size, newer.size, proof, old.root_hash, newer.root_hash)
        except ProofError as exc:
            detail = f"no consistency from size {old.size} to {newer.size}: {exc}"
            await self._fork(held_note, note, detail)
        if new.size > held.size:
            self._store.save(self.policy.origin, note)
        return trusted

    async def _fork(self, held_note: bytes, shown_note: bytes, detail: str) -> None:
        root = base64.b64encode(_checkpoint_of(shown_note).root_hash).decode()
        message = f"ledger fork: {detail} (shown root {root})"
        if self._report is not None:
            try:
                await self._report(held_note, shown_note, detail)
            except Exception as exc:  # noqa: BLE001 - the evidence stays with the error
                message += f"; reporting it to the hub failed: {exc!r}"
        raise LedgerForkError(message, held_note, shown_note)
