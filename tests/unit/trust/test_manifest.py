"""Tests for the canonical manifest: RFC 8785 bytes, NFC, digests and field checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from typing import Any

import pytest

from docaxis_client.trust import AttachmentDigest, Manifest, ManifestInvalidError
from tests.unit.trust.factories import RECIPIENTS, make_manifest


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_canonical_bytes_are_sorted_compact_json_with_a_version_field() -> None:
    """The signed bytes are RFC 8785: sorted keys, no whitespace, raw UTF-8, and "v": 1."""
    canonical = make_manifest().canonical_bytes()
    decoded = json.loads(canonical)
    assert decoded["v"] == 1
    assert list(decoded) == sorted(decoded)
    assert "Khánh Hòa".encode() in canonical
    assert canonical == json.dumps(
        decoded, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode("utf-8")


def test_digest_is_sha256_of_the_canonical_bytes_in_lowercase_hex() -> None:
    """digest() hashes canonical_bytes(); sha256_hex() is its lowercase hex form."""
    manifest = make_manifest()
    assert manifest.digest() == hashlib.sha256(manifest.canonical_bytes()).digest()
    assert manifest.sha256_hex() == manifest.digest().hex()
    assert manifest.sha256_hex() == manifest.sha256_hex().lower()


def test_nfd_input_gives_the_same_digest_as_nfc_input() -> None:
    """Decomposed Vietnamese text (NFD) is normalised, so the digest does not change."""
    nfc_manifest = make_manifest()
    nfd_manifest = make_manifest(
        subject=_nfd(nfc_manifest.subject),
        signer_full_name=_nfd(nfc_manifest.signer_full_name),
        promulgation_place=_nfd(nfc_manifest.promulgation_place),
        document_id=_nfd("000.00.00.H45,2025/07/01,1234/UBND-VP"),
    )
    assert _nfd(nfc_manifest.subject) != nfc_manifest.subject
    assert nfd_manifest.digest() == nfc_manifest.digest()
    assert nfd_manifest == nfc_manifest


def test_recipient_order_is_part_of_the_digest() -> None:
    """Recipients keep their order, so reordering them is a different manifest."""
    reordered = make_manifest(recipients=tuple(reversed(RECIPIENTS)))
    assert reordered.recipients == tuple(reversed(RECIPIENTS))
    assert reordered.digest() != make_manifest().digest()


def test_changing_one_byte_of_an_attachment_digest_changes_the_manifest_digest() -> None:
    """Attachment hashes are inside the signed bytes."""
    manifest = make_manifest()
    first = manifest.attachments[0]
    flipped = ("0" if first.sha256_hex[0] != "0" else "1") + first.sha256_hex[1:]
    changed = dataclasses.replace(
        manifest,
        attachments=(dataclasses.replace(first, sha256_hex=flipped), *manifest.attachments[1:]),
    )
    assert changed.digest() != manifest.digest()


def test_manifest_round_trips_through_its_dict_form() -> None:
    """from_dict(as_dict()) rebuilds an equal manifest with the same digest."""
    manifest = make_manifest(response_for=("000.00.00.G22,2025/06/30,77/VPCP-TTĐT",))
    rebuilt = Manifest.from_dict(json.loads(manifest.canonical_bytes()))
    assert rebuilt == manifest
    assert rebuilt.digest() == manifest.digest()


def test_unknown_manifest_version_is_refused() -> None:
    """A manifest layout we do not know is not guessed at."""
    data = json.loads(make_manifest().canonical_bytes())
    data["v"] = 2
    with pytest.raises(ManifestInvalidError) as caught:
        Manifest.from_dict(data)
    assert caught.value.reason == "MANIFEST_INVALID"


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("document_id", {"document_id": "000.00.00.H45-2025/07/01-1234"}),
        ("document_id", {"document_id": "000.00.00.H45,2025/07/01,1234"}),
        ("recipients", {"recipients": ()}),
        ("recipients", {"recipients": ("000.00.00.G22", "000.00.00.G22")}),
        ("recipients", {"recipients": ("000.00.00.g22",)}),
        ("sender", {"sender": ""}),
        ("business_type", {"business_type": 4}),
        ("promulgation_date", {"promulgation_date": "2025/07/01"}),
        ("due_date", {"due_date": "20250715"}),
        ("response_for", {"response_for": ("not a document id",)}),
    ],
)
def test_malformed_fields_are_refused_with_the_field_named(
    field: str, changes: dict[str, Any]
) -> None:
    """Each malformed field raises MANIFEST_INVALID naming that field."""
    with pytest.raises(ManifestInvalidError) as caught:
        make_manifest(**changes)
    assert caught.value.field == field


@pytest.mark.parametrize("digest", ["A" * 64, "0" * 63, "g" * 64])
def test_attachment_digests_must_be_64_lowercase_hex_digits(digest: str) -> None:
    """Uppercase or short hex (the zero-dropping vendor bug) is refused."""
    with pytest.raises(ManifestInvalidError):
        AttachmentDigest("a.pdf", "application/pdf", 1, digest)


def test_canonical_bytes_match_the_published_layout() -> None:
    """Golden vector: other-language integrators must reproduce these bytes exactly."""
    manifest = Manifest(
        document_id="000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
        sender="000.00.00.G22",
        recipients=("000.00.00.H41",),
        code_number="7816",
        code_notation="VPCP-TTĐT",
        promulgation_place="Hà Nội",
        promulgation_date="2015-09-30",
        document_type=1,
        type_name="Công văn",
        subject="Trích yếu",
        signer_competence="KT. BỘ TRƯỞNG",
        signer_position="Thứ trưởng",
        signer_full_name="Lê Văn A",
        due_date=None,
        priority=0,
        business_type=0,
        attachments=(
            AttachmentDigest("a.pdf", "application/pdf", 0, hashlib.sha256().hexdigest()),
        ),
    )
    expected = (
        '{"attachments":[{"media_type":"application/pdf","name":"a.pdf","sha256":'
        '"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}],'
        '"business_type":0,"code_notation":"VPCP-TTĐT","code_number":"7816",'
        '"document_id":"000.00.00.G22,2015/09/30,7816/VPCP-TTĐT","document_type":1,'
        '"due_date":null,"priority":0,"promulgation_date":"2015-09-30",'
        '"promulgation_place":"Hà Nội","recipients":["000.00.00.H41"],"response_for":[],'
        '"sender":"000.00.00.G22","signer_competence":"KT. BỘ TRƯỞNG",'
        '"signer_full_name":"Lê Văn A","signer_position":"Thứ trưởng","subject":"Trích yếu",'
        '"type_name":"Công văn","v":1}'
    )
    assert manifest.canonical_bytes() == expected.encode("utf-8")
    assert manifest.sha256_hex() == (
        "8d64fb03f95c3b28009b8b277a82cbb38a780761361f96dfc0cac69bb12140de"
    )


def test_a_manifest_made_from_one_whose_digest_is_known_has_its_own() -> None:
    """The digest is kept once computed (a hub asks for it once per signature), and neither a
    replaced manifest nor equality carries it over: a kept digest never answers for other
    content."""
    manifest = make_manifest()
    digest = manifest.digest()
    changed = dataclasses.replace(manifest, subject="Về việc khác")
    assert changed.digest() == hashlib.sha256(changed.canonical_bytes()).digest() != digest
    assert manifest.digest() == digest == hashlib.sha256(manifest.canonical_bytes()).digest()
    fresh = make_manifest()
    assert fresh == manifest
    assert hash(fresh) == hash(manifest)
    assert "digest" not in repr(manifest)
