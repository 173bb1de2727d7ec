"""PDF hex strings (``<…>``) read by bytes methods, where pyHanko reads them a byte at a time.

A PDF signature's CMS blob sits in a hex string (its ``/Contents``), several KiB to tens of KiB
of hex digits; pyHanko's reader takes them one byte and three Python calls at a time, about 85 %
of a reading of a signed one-page PDF (docs/perf, "One parse per PDF"). :func:`read_hex_string`
takes the place of pyHanko's function (:func:`install`) and gives what it gives: it decodes only
a string it can read exactly as pyHanko would, digits and PDF whitespace up to the first ``>``;
anything else (a comment inside, a byte that is neither, no ``>`` before the end of the file) is
read by pyHanko's own function from the same position, which then reads or refuses it as it
always did. tests/unit/trust/test_pdf_hex.py holds the two to the same answers.
"""

from __future__ import annotations

import binascii
import io
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_WHITESPACE

# pyHanko's own reader of a hex string: what anything unusual is left to.
PYHANKO_READ_HEX_STRING = generic.read_hex_string_from_stream
_HEX_DIGITS = b"0123456789abcdefABCDEF"
# Read ahead in growing pieces: most hex strings are short (a trailer's /ID), a few long.
_FIRST_PIECE = 1024


def read_hex_string(stream: Any) -> generic.ByteStringObject | generic.TextStringObject:
    """The hex string at the stream's position (its ``<``), the stream left after its ``>``."""
    start = stream.tell()
    stream.read(1)  # the "<"
    pieces: list[bytes] = []
    size = _FIRST_PIECE
    while True:
        piece = stream.read(size)
        end = piece.find(b">")
        if end >= 0:
            pieces.append(piece[:end])
            break
        if not piece:
            return _pyhanko(stream, start)  # no ">" before the end: pyHanko says so
        pieces.append(piece)
        size *= 2
    body = b"".join(pieces)
    digits = body.translate(None, PDF_WHITESPACE)
    if digits.translate(None, _HEX_DIGITS):
        return _pyhanko(stream, start)  # a comment ("%" to the end of its line), or a bad byte
    stream.seek(start + 1 + len(body) + 1)
    odd = len(digits) % 2
    return generic.pdf_string(binascii.unhexlify(digits + b"0" * odd))


def _pyhanko(stream: Any, start: int) -> generic.ByteStringObject | generic.TextStringObject:
    stream.seek(start, io.SEEK_SET)
    result: generic.ByteStringObject | generic.TextStringObject = PYHANKO_READ_HEX_STRING(stream)
    return result


def install() -> None:
    """pyHanko's reader reads hex strings with :func:`read_hex_string` from now on (its
    ``read_object`` looks the function up in its module at each call)."""
    generic.read_hex_string_from_stream = read_hex_string
