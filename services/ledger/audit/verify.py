"""Offline verification: receipts, full replay of an export, and checkpoint consistency."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docaxis_client.ledger.cosignature import InvalidCosignatureError
from docaxis_client.ledger.entry import EntryError, NonCanonicalEntryError, PrevRef, parse_entry
from docaxis_client.ledger.merkle import (
    HASH_SIZE,
    MemoryTree,
    ProofError,
    consistency_proof,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from docaxis_client.ledger.note import (
    CheckpointOriginError,
    InvalidSignatureError,
    KeyFormatError,
    NoteError,
    UnverifiedNoteError,
)
from docaxis_client.ledger.policy import (
    CLOCK_SLACK,
    KeyNotValidError,
    QuorumNotMetError,
    TrustedCheckpoint,
    TrustPolicy,
)
from docaxis_client.ledger.receipt import ReceiptError, parse_receipt
from services.ledger.audit.export import ExportError, IndexLine, read_export
from services.ledger.domain.tiles import EntryBundleError, iter_entries

Details = dict[str, str | int | None]


class DivergenceKind(enum.StrEnum):
    """What went wrong, as a stable machine-readable word (the JSON report's `kind`)."""

    INPUT_INVALID = "input_invalid"
    TRUST_POLICY_INVALID = "trust_policy_invalid"
    EXPORT_MALFORMED = "export_malformed"
    ENTRIES_TRUNCATED = "entries_truncated"
    ENTRY_INVALID = "entry_invalid"
    ENTRY_NOT_CANONICAL = "entry_not_canonical"
    ENTRY_WRONG_LOG = "entry_wrong_log"
    LOGGED_AT_NOT_MONOTONE = "logged_at_not_monotone"
    PREV_MISSING = "prev_missing"
    PREV_UNEXPECTED = "prev_unexpected"
    PREV_MISMATCH = "prev_mismatch"
    PREV_LEAF_MISMATCH = "prev_leaf_mismatch"
    CHECKPOINT_MALFORMED = "checkpoint_malformed"
    CHECKPOINT_ORIGIN_MISMATCH = "checkpoint_origin_mismatch"
    CHECKPOINT_SIGNATURE_INVALID = "checkpoint_signature_invalid"
    # Signed, but by no key of the policy: the export's keys are not the ones the auditor trusts.
    CHECKPOINT_KEY_UNTRUSTED = "checkpoint_key_untrusted"
    WITNESS_QUORUM_NOT_MET = "witness_quorum_not_met"
    # An entry claims to be logged after a witness had already seen a tree containing it.
    LOGGED_AT_AFTER_WITNESS = "logged_at_after_witness"
    NO_CHECKPOINT = "no_checkpoint"
    DUPLICATE_ENTRY = "duplicate_entry"
    ENTRY_INDEX_MISMATCH = "entry_index_mismatch"
    CHECKPOINT_KEY_EXPIRED = "checkpoint_key_expired"
    CHECKPOINT_ROOT_MISMATCH = "checkpoint_root_mismatch"
    CHECKPOINT_INCONSISTENT = "checkpoint_inconsistent"
    CHECKPOINT_BEYOND_ENTRIES = "checkpoint_beyond_entries"
    SAVED_CHECKPOINT_ROOT_MISMATCH = "saved_checkpoint_root_mismatch"
    SAVED_CHECKPOINT_BEYOND_EXPORT = "saved_checkpoint_beyond_export"
    RECEIPT_MALFORMED = "receipt_malformed"
    INCLUSION_INVALID = "inclusion_invalid"
    PROOF_MALFORMED = "proof_malformed"
    SIZE_REGRESSED = "size_regressed"
    INCONSISTENT = "inconsistent"


class Source(enum.StrEnum):
    """Where a checkpoint came from."""

    EXPORT = "export"
    SAVED = "saved"  # kept by the auditor from an earlier look at the log
    RECEIPT = "receipt"
    OLD = "old"
    NEW = "new"


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first problem found.

    `index` is the first entry index the problem may concern (for a root mismatch: the size of
    the last checkpoint that still matched, since the altered entry lies at or after it);
    `checkpoint_size` names the checkpoint involved, if any.
    """

    kind: DivergenceKind
    message: str
    index: int | None = None
    checkpoint_size: int | None = None
    source: Source | None = None

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "kind": str(self.kind),
            "index": self.index,
            "checkpoint_size": self.checkpoint_size,
            "source": None if self.source is None else str(self.source),
            "message": self.message,
        }


class ExitCode(enum.IntEnum):
    VERIFIED = 0
    DIVERGENCE = 1
    UNUSABLE_INPUT = 2
    # Everything verified, but only against the keys the export itself names: proves nothing
    # about who wrote it.
    SELF_TRUSTED = 3
    # The checkpoints are signed by keys the auditor's policy does not name.
    UNTRUSTED_KEY = 4


SELF_TRUST_WARNING = (
    "UNTRUSTED: no outside trust policy given; verified only against the export's own keys, "
    "which whoever wrote the export chose (pass --trust-policy)"
)


@dataclass(frozen=True, slots=True)
class AuditReport:
    mode: str
    divergence: Divergence | None
    details: Details = field(default_factory=dict)
    # True when the only keys checked were those the evidence brought along.
    self_trusted: bool = False

    @property
    def ok(self) -> bool:
        return self.divergence is None and not self.self_trusted

    @property
    def exit_code(self) -> int:
        """See ExitCode: 0 verified against the auditor's policy, 1 a divergence, 2 unusable
        input, 3 verified only against the export's own keys, 4 signed by untrusted keys."""
        if self.divergence is None:
            return ExitCode.SELF_TRUSTED if self.self_trusted else ExitCode.VERIFIED
        unusable = {
            DivergenceKind.INPUT_INVALID,
            DivergenceKind.TRUST_POLICY_INVALID,
            DivergenceKind.EXPORT_MALFORMED,
        }
        if self.divergence.kind in unusable:
            return ExitCode.UNUSABLE_INPUT
        if self.divergence.kind is DivergenceKind.CHECKPOINT_KEY_UNTRUSTED:
            return ExitCode.UNTRUSTED_KEY
        return ExitCode.DIVERGENCE

    def to_dict(self) -> dict[str, object]:
        return {
            "trust": "export-self-signed" if self.self_trusted else "auditor-policy",
            "mode": self.mode,
            "ok": self.ok,
            "divergence": None if self.divergence is None else self.divergence.to_dict(),
            "details": dict(self.details),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Found(Exception):  # control flow only, never escapes this module
    """Carries the first divergence out of deeply nested checks."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.message)
        self.divergence = divergence


def _open(
    note: bytes,
    policy: TrustPolicy,
    source: Source,
    size_hint: int | None,
    newest_logged_at: dt.datetime | None = None,
) -> TrustedCheckpoint:
    """Verify a checkpoint note against the policy (log key, witness quorum, key windows),
    mapping failures to divergence kinds."""
    kind: DivergenceKind
    try:
        return policy.open(note, newest_logged_at)
    except (InvalidSignatureError, InvalidCosignatureError) as exc:
        kind = DivergenceKind.CHECKPOINT_SIGNATURE_INVALID
        message = str(exc)
    except UnverifiedNoteError as exc:
        kind = DivergenceKind.CHECKPOINT_KEY_UNTRUSTED
        message = f"{exc}: the checkpoint is signed by keys your trust policy does not name"
    except QuorumNotMetError as exc:
        kind = DivergenceKind.WITNESS_QUORUM_NOT_MET
        message = str(exc)
    except KeyNotValidError as exc:
        kind = DivergenceKind.CHECKPOINT_KEY_EXPIRED
        message = str(exc)
    except CheckpointOriginError as exc:
        kind = DivergenceKind.CHECKPOINT_ORIGIN_MISMATCH
        message = str(exc)
    except KeyFormatError as exc:
        kind = DivergenceKind.TRUST_POLICY_INVALID
        message = str(exc)
    except NoteError as exc:
        kind = DivergenceKind.CHECKPOINT_MALFORMED
        message = str(exc)
    raise _Found(Divergence(kind, message, size_hint, size_hint, source))


# ---- receipt mode -----------------------------------------------------------------------------


def verify_receipt_evidence(entry_body: bytes, receipt: bytes, policy: TrustPolicy) -> AuditReport:
    """Check one entry body against its tlog-proof receipt and the trusted log keys."""
    details: Details = {"origin": policy.origin}
    try:
        _verify_receipt(entry_body, receipt, policy, details)
    except _Found as found:
        return AuditReport("receipt", found.divergence, details)
    return AuditReport("receipt", None, details)


def _verify_receipt(
    entry_body: bytes, receipt: bytes, policy: TrustPolicy, details: Details
) -> None:
    try:
        parsed = parse_receipt(receipt)
    except ReceiptError as exc:
        raise _Found(Divergence(DivergenceKind.RECEIPT_MALFORMED, str(exc))) from exc
    details["index"] = parsed.index
    trusted = _open(parsed.checkpoint_note, policy, Source.RECEIPT, None)
    checkpoint, note = trusted.checkpoint, trusted.note
    if trusted.witnessed_at is not None:
        details["witnessed_at"] = trusted.witnessed_at.isoformat()
    details["checkpoint_size"] = checkpoint.size
    details["checkpoint_root"] = _b64(checkpoint.root_hash)
    try:
        entry = parse_entry(entry_body)
    except NonCanonicalEntryError as exc:
        kind = DivergenceKind.ENTRY_NOT_CANONICAL
        raise _Found(Divergence(kind, str(exc), parsed.index)) from exc
    except EntryError as exc:
        raise _Found(Divergence(DivergenceKind.ENTRY_INVALID, str(exc), parsed.index)) from exc
    details["type"] = str(entry.type)
    details["doc"] = entry.doc
    if entry.log != policy.origin:
        message = f"entry belongs to log {entry.log!r}"
        raise _Found(Divergence(DivergenceKind.ENTRY_WRONG_LOG, message, parsed.index))
    # The covering checkpoint was signed after this entry was logged: a bound on the key.
    if not policy.signed_by_valid_key(note, entry.logged_at, trusted.witnessed_at):
        message = "no log key valid when this entry was logged signed the checkpoint"
        raise _Found(
            Divergence(
                DivergenceKind.CHECKPOINT_KEY_EXPIRED,
                message,
                parsed.index,
                checkpoint.size,
                Source.RECEIPT,
            )
        )
    leaf = hash_leaf(entry_body)
    details["leaf_hash"] = _b64(leaf)
    try:
        verify_inclusion(parsed.index, checkpoint.size, leaf, parsed.proof, checkpoint.root_hash)
    except ProofError as exc:
        raise _Found(
            Divergence(
                DivergenceKind.INCLUSION_INVALID,
                f"{exc.reason}: {exc}",
                parsed.index,
                checkpoint.size,
                Source.RECEIPT,
            )
        ) from exc


# ---- consistency mode -------------------------------------------------------------------------


def parse_proof_lines(text: bytes) -> list[bytes]:
    """A proof file: one canonical base64 SHA-256 hash per line (an empty file is [])."""
    if not text:
        return []
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("proof file is not ASCII") from exc
    if not decoded.endswith("\n"):
        raise ValueError("proof file must end with a newline")
    hashes: list[bytes] = []
    for i, line in enumerate(decoded[:-1].split("\n")):
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"line {i + 1} is not base64") from exc
        if len(raw) != HASH_SIZE or _b64(raw) != line:
            raise ValueError(f"line {i + 1} is not a canonical 32-byte hash")
        hashes.append(raw)
    return hashes


def verify_checkpoint_consistency(
    old_note: bytes, new_note: bytes, proof: Sequence[bytes], policy: TrustPolicy
) -> AuditReport:
    """Does the log's new checkpoint extend the one the auditor saved earlier?"""
    details: Details = {"origin": policy.origin}
    try:
        old = _open(old_note, policy, Source.OLD, None).checkpoint
        new = _open(new_note, policy, Source.NEW, None).checkpoint
        details.update(old_size=old.size, new_size=new.size, new_root=_b64(new.root_hash))
        if new.size < old.size:
            message = f"log shrank from {old.size} to {new.size} entries"
            kind = DivergenceKind.SIZE_REGRESSED
            raise _Found(Divergence(kind, message, new.size, old.size, Source.NEW))
        # An empty old tree commits to nothing, so any later tree extends it; the proof
        # verifier (like the Go reference) refuses size 0, so it is handled here.
        if old.size == 0 and not proof:
            return AuditReport("consistency", None, details)
        try:
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
        except ProofError as exc:
            message = f"{exc.reason}: {exc}"
            kind = DivergenceKind.INCONSISTENT
            raise _Found(Divergence(kind, message, None, new.size, Source.NEW)) from exc
    except _Found as found:
        return AuditReport("consistency", found.divergence, details)
    return AuditReport("consistency", None, details)


# ---- full-audit mode --------------------------------------------------------------------------


@dataclass(slots=True)
class _Replay:
    policy: TrustPolicy
    tree: MemoryTree = field(default_factory=MemoryTree)
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # doc -> (seq, leaf)
    newest: dt.datetime | None = None
    last_match: tuple[int, bytes] | None = None  # last checkpoint (size, root) that matched
    verified: dict[Source, int] = field(default_factory=dict)
    leaves: set[bytes] = field(default_factory=set)
    last_witnessed_at: dt.datetime | None = None
    without_quorum: int = 0

    def entry(self, index: int, body: bytes, pinned: IndexLine | None) -> None:
        try:
            entry = parse_entry(body)
        except NonCanonicalEntryError as exc:
            raise _Found(Divergence(DivergenceKind.ENTRY_NOT_CANONICAL, str(exc), index)) from exc
        except EntryError as exc:
            raise _Found(Divergence(DivergenceKind.ENTRY_INVALID, str(exc), index)) from exc
        if entry.log != self.policy.origin:
            message = f"entry belongs to log {entry.log!r}"
            raise _Found(Divergence(DivergenceKind.ENTRY_WRONG_LOG, message, index))
        if self.newest is not None and entry.logged_at < self.newest:
            message = f"logged_at goes back in time from {self.newest.isoformat()}"
            raise _Found(Divergence(DivergenceKind.LOGGED_AT_NOT_MONOTONE, message, index))
        self.newest = entry.logged_at
        leaf = hash_leaf(body)
        if pinned is not None and pinned != (index, leaf):
            message = (
                f"the export pins index {pinned[0]} with leaf {_b64(pinned[1])} here, the body "
                f"at position {index} hashes to {_b64(leaf)}: an entry was dropped, added or moved"
            )
            raise _Found(Divergence(DivergenceKind.ENTRY_INDEX_MISMATCH, message, index))
        if leaf in self.leaves:
            # Document entries cannot repeat (prev chains them); the others name what changed
            # (a directory version, a key) and each batch has its own logged_at, so the log
            # never writes the same bytes twice: a repetition is an appended copy.
            message = "a byte-identical copy of an earlier entry"
            raise _Found(Divergence(DivergenceKind.DUPLICATE_ENTRY, message, index))
        self.leaves.add(leaf)
        if entry.doc is not None:
            self._chain(index, entry.doc, entry.prev, leaf)
        self.tree.append(leaf)

    def _chain(self, index: int, doc: str, prev: PrevRef | None, leaf: bytes) -> None:
        head = self.heads.get(doc)
        kind: DivergenceKind | None = None
        message = ""
        if head is None:
            if prev is not None:
                kind = DivergenceKind.PREV_UNEXPECTED
                message = f"first entry of document {doc} points back to seq {prev.seq}"
        elif prev is None:
            kind = DivergenceKind.PREV_MISSING
            message = f"document {doc} had entry {head[0]} but this one has no prev"
        elif prev.seq != head[0]:
            # Pointing at an older entry skips one (a gap); pointing at the same entry as a
            # later one forks the history; both look like this to a replay.
            kind = DivergenceKind.PREV_MISMATCH
            message = f"prev.seq {prev.seq}, but the document's previous entry is {head[0]}"
        elif prev.leaf != head[1]:
            kind = DivergenceKind.PREV_LEAF_MISMATCH
            message = f"prev.leaf does not hash entry {head[0]} of document {doc}"
        if kind is not None:
            raise _Found(Divergence(kind, message, index))
        self.heads[doc] = (index, leaf)

    def checkpoint(self, source: Source, trusted: TrustedCheckpoint) -> None:
        checkpoint, note = trusted.checkpoint, trusted.note
        size = checkpoint.size
        witnessed_at = trusted.witnessed_at
        if not self.policy.signed_by_valid_key(note, self.newest, witnessed_at):
            message = "no log key valid at the newest covered entry signed this checkpoint"
            kind = DivergenceKind.CHECKPOINT_KEY_EXPIRED
            raise _Found(Divergence(kind, message, size, size, source))
        if witnessed_at is not None and self.newest is not None:
            if self.newest > witnessed_at + CLOCK_SLACK:
                message = (
                    f"entries up to {size} claim logged_at up to {self.newest.isoformat()}, "
                    f"but witnesses saw this tree at {witnessed_at.isoformat()}: backdated"
                )
                kind = DivergenceKind.LOGGED_AT_AFTER_WITNESS
                raise _Found(Divergence(kind, message, size - 1, size, source))
            self.last_witnessed_at = witnessed_at
        root = self.tree.root(size)
        if root != checkpoint.root_hash:
            kind = (
                DivergenceKind.SAVED_CHECKPOINT_ROOT_MISMATCH
                if source is Source.SAVED
                else DivergenceKind.CHECKPOINT_ROOT_MISMATCH
            )
            since = 0 if self.last_match is None else self.last_match[0]
            message = (
                f"signed root {_b64(checkpoint.root_hash)} at size {size}, rebuilt "
                f"{_b64(root)}: an entry in [{since}, {size}) differs from what was signed"
            )
            raise _Found(Divergence(kind, message, since, size, source))
        if self.last_match is not None and 0 < self.last_match[0] < size:
            # Implied by the two root matches, but this is exactly the proof a witness checks,
            # so a bug in proof generation or verification cannot hide behind the replay.
            old_size, old_root = self.last_match
            proof = consistency_proof(self.tree, old_size, size)
            try:
                verify_consistency(old_size, size, proof, old_root, checkpoint.root_hash)
            except ProofError as exc:
                kind = DivergenceKind.CHECKPOINT_INCONSISTENT
                raise _Found(Divergence(kind, str(exc), old_size, size, source)) from exc
        self.last_match = (size, root)
        self.verified[source] = self.verified.get(source, 0) + 1


def audit_entries(
    entries: bytes,
    checkpoints: Mapping[int, bytes],
    policy: TrustPolicy,
    saved_checkpoints: Iterable[bytes] = (),
    index: Sequence[IndexLine] | None = None,
    progress: Callable[[int], None] = lambda _done: None,
) -> AuditReport:
    """Replay an export: `entries` is uint16-length-prefixed bodies in index order,
    `checkpoints` maps the size a file claims to its note bytes, `index` the (index, leaf hash)
    the export pins for each entry; `progress` is told of each entry replayed."""
    details: Details = {"origin": policy.origin}
    replay = _Replay(policy)
    try:
        pending = _PendingCheckpoints(checkpoints, saved_checkpoints, policy, replay)
        count = _replay_entries(entries, index, replay, pending, progress)
        pending.none_beyond(count)
        _check_complete(replay, index, count)
    except _Found as found:
        details.update(_replay_details(replay))
        return AuditReport("full", found.divergence, details)
    details.update(_replay_details(replay))
    return AuditReport("full", None, details)


class _PendingCheckpoints:
    """The checkpoints to verify, by the size they cover; each is verified once the replay has
    reached that size."""

    def __init__(
        self,
        checkpoints: Mapping[int, bytes],
        saved_checkpoints: Iterable[bytes],
        policy: TrustPolicy,
        replay: _Replay,
    ) -> None:
        self._policy = policy
        self._replay = replay
        # Saved checkpoints are the auditor's own evidence: one that does not verify is an
        # input problem, reported before anything else.
        # (size, order at equal size, source, note, the saved ones already opened)
        pending: list[tuple[int, int, Source, bytes, TrustedCheckpoint | None]] = []
        for note in saved_checkpoints:
            opened = _open(note, policy, Source.SAVED, None)
            pending.append((opened.checkpoint.size, 1, Source.SAVED, note, opened))
        for size, note in checkpoints.items():
            pending.append((size, 0, Source.EXPORT, note, None))
        pending.sort(key=lambda p: (p[0], p[1]))
        self._pending = pending
        self._position = 0

    def due(self, upto: int) -> None:
        """Verifies every checkpoint of at most `upto` entries not verified yet."""
        while self._position < len(self._pending) and self._pending[self._position][0] <= upto:
            self._verify(*self._pending[self._position])
            self._position += 1

    def _verify(
        self, size: int, _order: int, source: Source, note: bytes, saved: TrustedCheckpoint | None
    ) -> None:
        try:
            opened = saved or _open(note, self._policy, source, size, self._replay.newest)
        except _Found as found:
            # The log asks witnesses for its newest checkpoint only, so exported ones in
            # between may lack the quorum: they vouch for nothing and are skipped (counted);
            # what no trusted checkpoint covers is the unsigned tail.
            if found.divergence.kind is not DivergenceKind.WITNESS_QUORUM_NOT_MET:
                raise
            self._replay.without_quorum += 1
            return
        if source is Source.EXPORT and opened.checkpoint.size != size:
            message = f"file says size {size}, the signed checkpoint {opened.checkpoint.size}"
            kind = DivergenceKind.CHECKPOINT_MALFORMED
            raise _Found(Divergence(kind, message, size, size, source))
        self._replay.checkpoint(source, opened)

    def none_beyond(self, count: int) -> None:
        """Every checkpoint was verified: none claims more entries than the `count` present."""
        if self._position < len(self._pending):
            size, _, source, _, _ = self._pending[self._position]
            kind = (
                DivergenceKind.SAVED_CHECKPOINT_BEYOND_EXPORT
                if source is Source.SAVED
                else DivergenceKind.CHECKPOINT_BEYOND_ENTRIES
            )
            message = f"a signed checkpoint covers {size} entries but only {count} are present"
            raise _Found(Divergence(kind, message, count, size, source))


def _replay_entries(
    entries: bytes,
    index: Sequence[IndexLine] | None,
    replay: _Replay,
    pending: _PendingCheckpoints,
    progress: Callable[[int], None],
) -> int:
    """Replays every entry, verifying each checkpoint when the tree reaches its size; returns
    how many entries there were."""
    count = 0
    bodies = iter_entries(entries)
    while True:
        try:
            body = next(bodies)
        except StopIteration:
            break
        except EntryBundleError as exc:
            kind = DivergenceKind.ENTRIES_TRUNCATED
            raise _Found(Divergence(kind, str(exc), count)) from exc
        pending.due(count)
        replay.entry(count, body, _pinned(index, count))
        count += 1
        progress(1)
    pending.due(count)
    return count


def _pinned(index: Sequence[IndexLine] | None, count: int) -> IndexLine | None:
    """What the export's index pins for entry `count` (None without an index)."""
    if index is None:
        return None
    if count >= len(index):
        message = f"entry {count} is not in the export's index ({len(index)} lines)"
        raise _Found(Divergence(DivergenceKind.ENTRY_INDEX_MISMATCH, message, count))
    return index[count]


def _check_complete(replay: _Replay, index: Sequence[IndexLine] | None, count: int) -> None:
    if index is not None and len(index) != count:
        message = f"the export's index lists {len(index)} entries, entries.bin holds {count}"
        raise _Found(Divergence(DivergenceKind.ENTRY_INDEX_MISMATCH, message, count))
    signed = 0 if replay.last_match is None else replay.last_match[0]
    if replay.last_match is None or (signed == 0 and count > 0):
        # Nothing vouches for any entry: deleting every checkpoint must not read as "ok".
        message = f"no trusted checkpoint covers any of the {count} entries"
        raise _Found(Divergence(DivergenceKind.NO_CHECKPOINT, message, 0))


def _replay_details(replay: _Replay) -> Details:
    return {
        "entries": replay.tree.size,
        "root": _b64(replay.tree.root()),
        "documents": len(replay.heads),
        "checkpoints_verified": replay.verified.get(Source.EXPORT, 0),
        # Signed by the log but cosigned by fewer witnesses than the policy's quorum: skipped.
        "checkpoints_without_quorum": replay.without_quorum,
        "saved_checkpoints_verified": replay.verified.get(Source.SAVED, 0),
        "last_verified_checkpoint": None if replay.last_match is None else replay.last_match[0],
        # Entries after the last trusted checkpoint: nothing signed vouches for them yet.
        "unsigned_tail": replay.tree.size
        - (0 if replay.last_match is None else replay.last_match[0]),
        "last_witnessed_at": (
            None if replay.last_witnessed_at is None else replay.last_witnessed_at.isoformat()
        ),
    }


def audit_export(
    path: Path,
    *,
    policy: TrustPolicy | None = None,
    saved_checkpoints: Iterable[bytes] = (),
    progress: Callable[[int], None] = lambda _done: None,
) -> AuditReport:
    """Full audit of an export folder. Pass the auditor's own `policy` when possible: the one
    inside the export is only as trustworthy as whoever produced the export."""
    try:
        export = read_export(path)
    except ExportError as exc:
        return AuditReport("full", Divergence(DivergenceKind.EXPORT_MALFORMED, str(exc)))
    details: Details = {"trust_policy": "given" if policy is not None else "export"}
    self_trusted = policy is None
    if policy is None:
        if export.policy is None:
            message = export.policy_error or "no trust policy"
            return AuditReport("full", Divergence(DivergenceKind.TRUST_POLICY_INVALID, message))
        policy = export.policy
    report = audit_entries(
        export.entries, export.checkpoints, policy, saved_checkpoints, export.index, progress
    )
    return AuditReport(report.mode, report.divergence, {**details, **report.details}, self_trusted)
