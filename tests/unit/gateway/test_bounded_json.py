"""The bounded JSON decoder: depth measured without recursion, brackets in strings ignored."""

from __future__ import annotations

import pytest

from gateway.bounded_json import JsonError, loads, nested_within


@pytest.mark.parametrize(
    ("text", "within"),
    [
        ("1", True),
        ("", True),
        ("[" * 32 + "]" * 32, True),
        ("[" * 33 + "]" * 33, False),
        ('{"a":' * 32 + "1" + "}" * 32, True),
        ('{"a":' * 33 + "1" + "}" * 33, False),
        ("[{" * 16 + "}]" * 16, True),
        ("[{" * 16 + "[]" + "}]" * 16, False),
        # Brackets inside strings, escaped quotes and backslashes are not nesting.
        ('["' + "[" * 100 + '"]', True),
        ('["\\"' + "[" * 100 + '"]', True),
        ('["\\\\", ' + "[" * 40 + "]" * 40 + "]", False),
        # Unbalanced: no valid JSON is either.
        ("[" * 100_000, False),
        ("[}", False),
    ],
)
def test_nesting_is_measured_without_recursion(text: str, within: bool) -> None:
    assert nested_within(text, 32) is within


def test_loads_refuses_deep_or_malformed_json_with_one_error() -> None:
    assert loads(b'{"a": [1, {"b": "]]]"}]}') == {"a": [1, {"b": "]]]"}]}
    for bad in (b"[" * 100_000, b'{"a":' * 100_000, b"not json", b"\xff[]"):
        with pytest.raises(JsonError):
            loads(bad)
