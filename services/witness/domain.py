"""The witness's decision (C2SP tlog-witness add-checkpoint), free of HTTP and storage.

For each log it trusts (origin + log verifier keys) it keeps the latest checkpoint it cosigned.
A new checkpoint is cosigned only if a consistency proof joins it to that one; anything else is
refused with the status the spec gives, and a refusal that is evidence of a split view (the same
size with another root, or a proof that does not verify, both under a valid log signature) is
kept as fork evidence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from docaxis_client.ledger.cosignature import Cosigner
from docaxis_client.ledger.merkle import HASH_SIZE, ProofError, verify_consistency
from docaxis_client.ledger.note import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    UnverifiedNoteError,
    open_note,
    parse_checkpoint,
    parse_note,
)
from services.common.clock import Clock, utc_now

MAX_PROOF_LINES = 63
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class WitnessedState:
    """The latest checkpoint cosigned for one log: its size, root and exact note."""

    size: int
    root: bytes
    note: bytes


class WitnessStore(Protocol):
    def load(self, origin: str) -> WitnessedState | None: ...

    def save(self, origin: str, state: WitnessedState) -> None:
        """Durably, before the cosignature is returned (the spec's MUST)."""
        ...

    def keep_fork_evidence(
        self, origin: str, held: WitnessedState, shown: bytes, why: str
    ) -> None: ...


class Outcome(enum.IntEnum):
    """The HTTP status each outcome maps to (C2SP tlog-witness)."""

    COSIGNED = 200
    BAD_REQUEST = 400
    FORBIDDEN = 403
    UNKNOWN_LOG = 404
    CONFLICT = 409
    BAD_PROOF = 422


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    body: bytes
    # For 409: the size the witness holds (the spec's text/x.tlog.size body).
    size: int | None = None
    # True when the refusal is evidence of a split view (kept, and logged as such).
    fork: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


class RequestError(ValueError):
    pass


def parse_request(body: bytes) -> Request:
    """`old <size>\\n`, up to 63 base64 proof lines, an empty line, then the checkpoint note."""
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise RequestError("no empty line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise RequestError("the request head is not ASCII") from exc
    first = lines[0]
    if not first.startswith("old ") or not _DECIMAL.fullmatch(first[4:]):
        raise RequestError("the first line must be `old <size>`")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError("a proof line is not base64") from exc
        if len(raw) != HASH_SIZE:
            raise RequestError("a proof line is not a 32-byte hash")
        proof.append(raw)
    if len(proof) > MAX_PROOF_LINES:
        raise RequestError(f"more than {MAX_PROOF_LINES} proof lines")
    return Request(int(first[4:]), tuple(proof), note)


def format_request(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    lines = [f"old {old_size}\n"] + [base64.b64encode(h).decode() + "\n" for h in proof]
    return "".join(lines).encode("ascii") + b"\n" + note


class Witness:
    """One witness key, the logs it follows, and their last cosigned states."""

    def __init__(
        self,
        cosigner: Cosigner,
        logs: Mapping[str, Sequence[NoteVerifier]],
        store: WitnessStore,
        clock: Clock = utc_now,
    ) -> None:
        self.cosigner = cosigner
        self._logs = {origin: list(keys) for origin, keys in logs.items()}
        self._store = store
        self._clock = clock
        # Check-then-persist must be atomic per log, or two requests could roll the state back.
        self._locks: dict[str, asyncio.Lock] = {}

    async def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = parse_request(body)
            text, _ = parse_note(request.note)
            checkpoint = parse_checkpoint(text)
        except (RequestError, NoteError) as exc:
            return Answer(Outcome.BAD_REQUEST, f"{exc}\n".encode())
        keys = self._logs.get(checkpoint.origin)
        if keys is None:
            return Answer(Outcome.UNKNOWN_LOG, b"unknown log origin\n")
        try:
            open_note(request.note, keys)
        except UnverifiedNoteError:
            return Answer(Outcome.FORBIDDEN, b"no signature by a known log key\n")
        except NoteError as exc:
            return Answer(Outcome.FORBIDDEN, f"{exc}\n".encode())
        if request.old_size > checkpoint.size:
            return Answer(Outcome.BAD_REQUEST, b"old size is larger than the checkpoint's\n")
        lock = self._locks.setdefault(checkpoint.origin, asyncio.Lock())
        async with lock:
            return self._decide(checkpoint, request)

    def _decide(self, checkpoint: Checkpoint, request: Request) -> Answer:
        origin = checkpoint.origin
        held = self._store.load(origin)
        held_size = 0 if held is None else held.size
        if request.old_size != held_size:
            return _conflict(held_size)
        if held is not None and held.size == checkpoint.size:
            if held.root != checkpoint.root_hash:
                why = f"a second root for size {checkpoint.size}: the log forked"
                self._store.keep_fork_evidence(origin, held, request.note, why)
                return Answer(Outcome.CONFLICT, f"{held_size}\n".encode(), held_size, fork=True)
            if request.proof:
                return Answer(Outcome.BAD_PROOF, b"the proof must be empty for equal sizes\n")
        elif held is not None:
            try:
                verify_consistency(
                    held.size, checkpoint.size, request.proof, held.root, checkpoint.root_hash
                )
            except ProofError as exc:
                why = f"no consistency from {held.size} to {checkpoint.size}: {exc}"
                self._store.keep_fork_evidence(origin, held, request.note, why)
                return Answer(Outcome.BAD_PROOF, f"{exc}\n".encode(), fork=True)
        elif request.proof:
            return Answer(Outcome.BAD_PROOF, b"the proof must be empty from size 0\n")
        self._store.save(
            origin, WitnessedState(checkpoint.size, checkpoint.root_hash, request.note)
        )
        line = self.cosigner.cosign(checkpoint.text, self._clock()).line
        return Answer(Outcome.COSIGNED, line.encode("utf-8"))


def _conflict(size: int) -> Answer:
    return Answer(Outcome.CONFLICT, f"{size}\n".encode(), size)
