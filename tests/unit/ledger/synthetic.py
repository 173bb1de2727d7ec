"""Synthetic ledgers built with the pure code: keys, entry chains, signed checkpoints, exports."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from docaxis_client.ledger.cosignature import Cosigner, merge_signatures
from docaxis_client.ledger.entry import EntryType, LedgerEntry, PrevRef, parse_entry
from docaxis_client.ledger.merkle import CompactRange, MemoryTree, hash_leaf
from docaxis_client.ledger.note import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from docaxis_client.ledger.policy import LogKey, TrustPolicy, WitnessKey
from services.ledger.audit.export import write_export

ORIGIN = "ledger.test.docaxis.example/v1"
T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
DOC_TYPES = (EntryType.SUBMISSION, EntryType.ROUTING, EntryType.DELIVERY, EntryType.STATUS)


def fixed_signer(name: str = ORIGIN, seed: str = "log-key-1") -> NoteSigner:
    """A deterministic Ed25519 signer, so failures reproduce byte for byte."""
    raw = hashlib.sha256(seed.encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(raw))


def fixed_cosigner(name: str, seed: str | None = None) -> Cosigner:
    """A deterministic witness key."""
    raw = hashlib.sha256((seed or name).encode()).digest()
    return Cosigner(name, Ed25519PrivateKey.from_private_bytes(raw))


WITNESSES = (
    fixed_cosigner("witness.province.example/w1"),
    fixed_cosigner("witness.hub.example/w2"),
)
# Witnesses see each checkpoint an hour after the first entry was logged (the log is 41 s long).
WITNESSED_AT = T0 + dt.timedelta(hours=1)


def cosigned(
    note: bytes, cosigners: Sequence[Cosigner] = WITNESSES, when: dt.datetime = WITNESSED_AT
) -> bytes:
    """The note with each witness's tlog-cosignature/v1 line added."""
    text, _ = parse_note(note)
    return merge_signatures(note, [c.cosign(text, when) for c in cosigners])


def witnessed_policy(
    *signers: NoteSigner, quorum: int = 2, valid_until: dt.datetime | None = None
) -> TrustPolicy:
    """The auditor's own policy: the log key and both witnesses, `quorum` of them required."""
    base = policy_for(*signers, valid_until=valid_until)
    witnesses = tuple(WitnessKey(c.verifier) for c in WITNESSES)
    return TrustPolicy(base.origin, base.log_keys, witnesses, quorum)


def doc_id(n: int) -> str:
    return str(uuid.UUID(int=0x1234_0000_0000_4000_8000_0000_0000_0000 + n))


def make_entry(
    seq: int, doc: str | None, prev: PrevRef | None, *, kind: EntryType | None = None
) -> LedgerEntry:
    when = T0 + dt.timedelta(milliseconds=137 * seq)
    entry_type = kind or (DOC_TYPES[seq % len(DOC_TYPES)] if doc else EntryType.DIRECTORY)
    return LedgerEntry(
        log=ORIGIN,
        type=entry_type,
        actor="exchange-01",
        occurred_at=when - dt.timedelta(seconds=1),
        logged_at=when,
        doc=doc,
        document_id=f"000.00.00.G22,2025/{seq}" if doc else None,
        doc_sha256=hashlib.sha256(f"package {seq}".encode()).hexdigest() if doc else None,
        from_="000.00.00.G22",
        to="000.00.00.H45" if doc else None,
        prev=prev,
        data={"n": seq, "note": "synthetic"},
    )


def build_bodies(count: int, documents: int = 7) -> list[bytes]:
    """A log of `count` entries: every 5th is a directory entry, the rest rotate over documents
    with correct `prev` back-pointers."""
    bodies: list[bytes] = []
    heads: dict[str, PrevRef] = {}
    for seq in range(count):
        doc = None if seq % 5 == 4 else doc_id(seq % documents)
        prev = heads.get(doc) if doc else None
        body = make_entry(seq, doc, prev).encode()
        if doc:
            heads[doc] = PrevRef(seq, hash_leaf(body))
        bodies.append(body)
    return bodies


def relink(bodies: Sequence[bytes]) -> list[bytes]:
    """Recompute every `prev` after an edit, as an attacker covering their tracks would."""
    out: list[bytes] = []
    heads: dict[str, PrevRef] = {}
    for seq, body in enumerate(bodies):
        entry = parse_entry(body)
        if entry.doc is not None:
            entry = replace(entry, prev=heads.get(entry.doc))
        new = entry.encode()
        if entry.doc is not None:
            heads[entry.doc] = PrevRef(seq, hash_leaf(new))
        out.append(new)
    return out


def root_at(bodies: Sequence[bytes], size: int) -> bytes:
    cr = CompactRange()
    cr.extend(hash_leaf(b) for b in bodies[:size])
    return cr.root()


def checkpoint_note(
    bodies: Sequence[bytes], size: int, signers: Sequence[NoteSigner] | None = None
) -> bytes:
    checkpoint = Checkpoint(ORIGIN, size, root_at(bodies, size))
    return sign_checkpoint(checkpoint, signers or [fixed_signer()])


def policy_for(*signers: NoteSigner, valid_until: dt.datetime | None = None) -> TrustPolicy:
    keys = tuple(LogKey(s.verifier, valid_until=valid_until) for s in signers or (fixed_signer(),))
    return TrustPolicy(ORIGIN, keys)


@dataclass
class SyntheticLog:
    """Bodies plus the checkpoints a log would have published along the way."""

    bodies: list[bytes]
    checkpoint_sizes: list[int]
    signer: NoteSigner = field(default_factory=fixed_signer)

    @property
    def notes(self) -> list[bytes]:
        return [checkpoint_note(self.bodies, s, [self.signer]) for s in self.checkpoint_sizes]

    def tree(self) -> MemoryTree:
        return MemoryTree(hash_leaf(b) for b in self.bodies)

    def write(self, path: Path, notes: Sequence[bytes] | None = None) -> Path:
        write_export(
            path, policy_for(self.signer), self.bodies, self.notes if notes is None else notes
        )
        return path


def synthetic_log(
    count: int = 300, sizes: Sequence[int] = (0, 1, 64, 100, 257, 300)
) -> SyntheticLog:
    return SyntheticLog(build_bodies(count), list(sizes))
