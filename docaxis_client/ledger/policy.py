"""The auditor's trust policy: the log origin, its checkpoint keys with their validity, and the
witnesses (C2SP tlog-cosignature keys) of which a quorum must have cosigned a checkpoint."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from docaxis_client.ledger.cosignature import CosignerVerifier, verified_cosignatures
from docaxis_client.ledger.note import (
    Checkpoint,
    Note,
    NoteError,
    NoteVerifier,
    open_checkpoint,
)

# Version 1 has log keys only; version 2 adds witnesses and a quorum.
POLICY_VERSION = 2
_POLICY_FIELDS = {
    1: frozenset({"version", "origin", "log_keys"}),
    2: frozenset({"version", "origin", "log_keys", "witnesses", "quorum"}),
}
_KEY_FIELDS = frozenset({"vkey", "valid_from", "valid_until"})
K = TypeVar("K")
# Cosignature times are whole seconds from the witness's clock, key windows come from the log's:
# a witness time this much before a window opens still counts (truncation plus clock skew).
CLOCK_SLACK = dt.timedelta(seconds=60)


class PolicyError(ValueError):
    reason = "TRUST_POLICY_INVALID"


class QuorumNotMetError(NoteError):
    """Fewer witnesses of the policy cosigned the checkpoint (within their validity) than its
    quorum asks: nobody outside the operator vouches that this view is the only one."""

    reason = "WITNESS_QUORUM_NOT_MET"


class KeyNotValidError(NoteError):
    """The log key verified the note, but the note's witnessed time or entries fall outside the
    key's validity window."""

    reason = "CHECKPOINT_KEY_EXPIRED"


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness's cosigning key and the window in which its cosignatures count."""

    verifier: CosignerVerifier
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def valid_at(self, when: dt.datetime) -> bool:
        if self.valid_from is not None and when + CLOCK_SLACK < self.valid_from:
            return False
        return self.valid_until is None or when <= self.valid_until


@dataclass(frozen=True, slots=True)
class TrustedCheckpoint:
    """A checkpoint the policy accepts: log signature, witness quorum, key windows."""

    checkpoint: Checkpoint
    note: Note
    # Witness name -> cosignature time, for the witnesses of the policy that counted.
    cosigned_at: dict[str, dt.datetime]

    @property
    def witnessed_at(self) -> dt.datetime | None:
        """The earliest time a counted witness saw this tree: it existed by then."""
        return min(self.cosigned_at.values(), default=None)


