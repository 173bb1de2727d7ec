"""The signed bytes (manifests, signed payloads, receipts): RFC 8785 of the NFC-normalised value,
the same bytes whether Python's json or the rfc8785 package writes them (docaxis_client/jcs.py)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from docaxis_client import jcs
from docaxis_client.trust.canonical import JsonValue, canonical_json


def _nfc(value: object) -> object:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        return {_nfc(key): _nfc(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_nfc(item) for item in value]
    return value


# Vietnamese both ways (the NFC step), astral characters (JCS orders keys by UTF-16), control
# characters and quotes (escapes), integers at and past the safe range, floats (ES6 formatting).
_TEXT = st.text(
    alphabet=st.sampled_from('aZ09 ,/:"\\\n\t\x01\x7f\u00e9e\u0301\u1ec7\ufb01\U0001f600\u2028')
    | st.characters(),
    max_size=8,
)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.sampled_from([2**53 - 1, -(2**53) + 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(database=None, deadline=None, max_examples=400)
@given(st.dictionaries(_TEXT, _VALUES, max_size=5))
def test_the_signed_bytes_are_rfc8785_of_the_normalised_value(value: dict[str, JsonValue]) -> None:
    try:
        want = rfc8785.dumps(_nfc(value))  # type: ignore[arg-type]
    except ValueError as refused:  # the package's own errors, and a lone surrogate's
        with pytest.raises(type(refused)):
            canonical_json(value)
    else:
        assert canonical_json(value) == want


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\ufb01": 2},  # UTF-16 order differs from code-point order
        {"n": 1e21},
        {"n": 0.1},
        {"s": "e\u0301", "e\u0301": ["\u1ec7", ("x", 1)]},
    ],
)
def test_what_pythons_json_would_write_otherwise_is_written_as_rfc8785_does(
    value: dict[str, JsonValue],
) -> None:
    assert canonical_json(value) == rfc8785.dumps(_nfc(value))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"n": 2**53}, rfc8785.CanonicalizationError),
        ({"s": "\ud800"}, rfc8785.CanonicalizationError),
        ({"\ud800": 1, "k": 2}, UnicodeEncodeError),
        ({"when": object()}, rfc8785.CanonicalizationError),
    ],
)
def test_what_has_no_rfc8785_form_is_refused_as_before(
    value: dict[str, JsonValue], error: type[Exception]
) -> None:
    with pytest.raises(error):
        canonical_json(value)


def test_the_fast_path_writes_through_the_c_encoder_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's `JSONEncoder.encode` and `iterencode` are two frames and a closure around the C
    encoder they build: the fast path builds that encoder itself (the ledger's 13 entries a
    document and every signed payload go through it)."""

    def python_frames(*args: object, **kwargs: object) -> str:
        raise AssertionError("went through JSONEncoder's Python methods")

    monkeypatch.setattr(json.JSONEncoder, "encode", python_frames)
    monkeypatch.setattr(json.JSONEncoder, "iterencode", python_frames)
    value: dict[str, JsonValue] = {"b": [1, "x\u1ec7\n"], "a": {"z": None, "y": True}}
    assert jcs.dumps(value) == rfc8785.dumps(value)
