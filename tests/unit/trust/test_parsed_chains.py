"""Chains kept parsed by their bytes (keys.load_der_chain): parsed once, never answered for other
bytes, and no check of a document skipped because its chain was kept (revocation after a chain
was kept: test_signatures.test_revoked_person_certificate_is_rejected)."""

from __future__ import annotations

import dataclasses

import pytest

from docaxis_client.trust import (
    DocumentSignatures,
    SignatureInvalidError,
    SignerRole,
    sign_document,
    verify_document,
)
from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.keys import PARSED_CHAINS, load_der_chain
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import (
    flip_last_byte,
    make_manifest,
)


def _sign(signers: Signers, **changes: object) -> DocumentSignatures:
    return sign_document(
        make_manifest(**changes),
        person=signers.person.identity(),
        organization=signers.organization.identity(),
    )


def test_the_same_bytes_are_parsed_once(p256: Signers) -> None:
    """Every document of a signer carries the same chain: the second one gets the certificates
    the first parsed, in whatever sequence and bytes objects they came."""
    chain = _sign(p256).person.chain
    first = load_der_chain(chain)
    again = load_der_chain([bytes(bytearray(der)) for der in chain])
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))


def test_other_bytes_get_their_own_certificates(ca: DemoCA, p256: Signers) -> None:
    """A chain whose leaf differs by one byte (its issuer's signature) is parsed as what it is
    after the genuine chain was kept, and refused: the signature binds the genuine leaf's hash
    (were the kept certificates answered for these bytes, the document would verify)."""
    signatures = _sign(p256)
    manifest = make_manifest()
    verify_document(manifest, signatures, ca.trust_store())
    genuine = signatures.person.chain
    tampered_leaf = flip_last_byte(genuine[0])
    tampered = (tampered_leaf, *genuine[1:])
    parsed = load_der_chain(tampered)
    assert parsed[0].tbs_certificate_bytes == load_der_chain(genuine)[0].tbs_certificate_bytes
    assert parsed[0].signature != load_der_chain(genuine)[0].signature
    person = dataclasses.replace(signatures.person, chain=tampered)
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(manifest, dataclasses.replace(signatures, person=person), ca.trust_store())
    assert caught.value.role == SignerRole.PERSON


def test_a_malformed_chain_is_refused_every_time(p256: Signers) -> None:
    """Only what parses is kept: the same malformed bytes are refused on every call."""
    garbage = (b"\x30\x03\x02\x01\x00", *_sign(p256).person.chain[1:])
    for _ in range(2):
        with pytest.raises(ValueError, match="error parsing asn1 value"):
            load_der_chain(garbage)


def test_every_signature_is_checked_with_a_kept_chain(ca: DemoCA, p256: Signers) -> None:
    """A kept chain vouches for no signature: another document's signatures, or a signature
    changed by one bit, are refused after the chain verified once."""
    store = ca.trust_store()
    signatures = _sign(p256)
    verify_document(make_manifest(), signatures, store)
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(make_manifest(code_number="1235"), signatures, store)
    assert caught.value.role == SignerRole.PERSON
    forged = dataclasses.replace(
        signatures.organization, signature=flip_last_byte(signatures.organization.signature)
    )
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(
            make_manifest(), dataclasses.replace(signatures, organization=forged), store
        )
    assert caught.value.role == SignerRole.ORGANIZATION


def test_the_kept_chains_are_bounded() -> None:
    """The cache of parsed chains forgets: an unauthenticated submitter's chains cannot grow
    it without bound."""
    from docaxis_client.trust import keys

    assert keys._parsed_chain.cache_info().maxsize == PARSED_CHAINS
