"""Person and organisation signatures over a manifest (Nghị định 30/2020), sign and verify."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import unicodedata
from dataclasses import dataclass

from cryptography import x509

from docaxis_client.trust.canonical import (
    DOCUMENT_SIGNATURE_PURPOSE,
    JsonValue,
    canonical_json,
    format_utc,
    nfc,
    utc_now,
)
from docaxis_client.trust.chain import (
    CertificatePurpose,
    TrustStore,
    agency_code_of,
    describe,
    person_of,
)
from docaxis_client.trust.errors import (
    SenderMismatchError,
    SignatureInvalidError,
    SignerMismatchError,
    SigningTimeError,
)
from docaxis_client.trust.keys import (
    SignatureAlgorithm,
    SigningIdentity,
    certificate_sha256,
    load_der_chain,
    verify_bytes,
    verifying_key,
)
from docaxis_client.trust.manifest import Manifest

SIGNATURE_PAYLOAD_VERSION = 1
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=5)

__all__ = [
    "DocumentSignature",
    "DocumentSignatures",
    "SignerRole",
    "SigningIdentity",
    "VerifiedSigner",
    "VerifiedSigners",
    "sign_as_organization",
    "sign_as_person",
    "sign_document",
    "signed_payload",
    "verify_document",
]


class SignerRole(enum.StrEnum):
    """The two signatures of an official document, in signing order."""

    PERSON = "person"
    ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class DocumentSignature:
    """One signature as it travels: raw bytes, the signer's DER chain and the claimed time."""

    role: SignerRole
    algorithm: SignatureAlgorithm
    signature: bytes
    chain: tuple[bytes, ...]
    signed_at: dt.datetime

    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The chain parsed, leaf first."""
        return load_der_chain(self.chain)


@dataclass(frozen=True, slots=True)
class DocumentSignatures:
    """Both signatures of a document; kept as named fields so they cannot be swapped."""

    person: DocumentSignature
    organization: DocumentSignature


@dataclass(frozen=True, slots=True)
class VerifiedSigner:
    """Who signed, as established by a validated certificate chain."""

    role: SignerRole
    subject: str
    serial: int
    agency_code: str
    full_name: str | None
    signed_at: dt.datetime
    algorithm: SignatureAlgorithm
    certificate_sha256: str
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class VerifiedSigners:
    """Outcome of :func:`verify_document`: both signers and the manifest digest they cover."""

    manifest_sha256: str
    person: VerifiedSigner
    organization: VerifiedSigner

    @property
    def sender(self) -> str:
        """The agency whose organisation signature the document carries."""
        return self.organization.agency_code


def signed_payload(
    *,
    role: SignerRole,
    algorithm: SignatureAlgorithm,
    manifest_sha256: str,
    signed_at: dt.datetime,
    signer_certificate: x509.Certificate,
    person_signature: bytes | None = None,
) -> bytes:
    """The RFC 8785 bytes a role signs.

    The signing time and the signer's certificate hash are inside, so neither can be swapped
    after the fact (the CAdES signing-certificate idea). The organisation payload adds the
    person's signature bytes: the clerk countersigns the official, not just the manifest, so an
    organisation signature cannot be moved onto a document some other official signed.
    """
    payload: dict[str, JsonValue] = {
        "v": SIGNATURE_PAYLOAD_VERSION,
        "purpose": DOCUMENT_SIGNATURE_PURPOSE,
        "role": role.value,
        "alg": algorithm.value,
        "manifest_sha256": manifest_sha256,
        "signed_at": format_utc(signed_at),
        "signer_cert_sha256": certificate_sha256(signer_certificate),
    }
    if role is SignerRole.ORGANIZATION:
        if person_signature is None:
            raise ValueError("an organisation signature covers the person signature")
        payload["person_signature"] = base64.b64encode(person_signature).decode("ascii")
    elif person_signature is not None:
        raise ValueError("a person signature covers no other signature")
    return canonical_json(payload)


def _signing_time(signed_at: dt.datetime | None) -> dt.datetime:
    if signed_at is None:
        return utc_now()
    if signed_at.tzinfo is None or signed_at.utcoffset() is None:
        raise ValueError("signed_at must be timezone-aware")
    return signed_at.astimezone(dt.UTC).replace(microsecond=0)


def _sign(
    role: SignerRole,
    manifest: Manifest,
    identity: SigningIdentity,
    signed_at: dt.datetime,
    person_signature: bytes | None,
) -> DocumentSignature:
    algorithm = identity.effective_algorithm
    payload = signed_payload(
        role=role,
        algorithm=algorithm,
        manifest_sha256=manifest.sha256_hex(),
        signed_at=signed_at,
        signer_certificate=identity.certificate,
        person_signature=person_signature,
    )
    return DocumentSignature(
        role=role,
        algorithm=algorithm,
        signature=identity.sign(payload),
        chain=identity.chain_der(),
        signed_at=signed_at,
    )


def sign_as_person(
    manifest: Manifest, identity: SigningIdentity, *, signed_at: dt.datetime | None = None
) -> DocumentSignature:
    """The competent official's signature over the manifest digest."""
    return _sign(SignerRole.PERSON, manifest, identity, _signing_time(signed_at), None)


