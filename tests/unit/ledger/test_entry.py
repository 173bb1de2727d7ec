"""Ledger entry bodies: RFC 8785 bytes, the closed schema, strict re-encoding on parse."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from docaxis_client.ledger.entry import (
    MAX_BODY_SIZE,
    EntryError,
    EntryTooLargeError,
    EntryType,
    JSONValue,
    NonCanonicalEntryError,
    PrevRef,
    canonical_json,
    format_timestamp,
    parse_entry,
)
from docaxis_client.ledger.merkle import hash_leaf
from tests.unit.ledger.synthetic import T0, doc_id, make_entry

ENTRY = make_entry(41, doc_id(1), PrevRef(40, hash_leaf(b"previous")))
BODY = ENTRY.encode()


def _json(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value


def test_an_entry_encodes_as_rfc_8785_with_the_documented_field_names() -> None:
    """Sorted keys, no whitespace, `from` on the wire, prev as {seq, leaf base64}."""
    obj = _json(BODY)
    assert rfc8785.dumps(obj) == BODY
    assert list(obj) == sorted(obj)
    assert set(obj) == {
        "v", "log", "type", "doc", "document_id", "doc_sha256", "from", "to", "actor",
        "occurred_at", "logged_at", "prev", "data",
    }  # fmt: skip
    leaf = base64.b64encode(hash_leaf(b"previous")).decode()
    assert obj["prev"] == {"seq": 40, "leaf": leaf}
    assert obj["logged_at"] == "2025-03-01T08:00:05.617000Z"
    assert ENTRY.leaf_hash() == hash_leaf(BODY)


def test_parsing_a_canonical_body_gives_back_the_same_entry() -> None:
    """parse_entry(encode(e)) == e, and bodies without document fields work too."""
    assert parse_entry(BODY) == ENTRY
    directory = make_entry(4, None, None)
    assert parse_entry(directory.encode()) == directory
    multi = dataclasses.replace(ENTRY, to=("000.00.00.H45", "000.00.00.H46"))
    assert parse_entry(multi.encode()).to == ("000.00.00.H45", "000.00.00.H46")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b'","', b'", "', 1),  # whitespace
        lambda b: b + b"\n",
        lambda b: b.replace(b'"actor":"exchange-01",', b""),  # a required field dropped
        lambda b: b.replace(b'"note":"synthetic"', b'"note":"synth\\u0065tic"'),  # escape
        lambda b: b.replace(b'"n":41', b'"n":41.0'),  # float spelling of an int
        lambda b: b.replace(b'{"actor"', b'{"v":1,"actor"', 1),  # duplicate key
    ],
)
def test_bodies_that_are_not_exactly_canonical_are_refused(
    mangle: Callable[[bytes], bytes],
) -> None:
    """Any byte-level deviation from the canonical form fails, even with equal JSON meaning."""
    with pytest.raises(EntryError):
        parse_entry(mangle(BODY))


def test_a_reordered_body_is_reported_as_non_canonical() -> None:
    """Valid entry, keys out of order: the specific NonCanonicalEntryError."""
    obj = _json(BODY)
    reordered = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode()
    with pytest.raises(NonCanonicalEntryError):
        parse_entry(reordered)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "gossip"}, "unknown entry type"),
        ({"v": 2}, "version"),
        ({"v": True}, "integer"),
        ({"surprise": 1}, "unknown fields"),
        ({"to": None}, "omitted"),
        ({"doc": "6F1C0F0E-7D7E-4E43-9A53-3D1C8C6F6A11"}, "UUID"),
        ({"doc_sha256": "AB" * 32}, "hex"),
        ({"logged_at": "2025-03-01T08:00:05Z"}, "timestamp"),
        ({"logged_at": "2025-02-30T08:00:05.000000Z"}, "real instant"),
        ({"prev": {"seq": 1}}, "prev"),
        ({"prev": {"seq": 1, "leaf": "AAAA"}}, "32-byte"),
        ({"data": [1]}, "object"),
        ({"data": {"big": 2**53}}, "canonical"),
        ({"log": ""}, "non-empty"),
    ],
)
def test_schema_violations_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    """The schema is closed: unknown types and fields, nulls, malformed ids all fail."""
    obj = {**_json(BODY), **change}
    with pytest.raises(EntryError, match=message):
        parse_entry(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def test_the_entry_types_form_a_closed_set() -> None:
    """The StrEnum lists exactly the designed entry types."""
    assert {str(t) for t in EntryType} == {
        "submission", "verification", "routing", "delivery", "receipt", "status", "revoke",
        "update", "replace", "directory", "key", "checkpoint_key_rotation",
    }  # fmt: skip


def test_document_entries_need_a_doc_and_others_must_not_have_one() -> None:
    """A delivery without doc, or a key change with a prev chain, is refused."""
    with pytest.raises(EntryError, match="needs doc"):
        dataclasses.replace(ENTRY, doc=None, prev=None).encode()
    with pytest.raises(EntryError, match="document fields"):
        dataclasses.replace(ENTRY, type=EntryType.KEY).encode()


def test_bodies_over_65535_bytes_are_refused_both_ways() -> None:
    """The uint16 bundle framing bounds a body; encode and parse both enforce it."""
    big = dataclasses.replace(ENTRY, data={"pad": "x" * MAX_BODY_SIZE})
    with pytest.raises(EntryTooLargeError):
        big.encode()
    with pytest.raises(EntryTooLargeError):
        parse_entry(b" " * (MAX_BODY_SIZE + 1))
    fits = dataclasses.replace(ENTRY, data={"pad": "x" * (MAX_BODY_SIZE - len(BODY))})
    assert len(fits.encode()) <= MAX_BODY_SIZE


def test_timestamps_are_normalised_to_utc_microseconds() -> None:
    """Any aware datetime encodes as UTC with six fractional digits; naive ones are refused."""
    plus7 = dt.datetime(2025, 3, 1, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    assert format_timestamp(plus7) == "2025-03-01T08:00:00.000000Z"
    assert format_timestamp(T0.replace(microsecond=5)) == "2025-03-01T08:00:00.000005Z"
    with pytest.raises(EntryError):
        format_timestamp(dt.datetime(2025, 3, 1))  # naive: the case under test


json_values: st.SearchStrategy[JSONValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(database=None, deadline=None, max_examples=300)
@given(json_values)
def test_the_fast_canonical_encoder_matches_the_rfc8785_package(value: JSONValue) -> None:
    """canonical_json is byte-identical to rfc8785.dumps (floats and astral keys included)."""
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [{"\U0001f600": 1, "\ufb01": 2}, {"n": 1e21}, {"n": 2**53}, {"s": "\ud800"}],
)
def test_canonical_json_falls_back_where_python_json_would_differ(value: JSONValue) -> None:
    """Astral keys sort by UTF-16; ES6 floats; out-of-range ints and lone surrogates fail."""
    try:
        want = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(EntryError):
            canonical_json(value)
    else:
        assert canonical_json(value) == want
