"""Attachment payloads: zip then base64 on the way out; bounded base64 and unzip on the way in."""

from __future__ import annotations

import binascii
import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, NoReturn

from gateway.edxml.errors import EdxmlSizeLimitError
from gateway.edxml.report import Issue, IssueCode, Severity

ZIP_MAGIC: Final = b"PK\x03\x04"
_WHITESPACE: Final = {ord(c): None for c in " \t\r\n"}
# Fixed metadata so the same attachment always zips to the same bytes (deterministic output).
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_UNIX: Final = 3
_MODE: Final = 0o100644 << 16
_READ_CHUNK: Final = 64 * 1024
# Multiple of 3, so chunk encodings concatenate without inner padding.
_ENCODE_CHUNK: Final = 3 * 16 * 1024
# Only these: zipfile bounds the output of each read for them, while its bzip2 and LZMA paths
# decompress a whole compressed read at once, which a bomb turns into a huge allocation.
_BOUNDED_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})


class Base64Sink:
    """Decodes base64 text as the parser hands it over, so a payload is never held as text."""

    def __init__(self) -> None:
        self._pending = ""
        self._out = bytearray()
        self.error: str | None = None
        self.seen = False

    def feed(self, text: str) -> None:
        if self.error is not None:
            return
        data = self._pending + text.translate(_WHITESPACE)
        if data:
            self.seen = True
        cut = len(data) - len(data) % 4
        self._pending = data[cut:]
        if cut:
            self._decode(data[:cut])

    def _decode(self, chunk: str) -> None:
        try:
            self._out += binascii.a2b_base64(chunk, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            self.error = str(exc)

    def finish(self) -> bytes:
        """The decoded bytes; padding some encoders omit is restored."""
        if self.error is None and self._pending:
            if len(self._pending) % 4 == 1:
                self.error = "truncated base64 data"
            else:
                self._decode(self._pending + "=" * (-len(self._pending) % 4))
            self._pending = ""
        return bytes(self._out)


@dataclass(frozen=True, slots=True)
class Unpacked:
    data: bytes
    # The entry's name inside the zip; "" when the payload was not zipped.
    archive_name: str
    zipped: bool


class PayloadError(Exception):
    """An unusable payload: reported against the attachment, not raised to the caller."""

    def __init__(self, code: IssueCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def unpack(payload: bytes, *, max_bytes: int, path: str) -> Unpacked:
    """A zip with one file (the strict form) or, leniently, the file itself.

    Decompression is streamed and stops as soon as `max_bytes` is passed: the sizes a zip declares
    are not trusted, so a bomb costs at most `max_bytes` plus one read.
    """
    if not payload.startswith(ZIP_MAGIC):
        if len(payload) > max_bytes:
            _too_large(path, max_bytes)
        return Unpacked(payload, "", zipped=False)
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir()]
            if len(entries) != 1:
                raise PayloadError(
                    IssueCode.ATTACHMENT_ZIP_ENTRIES,
                    f"the zip holds {len(entries)} files; an attachment zips exactly one",
                )
            entry = entries[0]
            if entry.compress_type not in _BOUNDED_METHODS:
                raise PayloadError(
                    IssueCode.ATTACHMENT_ZIP_INVALID,
                    f"compression method {entry.compress_type} is not accepted (stored or deflate)",
                )
            if entry.flag_bits & 0x1:
                raise PayloadError(IssueCode.ATTACHMENT_ZIP_INVALID, "the zip entry is encrypted")
            out = bytearray()
            with archive.open(entry) as stream:
                while chunk := stream.read(_READ_CHUNK):
                    if len(out) + len(chunk) > max_bytes:
                        _too_large(path, max_bytes)
                    out += chunk
            return Unpacked(bytes(out), entry.filename, zipped=True)
    # A crafted central directory makes zipfile seek before the start (ValueError) and a corrupt
    # deflate stream fails in zlib: both found by tests/fuzz.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        EOFError,
        ValueError,
        zlib.error,
    ) as exc:
        raise PayloadError(IssueCode.ATTACHMENT_ZIP_INVALID, f"not a usable zip: {exc}") from exc


def _too_large(path: str, max_bytes: int) -> NoReturn:
    raise EdxmlSizeLimitError(
        (
            Issue(
                IssueCode.ATTACHMENT_TOO_LARGE,
                path,
                Severity.ERROR,
                f"the attachment decompresses to more than {max_bytes} bytes",
            ),
        ),
        limit=max_bytes,
    )


def zip_single(name: str, data: bytes) -> bytes:
    """`data` as the only entry of a zip, byte-identical for identical input."""
    info = zipfile.ZipInfo(name or "attachment", date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _UNIX
    info.external_attr = _MODE
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data, compresslevel=6)
    return buffer.getvalue()


def base64_chunks(data: bytes) -> Iterator[bytes]:
    """Base64 of `data` on one line (as the official sample), in pieces for streaming."""
    view = memoryview(data)
    for offset in range(0, len(view), _ENCODE_CHUNK):
        yield binascii.b2a_base64(view[offset : offset + _ENCODE_CHUNK], newline=False)
