"""RFC 8785 canonical JSON with NFC-normalised strings, and the UTC timestamp format."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from docaxis_client import jcs

JsonValue: TypeAlias = str | int | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None

# Every signed payload names its purpose, so a signature made for one kind of object can never
# be replayed as a signature over another kind that happens to share the same field names.
DOCUMENT_SIGNATURE_PURPOSE = "docaxis/document-signature"
TRANSPORT_RECEIPT_PURPOSE = "docaxis/transport-receipt"


def nfc(value: str) -> str:
    """Vietnamese text arrives both precomposed and decomposed; hashes must not care."""
    return unicodedata.normalize("NFC", value)


def _normalise(value: JsonValue) -> JsonValue:
    # The exact built-in types first, without a call or an ABC's isinstance (a signed payload
    # and a transport receipt are flat dicts of strings: docs/perf/README.md, "The
    # acknowledgement path per copy"); anything else as before.
    kind = type(value)
    if kind is str:
        return unicodedata.normalize("NFC", value)  # type: ignore[arg-type]
    if kind is dict:
        return {
            unicodedata.normalize("NFC", key): _normalise(item)
            for key, item in value.items()  # type: ignore[union-attr]
        }
    if kind is int or kind is bool or value is None:
        return value
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, Mapping):
        return {nfc(key): _normalise(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_normalise(item) for item in value]
    return value


def canonical_json(value: Mapping[str, JsonValue]) -> bytes:
    """RFC 8785 bytes of ``value`` after NFC-normalising every key and string (through Python's
    json where that is exact: docaxis_client/jcs.py)."""
    return jcs.dumps(_normalise(value))


def format_utc(moment: dt.datetime) -> str:
    """``2025-07-01T02:03:04Z``: whole seconds, so the signed text and the value agree."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    if moment.microsecond:
        raise ValueError("timestamp must be whole seconds")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> dt.datetime:
    """Inverse of :func:`format_utc`; refuses any other shape."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def utc_now() -> dt.datetime:
    """Current time truncated to whole seconds (what signatures carry)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
