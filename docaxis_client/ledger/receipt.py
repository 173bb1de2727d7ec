"""C2SP tlog-proof@v1 receipts: build, parse strictly, and verify against an entry body."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from docaxis_client.ledger.entry import LedgerEntry, parse_entry
from docaxis_client.ledger.merkle import HASH_SIZE, MAX_TREE_SIZE, hash_leaf, verify_inclusion
from docaxis_client.ledger.note import Checkpoint, Note, NoteVerifier, open_checkpoint

RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"
RECEIPT_EXTENSION = ".tlog-proof"
MAX_RECEIPT_SIZE = 1 << 20
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class ReceiptError(ValueError):
    """A receipt is malformed; verification failures raise the underlying typed errors."""

    reason = "RECEIPT_MALFORMED"


@dataclass(frozen=True, slots=True)
class Receipt:
    """Index, inclusion proof and the signed checkpoint note it is relative to (verbatim)."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        return build_receipt(self.index, self.proof, self.checkpoint_note, self.extra)


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    note: Note
    entry: LedgerEntry | None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError(f"{what} is not base64") from exc
    if not raw or _b64(raw) != text:
        raise ReceiptError(f"{what} is not canonical base64")
    return raw


def build_receipt(
    index: int, proof: Sequence[bytes], checkpoint_note: bytes, extra: bytes | None = None
) -> bytes:
    """`c2sp.org/tlog-proof@v1`, optional `extra`, `index N`, proof hashes, blank line, note."""
    if not 0 <= index <= MAX_TREE_SIZE:
        raise ReceiptError(f"index {index} is not a uint64")
    if any(len(h) != HASH_SIZE for h in proof):
        raise ReceiptError("proof hashes must be 32 bytes")
    if not checkpoint_note.endswith(b"\n"):
        raise ReceiptError("the checkpoint note must end with a newline")
    lines = [RECEIPT_HEADER]
    if extra is not None:
        if not extra:
            raise ReceiptError("extra data, when present, must not be empty")
        lines.append(f"extra {_b64(extra)}")
    lines.append(f"index {index}")
    lines.extend(_b64(h) for h in proof)
    return ("\n".join(lines) + "\n\n").encode("ascii") + checkpoint_note


def parse_receipt(data: bytes) -> Receipt:
    """Parse a receipt strictly; the embedded note is only split off here, not verified."""
    if len(data) > MAX_RECEIPT_SIZE:
        raise ReceiptError(f"receipt larger than {MAX_RECEIPT_SIZE} bytes")
    head, sep, note = data.partition(b"\n\n")
    if not sep or not note:
        raise ReceiptError("no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise ReceiptError("receipt header is not ASCII") from exc
    if lines[0] != RECEIPT_HEADER:
        raise ReceiptError(f"first line must be {RECEIPT_HEADER}")
    pos = 1
    extra: bytes | None = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = _b64decode_strict(lines[pos].removeprefix("extra "), "extra")
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise ReceiptError("missing index line")
    index_text = lines[pos].removeprefix("index ")
    if not _DECIMAL.fullmatch(index_text) or int(index_text) > MAX_TREE_SIZE:
        raise ReceiptError("index must be a canonical uint64 decimal")
    proof: list[bytes] = []
    for i, line in enumerate(lines[pos + 1 :]):
        h = _b64decode_strict(line, f"proof hash {i}")
        if len(h) != HASH_SIZE:
            raise ReceiptError(f"proof hash {i} is {len(h)} bytes, want {HASH_SIZE}")
        proof.append(h)
    return Receipt(int(index_text), tuple(proof), note, extra)


def verify_receipt(
    receipt: bytes | Receipt,
    entry_body: bytes,
    origin: str,
    verifiers: Iterable[NoteVerifier],
    *,
    check_entry: bool = True,
) -> VerifiedReceipt:
    """Verify that `entry_body` is leaf `index` of a checkpoint a trusted log key signed.

    With `check_entry`, the body must also be a canonical ledger entry of this log. Raises
    ReceiptError, a note.NoteError or a merkle.ProofError, each with a machine-readable reason.
    """
    parsed = receipt if isinstance(receipt, Receipt) else parse_receipt(receipt)
    checkpoint, note = open_checkpoint(parsed.checkpoint_note, origin, verifiers)
    entry: LedgerEntry | None = None
    if check_entry:
        entry = parse_entry(entry_body)
        if entry.log != origin:
            raise ReceiptError(f"entry belongs to log {entry.log!r}, not {origin!r}")
    leaf = hash_leaf(entry_body)
    verify_inclusion(parsed.index, checkpoint.size, leaf, parsed.proof, checkpoint.root_hash)
    return VerifiedReceipt(parsed.index, leaf, checkpoint, note, entry)