def sign_as_organization(
    manifest: Manifest,
    person_signature: DocumentSignature,
    identity: SigningIdentity,
    *,
    signed_at: dt.datetime | None = None,
) -> DocumentSignature:
    """The clerk's organisation signature, made only over an existing, valid person signature."""
    moment = _signing_time(signed_at)
    # Check what we countersign: an organisation seal on a broken person signature would be
    # rejected by every receiver anyway, and the clerk should learn it now, not from a status 02.
    _check_signature(manifest, person_signature, SignerRole.PERSON, None)
    if moment < person_signature.signed_at:
        raise SigningTimeError(
            SignerRole.ORGANIZATION, moment, "the organisation cannot sign before the official"
        )
    return _sign(SignerRole.ORGANIZATION, manifest, identity, moment, person_signature.signature)


def sign_document(
    manifest: Manifest,
    *,
    person: SigningIdentity,
    organization: SigningIdentity,
    signed_at: dt.datetime | None = None,
) -> DocumentSignatures:
    """Both signatures in the prescribed order (for integrators holding both keys)."""
    moment = _signing_time(signed_at)
    person_signature = sign_as_person(manifest, person, signed_at=moment)
    return DocumentSignatures(
        person=person_signature,
        organization=sign_as_organization(
            manifest, person_signature, organization, signed_at=moment
        ),
    )


def _check_signature(
    manifest: Manifest,
    signature: DocumentSignature,
    role: SignerRole,
    person_signature: bytes | None,
) -> tuple[x509.Certificate, ...]:
    if signature.role is not role:
        raise SignatureInvalidError(role, f"carries role {signature.role}")
    try:
        certificates = signature.certificates()
    except ValueError as exc:
        raise SignatureInvalidError(role, "malformed certificate chain") from exc
    if not certificates:
        raise SignatureInvalidError(role, "no signer certificate")
    if signature.signed_at.tzinfo is None or signature.signed_at.microsecond:
        raise SigningTimeError(role, signature.signed_at, "must be UTC, whole seconds")
    payload = signed_payload(
        role=role,
        algorithm=signature.algorithm,
        manifest_sha256=manifest.sha256_hex(),
        signed_at=signature.signed_at,
        signer_certificate=certificates[0],
        person_signature=person_signature,
    )
    key = verifying_key(certificates[0])
    if not verify_bytes(key, signature.algorithm, payload, signature.signature):
        raise SignatureInvalidError(role, "does not verify over this manifest")
    return certificates


def _check_time(
    role: SignerRole,
    signed_at: dt.datetime,
    at: dt.datetime,
    clock_skew: dt.timedelta,
    max_signing_age: dt.timedelta | None,
) -> None:
    if signed_at > at + clock_skew:
        raise SigningTimeError(role, signed_at, f"is in the future (checked at {at.isoformat()})")
    if max_signing_age is not None and signed_at < at - max_signing_age:
        raise SigningTimeError(role, signed_at, f"is older than {max_signing_age}")


