"""Structure-aware mutations of real inputs: what a broken DMS or a hostile sender would send.

Random bytes alone rarely get past the first check of a parser; mutating real packages,
certificates and PDFs keeps most of the structure and so reaches the code behind it. Every
mutation is drawn through hypothesis, so failing inputs shrink to a short list of edits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from hypothesis import strategies as st

# Values that break parsers more often than random ones do.
INTERESTING: Final[tuple[bytes, ...]] = (
    b"",
    b"0",
    b"-1",
    b"99999999999999999999999",
    b"\x00",
    b"\x1b[2J",
    "\u202e".encode(),
    "Sở Tài chính".encode(),
    b"\xff\xfe",
    b"\xc3\x28",
    b"../../etc/passwd",
    b"2025-02-30",
    b"9999-12-31T23:59:59Z",
    b"0000-00-00",
    b"&amp;",
    b"&lt;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[]]>",
    b"<!---->",
    b"<?pi?>",
    b"\r\n",
    b"A" * 4096,
    b"true",
    b"null",
    b"[]",
    b"{}",
    b'"',
    b"NaN",
    b"1e999",
)

_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:-]*)(?:\s[^<>]*)?>")
_TEXT = re.compile(rb">([^<]+)<")
_ATTRIBUTE = re.compile(rb"=\"([^\"]*)\"")


def _position(draw: st.DrawFn, data: bytearray) -> int:
    return draw(st.integers(0, len(data)))


def _span(draw: st.DrawFn, data: bytearray) -> tuple[int, int]:
    start = _position(draw, data)
    return start, min(len(data), start + draw(st.integers(0, 64)))


def _chunk(draw: st.DrawFn) -> bytes:
    return draw(st.sampled_from(INTERESTING) | st.binary(max_size=16))


def _flip(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return data


def _delete(draw: st.DrawFn, data: bytearray) -> bytearray:
    start, end = _span(draw, data)
    del data[start:end]
    return data


def _insert(draw: st.DrawFn, data: bytearray) -> bytearray:
    at = _position(draw, data)
    data[at:at] = _chunk(draw)
    return data


def _duplicate(draw: st.DrawFn, data: bytearray) -> bytearray:
    start, end = _span(draw, data)
    at = _position(draw, data)
    data[at:at] = data[start:end]
    return data


def _truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data[: _position(draw, data)]


BYTE_EDITS: Final = (_flip, _delete, _insert, _duplicate, _truncate)


def _pick(draw: st.DrawFn, pattern: re.Pattern[bytes], data: bytearray) -> re.Match[bytes] | None:
    found = list(pattern.finditer(data))
    return draw(st.sampled_from(found)) if found else None


def _element_span(data: bytearray, opening: re.Match[bytes]) -> tuple[int, int]:
    """The element that `opening` starts, up to its first closing tag (or the opening alone)."""
    close = data.find(b"</" + opening.group(1) + b">", opening.end())
    return opening.start(), (close + len(opening.group(1)) + 3 if close >= 0 else opening.end())


def _replace_text(draw: st.DrawFn, data: bytearray) -> bytearray:
    found = _pick(draw, _TEXT, data)
    if found is not None:
        text = st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass"))
        data[found.start(1) : found.end(1)] = draw(st.sampled_from(INTERESTING) | text)
    return data


def _replace_attribute(draw: st.DrawFn, data: bytearray) -> bytearray:
    found = _pick(draw, _ATTRIBUTE, data)
    if found is not None:
        data[found.start(1) : found.end(1)] = _chunk(draw)
    return data


def _drop_element(draw: st.DrawFn, data: bytearray) -> bytearray:
    found = _pick(draw, _ELEMENT, data)
    if found is not None:
        start, end = _element_span(data, found)
        del data[start:end]
    return data


def _repeat_element(draw: st.DrawFn, data: bytearray) -> bytearray:
    found = _pick(draw, _ELEMENT, data)
    if found is not None:
        start, end = _element_span(data, found)
        data[end:end] = data[start:end] * draw(st.integers(1, 3))
    return data


def _move_element(draw: st.DrawFn, data: bytearray) -> bytearray:
    found = _pick(draw, _ELEMENT, data)
    if found is not None:
        start, end = _element_span(data, found)
        element = bytes(data[start:end])
        del data[start:end]
        target = _pick(draw, _ELEMENT, data)
        at = target.end() if target is not None else 0
        data[at:at] = element
    return data


XML_EDITS: Final = (
    *BYTE_EDITS,
    _replace_text,
    _replace_text,
    _replace_attribute,
    _drop_element,
    _repeat_element,
    _move_element,
)


def mutated(
    seeds: Sequence[bytes],
    edits: Sequence[Callable[[st.DrawFn, bytearray], bytearray]] = BYTE_EDITS,
    *,
    max_edits: int = 6,
) -> st.SearchStrategy[bytes]:
    """A seed with up to `max_edits` edits, or (rarely) bytes of no structure at all."""

    @st.composite
    def _mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(list(seeds))))
        for _ in range(draw(st.integers(0, max_edits))):
            data = draw(st.sampled_from(list(edits)))(draw, data)
        return bytes(data)

    return _mutated() | st.binary(max_size=256)
