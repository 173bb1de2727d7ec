"""Tests for person + organisation document signatures and their verification."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from docaxis_client.trust import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    DocumentSignature,
    DocumentSignatures,
    SenderMismatchError,
    SignatureAlgorithm,
    SignatureInvalidError,
    SignerMismatchError,
    SignerRole,
    SigningIdentity,
    SigningTimeError,
    UnsupportedAlgorithmError,
    UntrustedIssuerError,
    sign_as_organization,
    sign_as_person,
    sign_document,
    verify_document,
)
from docaxis_client.trust.demo_pki import DemoCA, KeyType, generate_key
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import OFFICIAL, OTHER_AGENCY, SENDER, SENDER_NAME, make_manifest


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _sign(signers: Signers, signed_at: dt.datetime | None = None) -> DocumentSignatures:
    return sign_document(
        make_manifest(),
        person=signers.person.identity(),
        organization=signers.organization.identity(),
        signed_at=signed_at,
    )


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        (KeyType.ED25519, SignatureAlgorithm.ED25519),
        (KeyType.P256, SignatureAlgorithm.ECDSA_P256_SHA256),
        (KeyType.RSA2048, SignatureAlgorithm.RSA_PKCS1V15_SHA256),
        (KeyType.RSA2048, SignatureAlgorithm.RSA_PSS_SHA256),
    ],
    ids=["ed25519", "p256", "rsa-pkcs1v15", "rsa-pss"],
)
def test_document_signed_with_each_key_type_verifies_and_names_its_signers(
    ca: DemoCA, signers: dict[KeyType, Signers], key_type: KeyType, algorithm: SignatureAlgorithm
) -> None:
    """Both signatures verify for every accepted algorithm and identify official and agency."""
    manifest = make_manifest()
    chosen = signers[key_type]
    signatures = sign_document(
        manifest,
        person=chosen.person.identity(algorithm),
        organization=chosen.organization.identity(algorithm),
    )
    verified = verify_document(manifest, signatures, ca.trust_store())
    assert signatures.person.algorithm is algorithm
    assert signatures.organization.algorithm is algorithm
    assert verified.sender == SENDER
    assert verified.manifest_sha256 == manifest.sha256_hex()
    assert verified.person.full_name == OFFICIAL
    assert verified.person.agency_code == SENDER
    assert verified.organization.serial == chosen.organization.certificate.serial_number
    assert verified.organization.chain[-1] == ca.root_certificate


def test_person_and_organization_may_use_different_key_types(
    ca: DemoCA, signers: dict[KeyType, Signers]
) -> None:
    """An Ed25519 official and an RSA agency seal verify together."""
    manifest = make_manifest()
    signatures = sign_document(
        manifest,
        person=signers[KeyType.ED25519].person.identity(),
        organization=signers[KeyType.RSA2048].organization.identity(),
    )
    verify_document(manifest, signatures, ca.trust_store())


def test_rsa_defaults_to_pkcs1v15(signers: dict[KeyType, Signers]) -> None:
    """Without an explicit choice an RSA key signs with PKCS#1 v1.5 (the documented default)."""
    assert signers[KeyType.RSA2048].person.identity().effective_algorithm is (
        SignatureAlgorithm.RSA_PKCS1V15_SHA256
    )


def test_forged_organization_signature_is_rejected(ca: DemoCA, p256: Signers) -> None:
    """A changed organisation signature fails with SIGNATURE_INVALID for that role."""
    signatures = _sign(p256)
    forged = dataclasses.replace(
        signatures.organization, signature=_flip_last_byte(signatures.organization.signature)
    )
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(
            make_manifest(), dataclasses.replace(signatures, organization=forged), ca.trust_store()
        )
    assert caught.value.reason == "SIGNATURE_INVALID"
    assert caught.value.role == SignerRole.ORGANIZATION


def test_forged_person_signature_is_rejected(ca: DemoCA, p256: Signers) -> None:
    """A changed person signature fails with SIGNATURE_INVALID for the person."""
    signatures = _sign(p256)
    forged = dataclasses.replace(
        signatures.person, signature=_flip_last_byte(signatures.person.signature)
    )
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(
            make_manifest(), dataclasses.replace(signatures, person=forged), ca.trust_store()
        )
    assert caught.value.role == SignerRole.PERSON


