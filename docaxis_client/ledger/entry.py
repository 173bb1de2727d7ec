"""Ledger entry bodies: a closed schema serialised as RFC 8785 (JCS) canonical JSON."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import rfc8785

from docaxis_client import jcs
from docaxis_client.ledger.merkle import HASH_SIZE, hash_leaf

ENTRY_VERSION = 1
MAX_BODY_SIZE = 0xFFFF  # entry bundles frame bodies with a uint16 length (C2SP tlog-tiles)
MAX_SEQ = (1 << 63) - 1  # seq is a Postgres bigint

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Fixed-width UTC with microseconds: the canonical form we emit, so equal instants are equal bytes.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class EntryError(ValueError):
    """An entry body violates the schema; `reason` is machine-readable."""

    reason = "ENTRY_INVALID"


class EntryTooLargeError(EntryError):
    reason = "SIZE_LIMIT_EXCEEDED"


class NonCanonicalEntryError(EntryError):
    """The body parses but is not the RFC 8785 encoding of what it contains."""

    reason = "ENTRY_NOT_CANONICAL"


class EntryType(enum.StrEnum):
    SUBMISSION = "submission"
    VERIFICATION = "verification"
    ROUTING = "routing"
    DELIVERY = "delivery"
    RECEIPT = "receipt"
    STATUS = "status"
    REVOKE = "revoke"
    UPDATE = "update"
    REPLACE = "replace"
    DIRECTORY = "directory"
    KEY = "key"
    CHECKPOINT_KEY_ROTATION = "checkpoint_key_rotation"


# Entries about one document carry `doc` and chain through `prev`; the others describe the
# exchange itself and must not pretend to belong to a document's history.
DOCUMENT_TYPES: frozenset[EntryType] = frozenset(
    {
        EntryType.SUBMISSION,
        EntryType.VERIFICATION,
        EntryType.ROUTING,
        EntryType.DELIVERY,
        EntryType.RECEIPT,
        EntryType.STATUS,
        EntryType.REVOKE,
        EntryType.UPDATE,
        EntryType.REPLACE,
    }
)

_REQUIRED = frozenset({"v", "log", "type", "actor", "occurred_at", "logged_at", "data"})
_OPTIONAL = frozenset({"doc", "document_id", "doc_sha256", "from", "to", "prev"})
_DOC_ONLY = ("doc", "document_id", "doc_sha256", "prev")


def canonical_json(value: JSONValue, *, fast: bool | None = None) -> bytes:
    """RFC 8785 (JCS) serialisation of `value`; raises EntryError if it has none.

    `fast` lets a caller that already knows the fast path is exact skip the check.
    """
    try:
        return jcs.dumps(value, fast=fast)
    except rfc8785.CanonicalizationError as exc:
        raise EntryError(f"value has no canonical JSON form: {exc}") from exc


@functools.lru_cache(maxsize=4096)  # a batch shares one logged_at: format it once
def format_timestamp(when: dt.datetime) -> str:
    """The canonical body timestamp: UTC, microseconds, `Z` (e.g. 2025-01-02T03:04:05.000006Z)."""
    offset = when.utcoffset()
    if offset is None:
        raise EntryError("timestamps must be timezone-aware")
    if offset:
        when = when.astimezone(dt.UTC)
    # isoformat is C code and ~3x faster than strftime; it ends in "+00:00" for any UTC tzinfo.
    return when.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_timestamp(text: str) -> dt.datetime:
    if not _TIMESTAMP.fullmatch(text):
        raise EntryError(f"timestamp {text[:40]!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        return dt.datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise EntryError(f"timestamp {text!r} is not a real instant") from exc


@dataclass(frozen=True, slots=True)
class PrevRef:
    """Back-pointer to the previous entry of the same document: its seq and leaf hash."""

    seq: int
    leaf: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_SEQ:
            raise EntryError(f"prev.seq {self.seq} out of range")
        if len(self.leaf) != HASH_SIZE:
            raise EntryError("prev.leaf must be a 32-byte hash")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger entry body. `seq` is not part of it: it is the leaf's position in the tree."""

    log: str
    type: EntryType
    actor: str
    occurred_at: dt.datetime
    logged_at: dt.datetime
    data: Mapping[str, JSONValue] = field(default_factory=dict)
    doc: str | None = None
    document_id: str | None = None
    doc_sha256: str | None = None
    from_: str | None = None
    to: str | tuple[str, ...] | None = None
    prev: PrevRef | None = None
    v: int = ENTRY_VERSION

    def to_json(self) -> dict[str, JSONValue]:
        """The JSON object the body encodes; absent optional fields are omitted, never null."""
        self._validate()
        obj: dict[str, JSONValue] = {
            "v": self.v,
            "log": self.log,
            "type": str(self.type),
            "actor": self.actor,
            "occurred_at": format_timestamp(self.occurred_at),
            "logged_at": format_timestamp(self.logged_at),
            "data": dict(self.data),
        }
        if self.doc is not None:
            obj["doc"] = self.doc
        if self.document_id is not None:
            obj["document_id"] = self.document_id
        if self.doc_sha256 is not None:
            obj["doc_sha256"] = self.doc_sha256
        if self.from_ is not None:
            obj["from"] = self.from_
        if self.to is not None:
            obj["to"] = self.to if isinstance(self.to, str) else list(self.to)
        if self.prev is not None:
            leaf = binascii.b2a_base64(self.prev.leaf, newline=False).decode("ascii")
            obj["prev"] = {"seq": self.prev.seq, "leaf": leaf}
        return obj

    def encode(self) -> bytes:
        """The exact body bytes (the leaf input): RFC 8785 canonical JSON, at most 65535 bytes."""
        obj = self.to_json()
        # Only `data` can hold floats or astral keys: the other members are ASCII keys over
        # strings and ints this class validated, so only `data` needs the fast-path check.
        body = canonical_json(obj, fast=jcs.fast_path_exact(obj["data"]))
        if len(body) > MAX_BODY_SIZE:
            raise EntryTooLargeError(f"entry body is {len(body)} bytes, limit {MAX_BODY_SIZE}")
        return body

    def leaf_hash(self) -> bytes:
        return hash_leaf(self.encode())

    def _validate(self) -> None:
        if self.v != ENTRY_VERSION:
            raise EntryError(f"unsupported entry version {self.v}")
        if not isinstance(self.type, EntryType):
            raise EntryError(f"unknown entry type {self.type!r}")
        if not self.log or not self.actor:
            raise EntryError("log and actor must be non-empty")
        for name in ("from_", "document_id"):
            value = getattr(self, name)
            if value is not None and not value:
                raise EntryError(f"{name.rstrip('_')} must be non-empty when present")
        if self.to is not None and (not self.to if isinstance(self.to, str) else not all(self.to)):
            raise EntryError("to must be non-empty when present")
        if self.type in DOCUMENT_TYPES:
            if self.doc is None:
                raise EntryError(f"a {self.type} entry needs doc")
        elif any(getattr(self, name) is not None for name in _DOC_ONLY):
            raise EntryError(f"a {self.type} entry must not carry document fields")
        if self.doc is not None and not _is_canonical_uuid(self.doc):
            raise EntryError("doc must be a lowercase hyphenated UUID")
        if self.doc_sha256 is not None and not _SHA256_HEX.fullmatch(self.doc_sha256):
            raise EntryError("doc_sha256 must be 64 lowercase hex digits")