def _same_name(left: str, right: str) -> bool:
    # Names are typed by people: compare NFC, case-folded, with runs of whitespace collapsed.
    def key(name: str) -> str:
        return " ".join(unicodedata.normalize("NFC", name).casefold().split())

    return key(left) == key(right)


def verify_document(
    manifest: Manifest,
    signatures: DocumentSignatures,
    trust: TrustStore,
    *,
    at: dt.datetime | None = None,
    expected_sender: str | None = None,
    max_signing_age: dt.timedelta | None = None,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> VerifiedSigners:
    """Verify both signatures, both chains (each at its signing time) and who signed.

    ``at`` is "now" for the checks that need one: signing times may not lie beyond it, nor
    further back than ``max_signing_age`` (the hub sets this at submission to narrow backdating;
    a receiver re-checking an archived document leaves it unset). ``expected_sender`` is the
    agency the caller authenticated (for example the mTLS peer); it must equal the manifest's.
    Raises a :class:`~docaxis_client.trust.errors.TrustError` subclass on any failure.
    """
    now = utc_now() if at is None else at
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    sender = nfc(manifest.sender)
    if expected_sender is not None and nfc(expected_sender) != sender:
        raise SenderMismatchError(nfc(expected_sender), sender)

    person, organization = signatures.person, signatures.organization
    person_chain = _check_signature(manifest, person, SignerRole.PERSON, None)
    organization_chain = _check_signature(
        manifest, organization, SignerRole.ORGANIZATION, person.signature
    )
    for signature in (person, organization):
        _check_time(signature.role, signature.signed_at, now, clock_skew, max_signing_age)
    if organization.signed_at < person.signed_at:
        raise SigningTimeError(
            SignerRole.ORGANIZATION,
            organization.signed_at,
            "precedes the person signature (the clerk signs after the official)",
        )

    person_path = trust.validate(
        person_chain, at=person.signed_at, purpose=CertificatePurpose.DOCUMENT_SIGNING
    )
    organization_path = trust.validate(
        organization_chain, at=organization.signed_at, purpose=CertificatePurpose.DOCUMENT_SIGNING
    )

    organization_leaf = organization_path.leaf
    agency = agency_code_of(organization_leaf)
    if agency is None:
        raise SignerMismatchError(
            SignerRole.ORGANIZATION,
            f"an agency certificate of {sender}",
            describe(organization_leaf),
        )
    if agency != sender:
        raise SenderMismatchError(sender, agency)

    person_leaf = person_path.leaf
    official = person_of(person_leaf)
    if official is None:
        raise SignerMismatchError(
            SignerRole.PERSON, f"an official's certificate of {sender}", describe(person_leaf)
        )
    if official.agency_code != sender:
        raise SignerMismatchError(
            SignerRole.PERSON, f"an official of {sender}", f"an official of {official.agency_code}"
        )
    if not _same_name(official.full_name, manifest.signer_full_name):
        raise SignerMismatchError(SignerRole.PERSON, manifest.signer_full_name, official.full_name)

    return VerifiedSigners(
        manifest_sha256=manifest.sha256_hex(),
        person=_signer(person, person_path.certificates, sender, official.full_name),
        organization=_signer(organization, organization_path.certificates, sender, None),
    )


def _signer(
    signature: DocumentSignature,
    chain: tuple[x509.Certificate, ...],
    agency_code: str,
    full_name: str | None,
) -> VerifiedSigner:
    leaf = chain[0]
    return VerifiedSigner(
        role=signature.role,
        subject=describe(leaf),
        serial=leaf.serial_number,
        agency_code=agency_code,
        full_name=full_name,
        signed_at=signature.signed_at,
        algorithm=signature.algorithm,
        certificate_sha256=certificate_sha256(leaf),
        chain=chain,
    )
