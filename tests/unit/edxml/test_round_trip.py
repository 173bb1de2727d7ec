"""Import, export, import: stable models, strict output that re-reads without remarks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.edxml import (
    EnvelopeSignature,
    edxml_bytes,
    read_document,
    read_edxml,
    write_edxml,
)
from tests.testdata import corpus_files
from tests.unit.edxml.builders import (
    NOW,
    RECALL,
    STATUS,
    STRICT,
    a_document,
    a_status,
    without_payloads,
)

# The repository's samples and, when it is beside the repository, the wider shared corpus's.
EVERY_SAMPLE = [pytest.param(found.path, id=found.id) for found in corpus_files("edxml", "*.edxml")]


@pytest.mark.parametrize("path", EVERY_SAMPLE)
def test_import_export_import_gives_the_same_model(path: Path) -> None:
    """Reading the writer's output of a sample gives back an equal package."""
    sample = path.read_bytes()
    first = read_edxml(sample, now=NOW).package
    second = read_edxml(edxml_bytes(first, now=NOW), now=NOW).package
    assert second == first


@pytest.mark.parametrize("path", EVERY_SAMPLE)
def test_exported_samples_re_read_without_normalisations(path: Path) -> None:
    """The writer's output needs no normalising and carries no new problem."""
    sample = path.read_bytes()
    first = read_edxml(sample, now=NOW)
    report = read_edxml(edxml_bytes(first.package, now=NOW), now=NOW).report
    assert report.normalisations == ()
    assert set(report.issues) <= set(first.report.problems)


@pytest.mark.parametrize("path", EVERY_SAMPLE)
def test_export_is_idempotent(path: Path) -> None:
    """Exporting a re-imported export gives the same bytes."""
    sample = path.read_bytes()
    once = edxml_bytes(read_edxml(sample, now=NOW).package, now=NOW)
    twice = edxml_bytes(read_edxml(once, now=NOW).package, now=NOW)
    assert twice == once


@pytest.mark.parametrize("name", [STRICT, RECALL, STATUS])
def test_strict_samples_are_written_back_byte_for_byte_but_for_the_zip(
    name: str, samples: dict[str, bytes]
) -> None:
    """The writer's layout is the official one; only the re-made zip payload differs."""
    written = edxml_bytes(read_edxml(samples[name], now=NOW).package, now=NOW)
    assert without_payloads(written) == without_payloads(samples[name])


def test_a_complete_document_re_reads_with_an_empty_report() -> None:
    """A package built in code is written and read back equal, without a single remark."""
    package = a_document()
    result = read_document(edxml_bytes(package, now=NOW), now=NOW)
    assert result.report.issues == ()
    assert result.package == package


def test_a_complete_status_re_reads_with_an_empty_report() -> None:
    """Same for a status package."""
    package = a_status()
    result = read_edxml(edxml_bytes(package, now=NOW), now=NOW)
    assert result.report.issues == ()
    assert result.package == package


def test_the_same_package_always_gives_the_same_bytes() -> None:
    """Output is deterministic, zip payloads included."""
    assert edxml_bytes(a_document(), now=NOW) == edxml_bytes(a_document(), now=NOW)


def test_streaming_to_a_file_writes_what_edxml_bytes_returns() -> None:
    """write_edxml streams the same bytes to a binary file object."""
    out = io.BytesIO()
    write_edxml(a_document(), out, now=NOW)
    assert out.getvalue() == edxml_bytes(a_document(), now=NOW)


def test_a_signature_relying_on_outer_namespaces_survives_byte_for_byte() -> None:
    """A signature using a root-declared prefix keeps its bytes; the header restates the prefix."""
    raw = (
        b'<ds:Signature Id="s1">\n  <ds:SignedInfo><ds:Reference URI=""/></ds:SignedInfo>'
        b"\n  <ds:SignatureValue>AAAA</ds:SignatureValue>\n</ds:Signature>"
    )
    xml = edxml_bytes(a_document(), now=NOW)
    xml = xml.replace(
        b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">',
        b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"'
        b' xmlns:ds="http://www.w3.org/2000/09/xmldsig#">',
    ).replace(b"</edXML:TraceHeaderList>\n", b"</edXML:TraceHeaderList>\n      " + raw + b"\n")
    first = read_document(xml, now=NOW)
    assert first.package.signature == EnvelopeSignature(
        raw=raw, namespaces=(("ds", "http://www.w3.org/2000/09/xmldsig#"),)
    )
    written = edxml_bytes(first.package, now=NOW)
    assert raw in written
    assert b'<edXML:edXMLHeader xmlns:ds="http://www.w3.org/2000/09/xmldsig#">' in written
    assert read_document(written, now=NOW).package == first.package


def test_an_official_style_signature_needs_no_extra_declaration(
    samples: dict[str, bytes],
) -> None:
    """The SDK sample's unprefixed <Signature> keeps its bytes with no added declaration."""
    raw = (
        b"<Signature>\n        <SignedInfo>\n          <CanonicalizationMethod "
        b'Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315" />\n'
        b"        </SignedInfo>\n        <SignatureValue>GbVb8n9+qFxz</SignatureValue>\n"
        b"      </Signature>"
    )
    xml = samples[STRICT].replace(
        b"</edXML:TraceHeaderList>\n", b"</edXML:TraceHeaderList>\n      " + raw + b"\n"
    )
    package = read_document(xml, now=NOW).package
    assert package.signature == EnvelopeSignature(raw=raw)
    written = edxml_bytes(package, now=NOW)
    assert b"<edXML:edXMLHeader>" in written
    assert raw in written
