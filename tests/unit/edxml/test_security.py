"""Hostile input: DTDs, entities, zip bombs and oversized packages fail cleanly and early."""

from __future__ import annotations

import base64
import io
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Final

import pytest

from gateway.edxml import (
    EdxmlSizeLimitError,
    IssueCode,
    MalformedXmlError,
    ReaderLimits,
    UnsafeXmlError,
    read_document,
    read_edxml,
)
from tests.unit.edxml.builders import NOW, PDF, STRICT, with_payload, zip_bytes, zip_of_zeros

_SECRET: Final = "edxml-xxe-secret.txt"
_opened: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    # Audit hooks cannot be removed; this one only notes opens of the test's secret file.
    if event == "open" and args and _SECRET in str(args[0]):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)

_BILLION_LAUGHS: Final = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><Subject>&lol9;</Subject></edXML>
"""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / _SECRET
    path.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    _opened.clear()
    return path


def _with_doctype(sample: bytes, doctype: bytes, subject: bytes) -> bytes:
    declaration, rest = sample.split(b"\n", 1)
    rest = rest.replace(b"<edXML:Subject>V", b"<edXML:Subject>" + subject + b"V", 1)
    return declaration + b"\n" + doctype + b"\n" + rest


@pytest.mark.parametrize(
    ("doctype", "subject"),
    [
        (b'<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file://{path}">]>', b"&xxe;"),
        (b'<!DOCTYPE edXML [<!ENTITY % p SYSTEM "file://{path}"> %p;]>', b""),
        (b'<!DOCTYPE edXML SYSTEM "file://{path}">', b""),
        (b'<!DOCTYPE edXML PUBLIC "-//X//Y" "{path}">', b""),
    ],
    ids=["external-entity", "parameter-entity", "external-dtd", "public-dtd"],
)
def test_xxe_is_refused_and_no_file_is_read(
    doctype: bytes, subject: bytes, secret: Path, samples: dict[str, bytes]
) -> None:
    """Each XXE form fails with a typed VALIDATION error; the file is never opened."""
    xml = _with_doctype(samples[STRICT], doctype.replace(b"{path}", str(secret).encode()), subject)
    with pytest.raises(UnsafeXmlError) as caught:
        read_edxml(xml, now=NOW)
    assert caught.value.reason == "VALIDATION"
    assert [issue.code for issue in caught.value.issues] == [IssueCode.XML_FORBIDDEN]
    assert "TOP-SECRET" not in str(caught.value)
    assert _opened == []


def test_the_billion_laughs_are_refused_at_once() -> None:
    """Nested entity expansion never starts: the DOCTYPE itself is refused."""
    started = time.perf_counter()
    with pytest.raises(UnsafeXmlError) as caught:
        read_edxml(_BILLION_LAUGHS, now=NOW)
    assert time.perf_counter() - started < 1.0
    assert "DTD" in caught.value.issues[0].message


def test_an_empty_internal_dtd_is_refused_too(samples: dict[str, bytes]) -> None:
    """edXML never needs a DTD, so any DOCTYPE is refused."""
    with pytest.raises(UnsafeXmlError):
        read_edxml(_with_doctype(samples[STRICT], b"<!DOCTYPE edXML>", b""), now=NOW)


def test_an_undeclared_entity_reference_is_malformed(samples: dict[str, bytes]) -> None:
    """Without a DTD only the predefined entities exist."""
    xml = samples[STRICT].replace(b"<edXML:Subject>V", b"<edXML:Subject>&xxe;V", 1)
    with pytest.raises(MalformedXmlError):
        read_edxml(xml, now=NOW)


def test_a_zip_bomb_fails_without_decompressing_it_all(samples: dict[str, bytes]) -> None:
    """A ~64 KiB zip that expands to 64 MiB stops at the 1 MiB bound, with little memory used."""
    bomb = zip_of_zeros(64 * 1024 * 1024)
    assert len(bomb) < 256 * 1024
    xml = with_payload(samples[STRICT], base64.b64encode(bomb))
    limits = ReaderLimits(max_attachment_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(EdxmlSizeLimitError) as caught:
            read_edxml(xml, limits=limits, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "SIZE_LIMIT_EXCEEDED"
    assert caught.value.limit == 1024 * 1024
    (issue,) = caught.value.issues
    assert (issue.code, issue.path) == (
        IssueCode.ATTACHMENT_TOO_LARGE,
        "AttachmentEncoded/Attachment[1]/ContentTransferEncoded",
    )
    assert peak < 8 * 1024 * 1024


def test_the_total_decompressed_size_is_bounded(samples: dict[str, bytes]) -> None:
    """Attachments each under the per-file bound still fail together past the total bound."""
    payload = base64.b64encode(zip_bytes({"a.pdf": bytes(600 * 1024)}))
    xml = with_payload(samples[STRICT], payload)
    attachment = xml[xml.index(b"<Attachment>") : xml.index(b"</Attachment>") + 13]
    xml = xml.replace(attachment, attachment + attachment.replace(b">1<", b">2<", 1))
    limits = ReaderLimits(max_attachment_bytes=1024 * 1024, max_total_attachment_bytes=1024 * 1024)
    with pytest.raises(EdxmlSizeLimitError) as caught:
        read_edxml(xml, limits=limits, now=NOW)
    assert caught.value.issues[0].code is IssueCode.ATTACHMENTS_TOO_LARGE


def test_a_zip_that_lies_about_its_size_is_invalid(samples: dict[str, bytes]) -> None:
    """Declared sizes are not trusted: a header claiming 10 bytes for 100 KiB fails the CRC."""
    archive = bytearray(zip_bytes({"a.pdf": PDF * 100}))
    local = archive.index(b"PK\x03\x04")
    central = archive.index(b"PK\x01\x02")
    archive[local + 22 : local + 26] = (10).to_bytes(4, "little")
    archive[central + 24 : central + 28] = (10).to_bytes(4, "little")
    result = read_document(with_payload(samples[STRICT], base64.b64encode(archive)), now=NOW)
    assert [i.code for i in result.report.errors] == [IssueCode.ATTACHMENT_ZIP_INVALID]


def test_bzip2_and_lzma_entries_are_refused(samples: dict[str, bytes]) -> None:
    """Only stored and deflate entries are decompressed in bounded steps, so only they pass."""
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        payload = base64.b64encode(zip_bytes({"a.pdf": PDF}, method))
        result = read_document(with_payload(samples[STRICT], payload), now=NOW)
        assert [i.code for i in result.report.errors] == [IssueCode.ATTACHMENT_ZIP_INVALID]


def test_an_oversized_package_is_refused_before_parsing(samples: dict[str, bytes]) -> None:
    """Bytes past the XML bound fail with SIZE_LIMIT_EXCEEDED."""
    limits = ReaderLimits(max_xml_bytes=1000)
    with pytest.raises(EdxmlSizeLimitError) as caught:
        read_edxml(samples[STRICT], limits=limits, now=NOW)
    assert caught.value.issues[0].code is IssueCode.XML_TOO_LARGE


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_a_stream_is_read_no_further_than_the_bound() -> None:
    """An endless upload is cut one byte past the bound."""
    stream = _CountingStream(b"<edXML>" + b" " * 10_000_000)
    with pytest.raises(EdxmlSizeLimitError):
        read_edxml(stream, limits=ReaderLimits(max_xml_bytes=4096), now=NOW)
    assert stream.consumed == 4097


def test_a_stream_within_the_bound_reads_like_bytes(samples: dict[str, bytes]) -> None:
    """Reading from a file object gives the same result as from bytes."""
    from_stream = read_edxml(io.BytesIO(samples[STRICT]), now=NOW)
    assert from_stream == read_edxml(samples[STRICT], now=NOW)


def test_the_number_of_attachments_is_bounded(samples: dict[str, bytes]) -> None:
    """More attachments than allowed fail before any is unzipped."""
    xml = samples[STRICT]
    attachment = xml[xml.index(b"<Attachment>") : xml.index(b"</Attachment>") + 13]
    xml = xml.replace(attachment, attachment * 3)
    with pytest.raises(EdxmlSizeLimitError) as caught:
        read_edxml(xml, limits=ReaderLimits(max_attachments=2), now=NOW)
    assert caught.value.issues[0].code is IssueCode.TOO_MANY_ATTACHMENTS


def test_element_count_and_depth_are_bounded() -> None:
    """A flood of elements or deep nesting stops at the configured bound."""
    flood = b"<edXML>" + b"<a/>" * 1000 + b"</edXML>"
    with pytest.raises(EdxmlSizeLimitError) as caught:
        read_edxml(flood, limits=ReaderLimits(max_elements=500), now=NOW)
    assert caught.value.issues[0].code is IssueCode.TOO_MANY_ELEMENTS
    deep = b"<edXML>" + b"<a>" * 100 + b"</a>" * 100 + b"</edXML>"
    with pytest.raises(EdxmlSizeLimitError) as caught:
        read_edxml(deep, now=NOW)
    assert caught.value.issues[0].code is IssueCode.TOO_DEEP
