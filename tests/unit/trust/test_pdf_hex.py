"""PDF hex strings read by docaxis's reader give what pyHanko's own gives: the same string of the
same kind, the same refusal, the stream left at the same place."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic

from docaxis_client.trust import pdf  # noqa: F401 - installs the reader, as every verifier does
from docaxis_client.trust.pdf_hex import PYHANKO_READ_HEX_STRING, read_hex_string

# What a hex string's body can hold, well formed or not: digits, PDF whitespace, a comment (to
# the end of its line, which may hold a ">"), bytes pyHanko refuses.
_PIECES = st.one_of(
    st.sampled_from([b"0", b"9", b"a", b"F", b"e", b"00" * 700, b"3082" * 300]),
    st.sampled_from([b" ", b"\n", b"\r\n", b"\t", b"\f", b"\x00"]),
    st.sampled_from([b"%a comment\n", b"%> in a comment\r", b"%"]),
    st.sampled_from([b"g", b"<", b"(", b"\x80", b"/", b"Z"]),
)
_TAILS = st.sampled_from([b">", b"> /Filter /X", b">>", b"", b"\n>", b"%x>\n>"])


def _read(reader: object, data: bytes) -> tuple[object, ...]:
    stream = io.BytesIO(data)
    try:
        result = reader(stream)  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - the refusal is what is compared
        return ("refused", type(exc), str(exc), stream.tell())
    return ("read", type(result), result, result.original_bytes, stream.tell())


@settings(database=None, max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12), _TAILS, st.binary(max_size=8))
def test_a_hex_string_reads_as_pyhankos_reader_reads_it(
    pieces: list[bytes], tail: bytes, after: bytes
) -> None:
    data = b"<" + b"".join(pieces) + tail + after

    assert _read(read_hex_string, data) == _read(PYHANKO_READ_HEX_STRING, data)


def test_pyhankos_reader_reads_hex_strings_with_docaxis_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installed on import of the PDF module, and called by pyHanko's object reader (which
    looks it up by name at each call): a signature's /Contents read without a Python call per
    byte."""
    assert generic.read_hex_string_from_stream is read_hex_string
    calls: list[int] = []

    def counted(stream: io.BytesIO) -> object:
        calls.append(stream.tell())
        return read_hex_string(stream)

    monkeypatch.setattr(generic, "read_hex_string_from_stream", counted)
    whole = generic.read_object(io.BytesIO(b"<48656c6c6f> rest"), generic.TrailerReference(None))

    assert calls == [0]
    assert isinstance(whole, generic.TextStringObject)
    assert str(whole) == "Hello"