def _parse_time(value: object, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PolicyError(f"{what} must be an RFC 3339 string or null")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise PolicyError(f"{what} {value!r} is not RFC 3339") from exc
    if when.tzinfo is None:
        raise PolicyError(f"{what} must carry a timezone")
    return when


def _format_time(when: dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LogKey:
    """A log checkpoint key. `valid_until` bounds what it may have signed (see `covers`)."""

    verifier: NoteVerifier
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def valid_for(
        self, newest_logged_at: dt.datetime | None, witnessed_at: dt.datetime | None
    ) -> bool:
        """`covers` the entries, and a witness did not see the checkpoint before the key existed
        (it is signed no later than it is witnessed)."""
        if (
            self.valid_from is not None
            and witnessed_at is not None
            and witnessed_at + CLOCK_SLACK < self.valid_from
        ):
            return False
        return self.covers(newest_logged_at)

    def covers(self, newest_logged_at: dt.datetime | None) -> bool:
        """May this key have signed a checkpoint whose newest entry was logged at that time?

        A checkpoint is signed after its newest entry is logged, so a key retired at T cannot
        have signed one covering an entry logged after T. (valid_from gives no such bound: a new
        key may legitimately sign a tree of old entries.) Without entries there is no bound.
        """
        if self.valid_until is None or newest_logged_at is None:
            return True
        return newest_logged_at <= self.valid_until


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    origin: str
    log_keys: tuple[LogKey, ...]
    witnesses: tuple[WitnessKey, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        if not self.origin:
            raise PolicyError("origin must not be empty")
        if not self.log_keys:
            raise PolicyError("a trust policy needs at least one log key")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise PolicyError(
                f"quorum {self.quorum} must be between 0 and the {len(self.witnesses)} witnesses"
            )
        names = [w.verifier.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise PolicyError("two witnesses share a name: each counts once towards the quorum")

    @property
    def verifiers(self) -> list[NoteVerifier]:
        return [k.verifier for k in self.log_keys]

    def signed_by_valid_key(
        self,
        note: Note,
        newest_logged_at: dt.datetime | None,
        witnessed_at: dt.datetime | None = None,
    ) -> bool:
        """Whether a key that verified `note` was valid for a checkpoint with that newest entry
        (and, given the witnessed time, already valid when it was witnessed)."""
        return any(
            note.verified_by(k.verifier) and k.valid_for(newest_logged_at, witnessed_at)
            for k in self.log_keys
        )

    def open(self, note: bytes, newest_logged_at: dt.datetime | None = None) -> TrustedCheckpoint:
        """Verify a checkpoint note completely: a log key of this origin signed it, at least
        `quorum` witnesses cosigned it within their validity windows, and a log key valid for it
        (see LogKey.valid_for) is among the signers. Raises a typed NoteError otherwise."""
        checkpoint, opened = open_checkpoint(note, self.origin, self.verifiers)
        counted = self.witness_times(note)
        if len(counted) < self.quorum:
            raise QuorumNotMetError(
                f"{len(counted)} of the policy's witnesses cosigned size {checkpoint.size}, "
                f"the quorum is {self.quorum}"
            )
        trusted = TrustedCheckpoint(checkpoint, opened, counted)
        if not self.signed_by_valid_key(opened, newest_logged_at, trusted.witnessed_at):
            raise KeyNotValidError(
                f"no log key valid for checkpoint {checkpoint.size} (its entries or its "
                "witnessed time fall outside every signing key's window)"
            )
        return trusted

    def witness_times(self, note: bytes) -> dict[str, dt.datetime]:
        """Witness name -> cosignature time, for each policy witness whose cosignature verifies
        and whose key was valid at that time."""
        keys = {w.verifier: w for w in self.witnesses}
        found = verified_cosignatures(note, keys)
        return {v.name: when for v, when in found.items() if keys[v].valid_at(when)}

    @classmethod
    def for_keys(cls, origin: str, vkeys: Iterable[str]) -> Self:
        """A policy from bare verifier keys (no validity bounds), e.g. from the command line."""
        try:
            return cls(origin, tuple(LogKey(NoteVerifier.from_vkey(v)) for v in vkeys))
        except NoteError as exc:
            raise PolicyError(f"bad verifier key: {exc}") from exc

    @classmethod
    def from_signing_keys(
        cls, origin: str, keys: Iterable[tuple[str, dt.datetime, dt.datetime | None]]
    ) -> Self:
        """The log's own policy: each recorded verifier key valid from its first use until its
        recorded retirement."""
        return cls(
            origin,
            tuple(
                LogKey(NoteVerifier.from_vkey(v), valid_from=since, valid_until=until)
                for v, since, until in keys
            ),
        )

    def to_json(self) -> str:
        doc = {
            "version": POLICY_VERSION,
            "origin": self.origin,
            "log_keys": [
                {
                    "vkey": k.verifier.vkey,
                    "valid_from": _format_time(k.valid_from),
                    "valid_until": _format_time(k.valid_until),
                }
                for k in self.log_keys
            ],
            "witnesses": [
                {
                    "vkey": w.verifier.vkey,
                    "valid_from": _format_time(w.valid_from),
                    "valid_until": _format_time(w.valid_until),
                }
                for w in self.witnesses
            ],
            "quorum": self.quorum,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            doc: Any = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"trust policy is not JSON: {exc}") from exc
        # Unknown fields are refused: a newer policy (say, with TSA roots) must fail closed
        # here rather than be silently weakened.
        if not isinstance(doc, dict) or doc.get("version") not in _POLICY_FIELDS:
            raise PolicyError(
                f"unsupported trust policy version {doc.get('version')!r}"
                if isinstance(doc, dict)
                else "a trust policy is a JSON object"
            )
        fields = _POLICY_FIELDS[doc["version"]]
        if set(doc) != fields:
            raise PolicyError(f"trust policy must have exactly the fields {sorted(fields)}")
        origin = doc["origin"]
        if not isinstance(origin, str):
            raise PolicyError("origin must be a string")
        keys = [
            LogKey(verifier, valid_from, valid_until)
            for verifier, valid_from, valid_until in _keys(
                doc["log_keys"], "log_keys", NoteVerifier.from_vkey
            )
        ]
        witnesses: list[WitnessKey] = []
        quorum = 0
        if doc["version"] >= 2:
            witnesses = [
                WitnessKey(verifier, valid_from, valid_until)
                for verifier, valid_from, valid_until in _keys(
                    doc["witnesses"], "witnesses", CosignerVerifier.from_vkey
                )
            ]
            quorum = doc["quorum"]
            if type(quorum) is not int:
                raise PolicyError("quorum must be an integer")
        return cls(origin, tuple(keys), tuple(witnesses), quorum)

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            return cls.from_json(path.read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read trust policy {path}: {exc.strerror}") from exc


def _keys(
    raw_keys: object, what: str, parse: Callable[[str], K]
) -> list[tuple[K, dt.datetime | None, dt.datetime | None]]:
    if not isinstance(raw_keys, list):
        raise PolicyError(f"{what} must be a list")
    keys: list[tuple[K, dt.datetime | None, dt.datetime | None]] = []
    for i, raw in enumerate(raw_keys):
        if not isinstance(raw, dict) or "vkey" not in raw or not set(raw) <= _KEY_FIELDS:
            raise PolicyError(f"{what}[{i}] must be {{vkey, valid_from?, valid_until?}}")
        if not isinstance(raw["vkey"], str):
            raise PolicyError(f"{what}[{i}].vkey must be a string")
        try:
            key = parse(raw["vkey"])
        except NoteError as exc:
            raise PolicyError(f"{what}[{i}]: {exc}") from exc
        valid_from = _parse_time(raw.get("valid_from"), f"{what}[{i}].valid_from")
        valid_until = _parse_time(raw.get("valid_until"), f"{what}[{i}].valid_until")
        if valid_from is not None and valid_until is not None and valid_until < valid_from:
            raise PolicyError(f"{what}[{i}] ends before it starts")
        keys.append((key, valid_from, valid_until))
    return keys
