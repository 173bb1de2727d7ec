"""The ledger export folder: trust-policy.json, entries.bin, entries.index and
checkpoints/<size>.note."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from docaxis_client.ledger.merkle import HASH_SIZE, hash_leaf
from docaxis_client.ledger.note import NoteError, parse_checkpoint, parse_note
from docaxis_client.ledger.policy import PolicyError, TrustPolicy
from services.ledger.domain.tiles import encode_entries

POLICY_FILE = "trust-policy.json"
ENTRIES_FILE = "entries.bin"
# One line per entry, `<index> <base64 leaf hash>`: pins each body to its position, so a body
# dropped, added or moved anywhere is reported where it happened.
INDEX_FILE = "entries.index"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_SUFFIX = ".note"
_CHECKPOINT_NAME = re.compile(r"(0|[1-9][0-9]*)\.note")


class ExportError(ValueError):
    """The folder is not a readable export (missing files, stray names)."""

    reason = "EXPORT_MALFORMED"


class ExportGapError(ExportError):
    """The database's entries are not contiguous (or a stored leaf hash is wrong): the exporter
    refuses to write an export that would silently shift every later entry."""

    reason = "EXPORT_GAP"


IndexLine = tuple[int, bytes]


def format_index_line(index: int, leaf_hash: bytes) -> bytes:
    return f"{index} {base64.b64encode(leaf_hash).decode('ascii')}\n".encode("ascii")


def parse_index(data: bytes) -> list[IndexLine]:
    """The index file: strictly `<decimal index> <canonical base64 hash>\n` per line."""
    lines: list[IndexLine] = []
    if not data:
        return lines
    if not data.endswith(b"\n"):
        raise ExportError(f"{INDEX_FILE} must end with a newline")
    for number, line in enumerate(data[:-1].split(b"\n"), start=1):
        index_text, _, leaf_text = line.partition(b" ")
        try:
            leaf = base64.b64decode(leaf_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ExportError(f"{INDEX_FILE} line {number}: leaf hash is not base64") from exc
        if (
            not re.fullmatch(rb"0|[1-9][0-9]*", index_text)
            or len(leaf) != HASH_SIZE
            or format_index_line(int(index_text), leaf) != line + b"\n"
        ):
            raise ExportError(f"{INDEX_FILE} line {number} is not '<index> <base64 hash>'")
        lines.append((int(index_text), leaf))
    return lines


@dataclass(frozen=True, slots=True)
class ExportFolder:
    """The raw contents of an export; nothing in it is trusted until the verifier checks it."""

    path: Path
    policy: TrustPolicy | None
    policy_error: str | None
    entries: bytes
    index: list[IndexLine]
    checkpoints: dict[int, bytes]  # size from the file name -> exact note bytes


def read_export(path: Path) -> ExportFolder:
    if not path.is_dir():
        raise ExportError(f"{path} is not a directory")
    policy: TrustPolicy | None = None
    policy_error: str | None = None
    try:
        policy = TrustPolicy.load(path / POLICY_FILE)
    except PolicyError as exc:
        policy_error = str(exc)  # only fatal if the auditor does not bring their own policy
    try:
        entries = (path / ENTRIES_FILE).read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {ENTRIES_FILE}: {exc.strerror}") from exc
    try:
        index = parse_index((path / INDEX_FILE).read_bytes())
    except OSError as exc:
        raise ExportError(f"cannot read {INDEX_FILE}: {exc.strerror}") from exc
    checkpoints: dict[int, bytes] = {}
    checkpoint_dir = path / CHECKPOINT_DIR
    if checkpoint_dir.exists():
        for item in sorted(checkpoint_dir.iterdir()):
            match = _CHECKPOINT_NAME.fullmatch(item.name)
            if not match or not item.is_file():
                raise ExportError(f"unexpected {CHECKPOINT_DIR}/{item.name}")
            checkpoints[int(match.group(1))] = item.read_bytes()
    return ExportFolder(path, policy, policy_error, entries, index, checkpoints)


def write_export(
    path: Path,
    policy: TrustPolicy,
    bodies: Iterable[bytes],
    checkpoint_notes: Iterable[bytes],
) -> None:
    """Write an export folder (the exporter's and the tests' side of the format).

    Notes are written byte for byte, named by the size their (unverified) body states.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / POLICY_FILE).write_text(policy.to_json(), encoding="utf-8")
    bodies = list(bodies)
    (path / ENTRIES_FILE).write_bytes(encode_entries(bodies))
    (path / INDEX_FILE).write_bytes(
        b"".join(format_index_line(i, hash_leaf(body)) for i, body in enumerate(bodies))
    )
    checkpoint_dir = path / CHECKPOINT_DIR
    checkpoint_dir.mkdir(exist_ok=True)
    for note in checkpoint_notes:
        try:
            text, _ = parse_note(note)
            size = parse_checkpoint(text).size
        except NoteError as exc:
            raise ExportError(f"not a checkpoint note: {exc}") from exc
        (checkpoint_dir / f"{size}{CHECKPOINT_SUFFIX}").write_bytes(note)
