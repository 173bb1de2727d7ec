"""The auditor's trust policy: the log origin and its checkpoint keys with their validity."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from docaxis_client.ledger.note import Note, NoteError, NoteVerifier

POLICY_VERSION = 1
_POLICY_FIELDS = frozenset({"version", "origin", "log_keys"})
_KEY_FIELDS = frozenset({"vkey", "valid_from", "valid_until"})


class PolicyError(ValueError):
    reason = "TRUST_POLICY_INVALID"


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

    def __post_init__(self) -> None:
        if not self.origin:
            raise PolicyError("origin must not be empty")
        if not self.log_keys:
            raise PolicyError("a trust policy needs at least one log key")

    @property
    def verifiers(self) -> list[NoteVerifier]:
        return [k.verifier for k in self.log_keys]

    def signed_by_valid_key(self, note: Note, newest_logged_at: dt.datetime | None) -> bool:
        """Whether a key that verified `note` was valid for a checkpoint with that newest entry."""
        return any(
            note.verified_by(k.verifier) and k.covers(newest_logged_at) for k in self.log_keys
        )

    @classmethod
    def for_keys(cls, origin: str, vkeys: Iterable[str]) -> Self:
        """A policy from bare verifier keys (no validity bounds), e.g. from the command line."""
        try:
            return cls(origin, tuple(LogKey(NoteVerifier.from_vkey(v)) for v in vkeys))
        except NoteError as exc:
            raise PolicyError(f"bad verifier key: {exc}") from exc

    @classmethod
    def from_signing_keys(cls, origin: str, keys: Iterable[tuple[str, dt.datetime]]) -> Self:
        """The log's own policy: each recorded verifier key valid from its first use."""
        return cls(
            origin, tuple(LogKey(NoteVerifier.from_vkey(v), valid_from=since) for v, since in keys)
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
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            doc: Any = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"trust policy is not JSON: {exc}") from exc
        # Unknown fields are refused: a newer policy (say, with a witness quorum) must fail
        # closed here rather than be silently weakened.
        if not isinstance(doc, dict) or set(doc) != _POLICY_FIELDS:
            raise PolicyError(f"trust policy must have exactly the fields {sorted(_POLICY_FIELDS)}")
        if doc["version"] != POLICY_VERSION:
            raise PolicyError(f"unsupported trust policy version {doc['version']!r}")
        origin = doc["origin"]
        if not isinstance(origin, str):
            raise PolicyError("origin must be a string")
        raw_keys = doc["log_keys"]
        if not isinstance(raw_keys, list):
            raise PolicyError("log_keys must be a list")
        keys: list[LogKey] = []
        for i, raw in enumerate(raw_keys):
            if not isinstance(raw, dict) or "vkey" not in raw or not set(raw) <= _KEY_FIELDS:
                raise PolicyError(f"log_keys[{i}] must be {{vkey, valid_from?, valid_until?}}")
            if not isinstance(raw["vkey"], str):
                raise PolicyError(f"log_keys[{i}].vkey must be a string")
            try:
                verifier = NoteVerifier.from_vkey(raw["vkey"])
            except NoteError as exc:
                raise PolicyError(f"log_keys[{i}]: {exc}") from exc
            keys.append(
                LogKey(
                    verifier,
                    _parse_time(raw.get("valid_from"), f"log_keys[{i}].valid_from"),
                    _parse_time(raw.get("valid_until"), f"log_keys[{i}].valid_until"),
                )
            )
        return cls(origin, tuple(keys))

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            return cls.from_json(path.read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read trust policy {path}: {exc.strerror}") from exc
