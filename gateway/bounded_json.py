"""JSON from the network, with its nesting bounded before it is parsed.

Python's json module recurses once per level of nesting: `[` x 100,000 raises RecursionError
deep inside the parser. The nesting is checked first, without recursion and at C speed: strings
are removed, then everything but brackets, then innermost `[]` and `{}` pairs, one level per
pass; brackets left after `max_depth` passes are too deep (or do not match, which no valid JSON
does either), and the text is refused as malformed input like any other.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The proto3 JSON of the API's messages is nested a few levels deep; 32 is far beyond any of it.
MAX_JSON_DEPTH = 32

# A JSON string as the JSON grammar lexes it; the brackets inside strings are not nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonError(ValueError):
    """The text is not JSON, is not UTF-8, or is nested deeper than allowed."""


def nested_within(text: str, max_depth: int) -> bool:
    """Whether `text` nests arrays and objects at most `max_depth` levels deep, with matching
    brackets (as valid JSON does)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if re.search(f"[\\[{{]{{{max_depth + 1}}}", brackets):
        return False  # that many openers in a row: deep without counting
    for _ in range(max_depth):
        if not brackets:
            return True
        inner = brackets.replace("[]", "").replace("{}", "")
        if len(inner) == len(brackets):
            return False  # nothing matches
        brackets = inner
    return not brackets


def loads(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The value of the JSON text `raw` (UTF-8 when bytes, as RFC 8259 requires between
    systems), or JsonError."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if not nested_within(text, max_depth):
        raise JsonError(f"nested more than {max_depth} levels deep, or its brackets do not match")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JsonError(str(exc)) from None