def test_organization_signature_cannot_be_moved_onto_another_person_signature(
    ca: DemoCA, p256: Signers, signers: dict[KeyType, Signers]
) -> None:
    """The seal covers the official's signature bytes, so it only fits the one it countersigned."""
    manifest = make_manifest()
    sealed = _sign(p256)
    other_person = sign_as_person(manifest, signers[KeyType.ED25519].person.identity())
    spliced = DocumentSignatures(person=other_person, organization=sealed.organization)
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(manifest, spliced, ca.trust_store())
    assert caught.value.role == SignerRole.ORGANIZATION


def test_swapped_roles_are_rejected(ca: DemoCA, p256: Signers) -> None:
    """A person signature offered as the organisation's (and vice versa) is invalid."""
    signatures = _sign(p256)
    swapped = DocumentSignatures(person=signatures.organization, organization=signatures.person)
    with pytest.raises(SignatureInvalidError):
        verify_document(make_manifest(), swapped, ca.trust_store())


def test_manifest_with_one_changed_attachment_digest_byte_is_rejected(
    ca: DemoCA, p256: Signers
) -> None:
    """Signatures made over one manifest do not verify over a manifest with a changed file hash."""
    signatures = _sign(p256)
    manifest = make_manifest()
    first = manifest.attachments[0]
    last = first.sha256_hex[-1]
    flipped = first.sha256_hex[:-1] + ("0" if last != "0" else "1")
    tampered = dataclasses.replace(
        manifest,
        attachments=(dataclasses.replace(first, sha256_hex=flipped), *manifest.attachments[1:]),
    )
    assert tampered.attachments[0].sha256_hex != first.sha256_hex
    with pytest.raises(SignatureInvalidError) as caught:
        verify_document(tampered, signatures, ca.trust_store())
    assert caught.value.role == SignerRole.PERSON


