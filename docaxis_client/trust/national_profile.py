"""The shape of the national CA's certificates, which the demo/test PKI copies.

Vietnam's state agencies sign with certificates of the Government Cipher Committee (Ban Cơ yếu
Chính phủ, "VGCA"): a root, and subordinate CAs that issue person (an official's) and
organisation (an agency's seal) certificates. docaxis must verify those, so the demo PKI issues
certificates of the same shape: what passes here meets the same subject fields, extensions and
chain layout as production certificates.

What is KNOWN, from the CA certificates the Committee publishes (http://ca.gov.vn/pki/pub/crt/
for the G2 generation, /pki/pub/cert/ for G1) and from public code that verifies real documents:

- Root "CN=RootCA chuyên dùng Chính phủ G2, O=Ban Cơ yếu Chính phủ, C=VN" (G2: issued 2018, valid
  to 2048; the G1 root, 2010-2030, still anchors older signer certificates).
- Subordinate "CN=CA phục vụ các cơ quan Nhà nước G2, O=Ban Cơ yếu Chính phủ, C=VN" issues the
  state agencies' certificates (a sibling serves the Party's bodies).
- An organisation certificate names the body in CN, its parent in O and the province in L, e.g.
  "CN=CỤC THUẾ, O=BỘ TÀI CHÍNH, L=Hà Nội, C=VN". A person certificate names the official in CN,
  the unit in OU, the agency in O, and carries an e-mail address (E).
- Signer certificates carry an AIA caIssuers URL for the issuing CA's certificate and an OCSP
  responder (ocsp.ca.gov.vn; some carry an internal name that clients rewrite to it).
- The CMS blob inside a signed PDF often embeds the signer's certificate only: the verifier must
  hold the subordinate CA itself (docaxis: the trust store's intermediates).
- The Committee runs an RFC 3161 time-stamping authority (http://tsa.ca.gov.vn) that signing tools
  call when they sign PDFs.
- The certificates carry no docaxis identity: the directory binds them to agencies
  (CertificateBinding).

What is ASSUMED (not found in public material; to be checked against a real certificate):

- The certificate policy OID: the demo uses DEMO_POLICY_OID, an OID under the UUID arc 2.25 that
  can never collide with a real policy.
- The CRL distribution point's path (crl/<ca>.crl beside crt/<ca>.crt).
- Key usage digitalSignature + nonRepudiation (critical) on both kinds of signer certificate,
  and no extended key usage (national signing certificates predate RFC 9336's documentSigning;
  no EKU means any purpose).
- No subject identifier beyond the names (the commercial CAs' UID "MST:"/"CCCD:" fields were not
  seen in the Committee's certificates).

The demo's certificates are never confusable with real ones: every name starts with "DEMO" and
every URL points at a host under the reserved ``.invalid`` top-level domain.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

ROOT_COMMON_NAME = "DEMO RootCA chuyên dùng Chính phủ G2"
ISSUING_COMMON_NAME = "DEMO CA phục vụ các cơ quan Nhà nước G2"
ISSUER_ORGANIZATION = "DEMO Ban Cơ yếu Chính phủ - NOT FOR PRODUCTION"
# Where the demo CA "publishes" its certificates and CRLs: the real layout, on a reserved host.
DEMO_PUBLICATION_BASE = "http://ca.demo.invalid/pki/pub"
# 2.25.<UUID as an integer> (ITU-T X.667): unregistered, unique, and plainly not the real OID.
DEMO_POLICY_OID = x509.ObjectIdentifier("2.25.216745308016315128442316283813451532170")
# File names of the CA certificates and CRLs under the publication base, by CA label.
CA_FILES = {"root": "rootcag2", "intermediate": "cpg2"}


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def ca_name(common_name: str) -> x509.Name:
    """A CA's subject: CN, O (the Committee), C=VN."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ISSUER_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, _nfc(common_name)),
        ]
    )


@dataclass(frozen=True, slots=True)
class OrganizationSubject:
    """An agency's seal certificate: the body (CN), its parent (O), its province (L)."""

    name: str
    parent: str | None = None
    locality: str = "Hà Nội"

    def x509_name(self) -> x509.Name:
        """The subject, in the order the national CA writes it (C first)."""
        attributes = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, _nfc(self.locality)),
        ]
        if self.parent:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, _nfc(self.parent)))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, _nfc(self.name)))
        return x509.Name(attributes)


@dataclass(frozen=True, slots=True)
class PersonSubject:
    """An official's certificate: the name (CN), unit (OU), agency (O), province, e-mail."""

    full_name: str
    organization: str
    unit: str | None = None
    locality: str = "Hà Nội"
    email: str | None = None

    def x509_name(self) -> x509.Name:
        """The subject, in the order the national CA writes it (C first)."""
        attributes = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, _nfc(self.locality)),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _nfc(self.organization)),
        ]
        if self.unit:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _nfc(self.unit)))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, _nfc(self.full_name)))
        if self.email:
            attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, self.email))
        return x509.Name(attributes)


def certificate_policies() -> x509.CertificatePolicies:
    """The (demo) certificate policy every signer certificate names."""
    return x509.CertificatePolicies([x509.PolicyInformation(DEMO_POLICY_OID, None)])


def crl_distribution_points(base: str, issuer_label: str) -> x509.CRLDistributionPoints:
    """Where the issuing CA's CRL is published."""
    url = f"{base}/crl/{CA_FILES[issuer_label]}.crl"
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def authority_information_access(
    base: str, issuer_label: str, ocsp_url: str | None
) -> x509.AuthorityInformationAccess:
    """The issuing CA's certificate (caIssuers) and, when given, the OCSP responder."""
    descriptions: Sequence[x509.AccessDescription] = [
        x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(f"{base}/crt/{CA_FILES[issuer_label]}.crt"),
        )
    ]
    if ocsp_url is not None:
        descriptions = [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            ),
            *descriptions,
        ]
    return x509.AuthorityInformationAccess(descriptions)