def _is_canonical_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None  # exactly str(uuid.UUID(...))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise EntryError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise EntryError(f"{name} is not JSON")


def _str_field(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise EntryError(f"{key} must be a string")
    return value


def parse_entry(body: bytes) -> LedgerEntry:
    """Parse a body strictly: schema, then re-encode and require byte equality."""
    if len(body) > MAX_BODY_SIZE:
        raise EntryTooLargeError(f"entry body is {len(body)} bytes, limit {MAX_BODY_SIZE}")
    obj = _json_object(body)
    _check_fields(obj)
    v, entry_type = _check_types(obj)
    to_value = _recipients(obj)
    prev = _prev(obj["prev"]) if "prev" in obj else None
    entry = LedgerEntry(
        v=v,
        log=obj["log"],
        type=entry_type,
        actor=obj["actor"],
        occurred_at=parse_timestamp(obj["occurred_at"]),
        logged_at=parse_timestamp(obj["logged_at"]),
        data=obj["data"],
        doc=_str_field(obj, "doc"),
        document_id=_str_field(obj, "document_id"),
        doc_sha256=_str_field(obj, "doc_sha256"),
        from_=_str_field(obj, "from"),
        to=to_value,
        prev=prev,
    )
    if entry.encode() != body:
        raise NonCanonicalEntryError("entry body is not in RFC 8785 canonical form")
    return entry


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        obj = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except UnicodeDecodeError as exc:
        raise EntryError("entry body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise EntryError(f"entry body is not JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise EntryError("entry body nests too deeply") from exc
    if not isinstance(obj, dict):
        raise EntryError("entry body must be a JSON object")
    return obj


def _check_fields(obj: Mapping[str, Any]) -> None:
    """Every required field, no unknown one, and no optional one as null."""
    keys = set(obj)
    if missing := _REQUIRED - keys:
        raise EntryError(f"missing fields {sorted(missing)}")
    if unknown := keys - _REQUIRED - _OPTIONAL:
        raise EntryError(f"unknown fields {sorted(unknown)}")
    for key in _OPTIONAL:
        if key in obj and obj[key] is None:
            raise EntryError(f"{key} must be omitted rather than null")


def _check_types(obj: Mapping[str, Any]) -> tuple[int, EntryType]:
    """The types of the required fields; returns the version and the entry type."""
    v = obj["v"]
    if type(v) is not int:
        raise EntryError("v must be an integer")
    try:
        entry_type = EntryType(obj["type"])
    except ValueError as exc:
        raise EntryError(f"unknown entry type {obj['type']!r}") from exc
    for key in ("log", "actor", "occurred_at", "logged_at"):
        if not isinstance(obj[key], str):
            raise EntryError(f"{key} must be a string")
    if not isinstance(obj["data"], dict):
        raise EntryError("data must be an object")
    return v, entry_type


def _recipients(obj: Mapping[str, Any]) -> str | tuple[str, ...] | None:
    to = obj.get("to")
    if isinstance(to, list):
        if not all(isinstance(t, str) for t in to):
            raise EntryError("to must be a string or a list of strings")
        return tuple(to)
    return _str_field(obj, "to")


def _prev(raw: object) -> PrevRef:
    if (
        not isinstance(raw, dict)
        or set(raw) != {"seq", "leaf"}
        or type(raw["seq"]) is not int
        or not isinstance(raw["leaf"], str)
    ):
        raise EntryError("prev must be {seq: integer, leaf: base64}")
    try:
        leaf = base64.b64decode(raw["leaf"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EntryError("prev.leaf is not base64") from exc
    return PrevRef(raw["seq"], leaf)
