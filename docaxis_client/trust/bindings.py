"""Who a signer certificate signs for: its docaxis identity, or the directory's binding.

Certificates the axis's own PKI issues name their holder in a ``urn:docaxis:`` SAN
(:func:`~docaxis_client.trust.chain.identity_uri`). The national CA's certificates do not: they
name a person or an organisation in their subject, in words (national_profile). Guessing an
agency from those words would let a look-alike name pass, so the directory keeps explicit,
audited bindings, set by an administrator: this certificate's key signs for this agency, as an
official (person) or as the agency (organisation).

Bindings are keyed by the SHA-256 of the SubjectPublicKeyInfo (:func:`key_id`), not by issuer and
subject fields. The key is what signs: a binding by key cannot be inherited by another
certificate that happens to carry the same names (a namesake official, a re-issued seal for a
reorganised body), needs no parsing of subject conventions we could only partly confirm, and
survives a renewal that keeps the key. A renewal with a new key needs a new binding, which is
the audited decision we want. The certificate must still chain to the trust anchors: a binding
says whom a valid certificate speaks for, never that it is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from docaxis_client.trust.canonical import nfc
from docaxis_client.trust.chain import agency_code_of, describe, identity_uri, person_of
from docaxis_client.trust.errors import CertificateUnboundError
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.signatures import SignerRole

__all__ = [
    "NO_BINDINGS",
    "Bindings",
    "CertificateBinding",
    "SignerIdentity",
    "signer_identity",
]


@dataclass(frozen=True, slots=True)
class CertificateBinding:
    """The directory's word that a key signs for an agency, in a role."""

    spki_sha256: str
    agency_code: str
    role: SignerRole


# Bindings by SPKI SHA-256 (lowercase hex).
Bindings = Mapping[str, CertificateBinding]
NO_BINDINGS: Bindings = {}


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    """Whom a signer certificate speaks for."""

    role: SignerRole
    agency_code: str
    # The official's name (the certificate's CN) for a person certificate.
    full_name: str | None
    # True when the identity comes from a directory binding, not from the certificate itself.
    bound: bool = False


def _common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        return None
    return nfc(names[0].value)


def signer_identity(certificate: x509.Certificate, bindings: Bindings) -> SignerIdentity | None:
    """The certificate's docaxis identity if it has one, else its binding.

    None for a docaxis certificate of another kind (an operator's, a hub's: never a document
    signer); CERTIFICATE_UNBOUND for a certificate without a docaxis identity or a binding.
    """
    person = person_of(certificate)
    if person is not None:
        return SignerIdentity(SignerRole.PERSON, person.agency_code, person.full_name)
    code = agency_code_of(certificate)
    if code is not None:
        return SignerIdentity(SignerRole.ORGANIZATION, code, None)
    if identity_uri(certificate) is not None:
        return None
    fingerprint = key_id(certificate)
    binding = bindings.get(fingerprint)
    if binding is None:
        raise CertificateUnboundError(describe(certificate), certificate.serial_number, fingerprint)
    full_name = _common_name(certificate) if binding.role is SignerRole.PERSON else None
    return SignerIdentity(binding.role, binding.agency_code, full_name, bound=True)