def test_certificate_expired_at_signing_time_is_rejected(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """An agency certificate already expired when the seal was applied: CERTIFICATE_EXPIRED."""
    expired = ca.issue_agency(
        SENDER,
        SENDER_NAME,
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
        key=p256.organization.key,
    )
    signatures = sign_document(
        make_manifest(), person=p256.person.identity(), organization=expired.identity()
    )
    with pytest.raises(CertificateExpiredError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert caught.value.reason == "CERTIFICATE_EXPIRED"
    assert caught.value.serial == expired.certificate.serial_number


def test_signature_made_while_valid_still_verifies_after_the_certificate_expires(
    p256: Signers,
    now: dt.datetime,
) -> None:
    """Validity is judged at signing time, so archived documents stay verifiable."""
    old_ca = DemoCA.create(not_before=now - dt.timedelta(days=60))
    start, end = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    lapsed = old_ca.issue_agency(
        SENDER, SENDER_NAME, key=p256.organization.key, not_before=start, not_after=end
    )
    person = old_ca.issue_person(
        OFFICIAL, SENDER, key=p256.person.key, not_before=start, not_after=end
    )
    signed_at = now - dt.timedelta(days=2)
    signatures = sign_document(
        make_manifest(),
        person=person.identity(),
        organization=lapsed.identity(),
        signed_at=signed_at,
    )
    verified = verify_document(make_manifest(), signatures, old_ca.trust_store(), at=now)
    assert verified.organization.signed_at == signed_at


def test_certificate_not_yet_valid_at_signing_time_is_rejected(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """A person certificate whose validity starts after the signing time is refused as such."""
    early = ca.issue_person(
        OFFICIAL,
        SENDER,
        not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
        key=p256.person.key,
    )
    signatures = sign_document(
        make_manifest(), person=early.identity(), organization=p256.organization.identity()
    )
    with pytest.raises(CertificateNotYetValidError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert caught.value.reason == "CERTIFICATE_NOT_YET_VALID"


def test_revoked_person_certificate_is_rejected(fresh_ca: DemoCA) -> None:
    """A certificate on its issuer's CRL gives CERTIFICATE_REVOKED with its serial."""
    person = fresh_ca.issue_person(OFFICIAL, SENDER)
    organization = fresh_ca.issue_agency(SENDER, SENDER_NAME)
    signatures = sign_document(
        make_manifest(), person=person.identity(), organization=organization.identity()
    )
    verify_document(make_manifest(), signatures, fresh_ca.trust_store())
    fresh_ca.revoke(person.certificate)
    with pytest.raises(CertificateRevokedError) as caught:
        verify_document(make_manifest(), signatures, fresh_ca.trust_store())
    assert caught.value.reason == "CERTIFICATE_REVOKED"
    assert caught.value.serial == person.certificate.serial_number


def test_chain_from_an_untrusted_ca_is_rejected(ca: DemoCA) -> None:
    """Certificates from a CA outside the trust store give UNTRUSTED_ISSUER."""
    rogue = DemoCA.create()  # same name, other key
    signatures = sign_document(
        make_manifest(),
        person=rogue.issue_person(OFFICIAL, SENDER).identity(),
        organization=rogue.issue_agency(SENDER, SENDER_NAME).identity(),
    )
    with pytest.raises(UntrustedIssuerError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert caught.value.reason == "UNTRUSTED_ISSUER"


def test_organization_certificate_of_another_agency_is_a_sender_mismatch(
    ca: DemoCA, p256: Signers
) -> None:
    """A valid seal of a different agency than the manifest's sender gives SENDER_MISMATCH."""
    other = ca.issue_agency(OTHER_AGENCY, "UBND tỉnh Nghệ An", key=p256.organization.key)
    signatures = sign_document(
        make_manifest(), person=p256.person.identity(), organization=other.identity()
    )
    with pytest.raises(SenderMismatchError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert (caught.value.expected, caught.value.actual) == (SENDER, OTHER_AGENCY)
    assert caught.value.reason == "SENDER_MISMATCH"


def test_authenticated_sender_other_than_the_manifest_sender_is_a_sender_mismatch(
    ca: DemoCA, p256: Signers
) -> None:
    """expected_sender (e.g. the mTLS peer) must equal the manifest's sender."""
    with pytest.raises(SenderMismatchError):
        verify_document(
            make_manifest(), _sign(p256), ca.trust_store(), expected_sender=OTHER_AGENCY
        )


def test_person_certificate_of_another_official_is_a_signer_mismatch(
    ca: DemoCA, p256: Signers
) -> None:
    """The official's certificate must name the manifest's signer."""
    someone_else = ca.issue_person("Trần Thị Hoa", SENDER, key=p256.person.key)
    signatures = sign_document(
        make_manifest(), person=someone_else.identity(), organization=p256.organization.identity()
    )
    with pytest.raises(SignerMismatchError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert caught.value.role == SignerRole.PERSON
    assert caught.value.reason == "SIGNER_MISMATCH"


def test_signer_name_comparison_ignores_case_and_spacing(ca: DemoCA, p256: Signers) -> None:
    """Names typed with other case or extra spaces still match the certificate."""
    manifest = make_manifest(signer_full_name="  NGUYỄN  văn đức ")
    signatures = sign_document(
        manifest, person=p256.person.identity(), organization=p256.organization.identity()
    )
    verify_document(manifest, signatures, ca.trust_store())


def test_official_of_another_agency_is_a_signer_mismatch(ca: DemoCA, p256: Signers) -> None:
    """The official must be employed by the sending agency."""
    outsider = ca.issue_person(OFFICIAL, OTHER_AGENCY, key=p256.person.key)
    signatures = sign_document(
        make_manifest(), person=outsider.identity(), organization=p256.organization.identity()
    )
    with pytest.raises(SignerMismatchError):
        verify_document(make_manifest(), signatures, ca.trust_store())


def test_official_certificate_cannot_apply_the_organization_seal(ca: DemoCA, p256: Signers) -> None:
    """A person certificate in the organisation role gives SIGNER_MISMATCH."""
    signatures = sign_document(
        make_manifest(), person=p256.person.identity(), organization=p256.person.identity()
    )
    with pytest.raises(SignerMismatchError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store())
    assert caught.value.role == SignerRole.ORGANIZATION


def test_signature_claimed_in_the_future_is_rejected(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """A signing time beyond now plus clock skew gives SIGNING_TIME_INVALID."""
    signatures = _sign(p256, signed_at=now + dt.timedelta(hours=1))
    with pytest.raises(SigningTimeError) as caught:
        verify_document(make_manifest(), signatures, ca.trust_store(), at=now)
    assert caught.value.reason == "SIGNING_TIME_INVALID"


def test_signature_older_than_the_allowed_age_is_rejected(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """With max_signing_age set (hub submission), old signing times are refused."""
    signatures = _sign(p256, signed_at=now - dt.timedelta(days=10))
    with pytest.raises(SigningTimeError):
        verify_document(
            make_manifest(),
            signatures,
            ca.trust_store(),
            at=now,
            max_signing_age=dt.timedelta(days=3),
        )


def test_organization_cannot_sign_before_the_official(p256: Signers, now: dt.datetime) -> None:
    """The clerk's seal must come after the official's signature (Nghị định 30 order)."""
    manifest = make_manifest()
    person = sign_as_person(manifest, p256.person.identity(), signed_at=now)
    with pytest.raises(SigningTimeError):
        sign_as_organization(
            manifest, person, p256.organization.identity(), signed_at=now - dt.timedelta(hours=1)
        )


def test_organization_refuses_to_countersign_a_broken_person_signature(p256: Signers) -> None:
    """sign_as_organization checks the person signature before sealing it."""
    manifest = make_manifest()
    person = sign_as_person(manifest, p256.person.identity())
    broken = dataclasses.replace(person, signature=_flip_last_byte(person.signature))
    with pytest.raises(SignatureInvalidError):
        sign_as_organization(manifest, broken, p256.organization.identity())


def test_two_step_signing_verifies_like_one_step(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """Person on one machine, clerk later on another: the result verifies."""
    manifest = make_manifest()
    person = sign_as_person(manifest, p256.person.identity(), signed_at=now)
    organization = sign_as_organization(
        manifest, person, p256.organization.identity(), signed_at=now + dt.timedelta(minutes=3)
    )
    verify_document(
        manifest,
        DocumentSignatures(person=person, organization=organization),
        ca.trust_store(),
        at=now + dt.timedelta(minutes=3),
    )


def test_rsa_keys_below_2048_bits_are_refused(ca: DemoCA) -> None:
    """A 1024-bit RSA certificate cannot become a signing identity."""
    weak = ca.issue_person(
        OFFICIAL,
        SENDER,
        # Deliberately weak: the point is that it gets refused.
        key=rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    )
    with pytest.raises(UnsupportedAlgorithmError) as caught:
        weak.identity()
    assert caught.value.reason == "UNSUPPORTED_ALGORITHM"


def test_signing_identity_refuses_a_key_of_another_certificate(p256: Signers) -> None:
    """A key that does not match the leaf certificate is a wiring error caught at once."""
    with pytest.raises(ValueError, match="does not belong"):
        SigningIdentity(generate_key(KeyType.P256), p256.person.chain)


def test_algorithm_must_fit_the_key(p256: Signers) -> None:
    """Asking a P-256 key to sign with RSA-PSS is refused."""
    with pytest.raises(UnsupportedAlgorithmError):
        p256.person.identity(SignatureAlgorithm.RSA_PSS_SHA256)


def test_signature_with_a_naive_signing_time_is_rejected(ca: DemoCA, p256: Signers) -> None:
    """A signature whose time lost its zone cannot be checked and is refused."""
    signatures = _sign(p256)
    naive: DocumentSignature = dataclasses.replace(
        signatures.person, signed_at=signatures.person.signed_at.replace(tzinfo=None)
    )
    with pytest.raises(SigningTimeError):
        verify_document(
            make_manifest(), dataclasses.replace(signatures, person=naive), ca.trust_store()
        )


def test_overlong_certificate_chain_is_rejected_before_parsing(ca: DemoCA, p256: Signers) -> None:
    """A submitter cannot make us parse an unbounded chain."""
    signatures = _sign(p256)
    padded = dataclasses.replace(
        signatures.person, chain=signatures.person.chain + signatures.person.chain[-1:] * 10
    )
    with pytest.raises(SignatureInvalidError, match="malformed certificate chain"):
        verify_document(
            make_manifest(), dataclasses.replace(signatures, person=padded), ca.trust_store()
        )
