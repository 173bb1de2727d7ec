"""DEMO/TEST ONLY PKI: a throwaway CA for local runs and tests. NEVER use it in production."""

# Why this exists: docaxis needs certificates for mTLS and document signing on a laptop and in
# CI, where the Government Cipher Committee CA is not available. Keys are written unencrypted
# (0600), the CA key sits next to the certificates, and there is no audit trail: everything a
# real CA must not do. The identity encoding (URI SANs, EKUs) is the real one, though, so what
# passes here exercises the same checks production certificates go through.

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from docaxis_client.trust.chain import (
    AGENCY_URN_PREFIX,
    DOCUMENT_SIGNING_EKU,
    OFFICIAL_URN_PREFIX,
    PEER_URN_PREFIX,
    ROLE_URN_PREFIX,
    Role,
    TrustStore,
)
from docaxis_client.trust.keys import SignatureAlgorithm, SigningIdentity, SigningKey
from docaxis_client.trust.manifest import AGENCY_CODE_PATTERN
from docaxis_client.trust.national_profile import (
    DEMO_PUBLICATION_BASE,
    ISSUING_COMMON_NAME,
    ROOT_COMMON_NAME,
    OrganizationSubject,
    PersonSubject,
    authority_information_access,
    ca_name,
    certificate_policies,
    crl_distribution_points,
)

DEMO_ORGANIZATION = "docaxis DEMO PKI - NOT FOR PRODUCTION"
# Certificates start an hour in the past so a peer whose clock lags, or a test that took its
# "now" before the certificate was issued (a slow suite), does not see them as "not yet valid".
_BACKDATE = dt.timedelta(hours=1)
_ROOT_LIFETIME = dt.timedelta(days=3650)
_INTERMEDIATE_LIFETIME = dt.timedelta(days=1825)
_LEAF_LIFETIME = dt.timedelta(days=397)
_CRL_LIFETIME = dt.timedelta(days=7)


class KeyType(enum.StrEnum):
    """Key types the demo PKI can generate."""

    ED25519 = "ed25519"
    P256 = "p256"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"


def check_tls_key_type(key_type: KeyType, what: str) -> None:
    """Refuses a key type a TLS certificate cannot have here: gRPC's TLS stack has no Ed25519
    (the handshake fails with an opaque error long after the certificate was issued)."""
    if key_type is KeyType.ED25519:
        raise ValueError(
            f"{what} authenticates TLS connections, which gRPC cannot do with an Ed25519 key: "
            "use --key-type p256, rsa2048 or rsa3072 (Ed25519 suits person certificates "
            "and the hub's receipt-signing certificate)"
        )


def generate_key(key_type: KeyType) -> SigningKey:
    """A fresh private key of ``key_type``."""
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if key_type is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    bits = 2048 if key_type is KeyType.RSA2048 else 3072
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _hash_for(key: SigningKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def key_pem(key: SigningKey) -> bytes:
    """Unencrypted PKCS#8 PEM (demo only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificates_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM, in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate, its private key, and the chain to present (leaf first, root excluded)."""

    certificate: x509.Certificate
    key: SigningKey
    chain: tuple[x509.Certificate, ...]

    def identity(self, algorithm: SignatureAlgorithm | None = None) -> SigningIdentity:
        """Ready to pass to ``sign_document`` or ``sign_receipt``."""
        return SigningIdentity(self.key, self.chain, algorithm)

    def chain_pem(self) -> bytes:
        """The chain as gRPC's ``certificate_chain`` wants it."""
        return certificates_pem(self.chain)


def _name(common_name: str, *, organization: str = DEMO_ORGANIZATION) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, unicodedata.normalize("NFC", common_name)),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    cert_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _file(stem: Path, extension: str) -> Path:
    # Not Path.with_suffix: agency codes contain dots ("000.00.00.H45" has suffix ".H45").
    return stem.parent / f"{stem.name}{extension}"


def _check_code(code: str) -> str:
    # Codes become URIs and file names: keep them to the identifier alphabet.
    if AGENCY_CODE_PATTERN.fullmatch(code) is None:
        raise ValueError(f"not an agency code: {code!r}")
    return code


def _urn(prefix: str, code: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(prefix + _check_code(code))


def _window(
    not_before: dt.datetime | None, not_after: dt.datetime | None, lifetime: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or dt.datetime.now(dt.UTC) - _BACKDATE
    return start, not_after or start + lifetime


@dataclass(slots=True)
class DemoCA:
    """An in-memory demo CA: a root and, usually, an intermediate that issues the leaves."""

    root: IssuedCertificate
    intermediate: IssuedCertificate | None = None
    # Where certificates say the CA publishes its certificates and CRLs (national_profile).
    publication_base: str = DEMO_PUBLICATION_BASE
    # Revoked serials per CA (keyed by "root"/"intermediate") and the last CRL number used.
    revoked: dict[str, dict[int, dt.datetime]] = field(default_factory=dict)
    crl_numbers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        common_name: str = ROOT_COMMON_NAME,
        key_type: KeyType = KeyType.P256,
        with_intermediate: bool = True,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> DemoCA:
        """A new root (and intermediate); CA keys default to P-256."""
        if key_type is KeyType.ED25519:
            # cryptography's verifier (Web PKI profile) refuses Ed25519-signed certificates,
            # and so do several TLS stacks; Ed25519 stays available for leaf keys.
            raise ValueError("CA keys must be p256, rsa2048 or rsa3072")
        start, end = _window(not_before, not_after, _ROOT_LIFETIME)
        root_key = generate_key(key_type)
        subject = ca_name(common_name)
        root_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=1 if with_intermediate else 0),
                critical=True,
            )
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
            )
            .sign(root_key, _hash_for(root_key))
        )
        ca = cls(root=IssuedCertificate(root_cert, root_key, (root_cert,)))
        if with_intermediate:
            issuing = (
                ISSUING_COMMON_NAME
                if common_name == ROOT_COMMON_NAME
                else f"{common_name} - issuing"
            )
            ca.intermediate = ca._issue_intermediate(key_type, issuing)
        return ca

    def _issue_intermediate(self, key_type: KeyType, common_name: str) -> IssuedCertificate:
        key = generate_key(key_type)
        start = self.root.certificate.not_valid_before_utc
        end = min(self.root.certificate.not_valid_after_utc, start + _INTERMEDIATE_LIFETIME)
        cert = (
            self._builder(self.root, ca_name(common_name), key, start, end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(crl_distribution_points(self.publication_base, "root"), critical=False)
            .add_extension(
                authority_information_access(self.publication_base, "root", None), critical=False
            )
            .sign(self.root.key, _hash_for(self.root.key))
        )
        return IssuedCertificate(cert, key, (cert,))

    @property
    def issuing(self) -> IssuedCertificate:
        """The CA that signs leaves: the intermediate if there is one."""
        return self.intermediate or self.root

    @property
    def root_certificate(self) -> x509.Certificate:
        """The trust anchor peers must be given."""
        return self.root.certificate

    @staticmethod
    def _builder(
        issuer: IssuedCertificate,
        subject: x509.Name,
        key: SigningKey,
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(_authority_key_id(issuer.certificate), critical=False)
        )

    def _issue_leaf(
        self,
        subject: x509.Name,
        *,
        key_type: KeyType,
        usage: x509.KeyUsage,
        ekus: Sequence[x509.ObjectIdentifier],
        names: Sequence[x509.GeneralName],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
        key: SigningKey | None,
        ocsp_url: str | None = None,
        signer: bool = False,
    ) -> IssuedCertificate:
        key = key or generate_key(key_type)
        start, end = _window(not_before, not_after, _LEAF_LIFETIME)
        issuer = self.issuing
        label = "intermediate" if self.intermediate is not None else "root"
        builder = (
            self._builder(issuer, subject, key, start, end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            # National CA certificates name their CRL, their issuer's certificate and their
            # OCSP responder (national_profile); the demo's do too (OCSP when one is given).
            .add_extension(crl_distribution_points(self.publication_base, label), critical=False)
            .add_extension(
                authority_information_access(self.publication_base, label, ocsp_url),
                critical=False,
            )
        )
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(list(names)), critical=False
            )
        if signer:
            builder = builder.add_extension(certificate_policies(), critical=False)
        cert = builder.sign(issuer.key, _hash_for(issuer.key))
        intermediates = () if self.intermediate is None else (self.intermediate.certificate,)
        return IssuedCertificate(cert, key, (cert, *intermediates))

    def issue_agency(
        self,
        code: str,
        name: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: SigningKey | None = None,
        ocsp_url: str | None = None,
        parent: str | None = None,
        locality: str = "Hà Nội",
        docaxis_identity: bool = True,
    ) -> IssuedCertificate:
        """An agency certificate: organisation signatures and the agency's mTLS client cert.

        Shaped like the national CA's organisation certificate (CN the agency, O its
        ``parent``), plus the docaxis identity and clientAuth it needs for mutual TLS. Without
        ``docaxis_identity`` it is the national CA's certificate as it is: a seal that signs
        only and names no docaxis identity (the directory must bind it to ``code``)."""
        return self._issue_leaf(
            OrganizationSubject(name, parent=parent, locality=locality).x509_name(),
            key_type=key_type,
            usage=_key_usage(digital_signature=True, content_commitment=True),
            ekus=[ExtendedKeyUsageOID.CLIENT_AUTH, DOCUMENT_SIGNING_EKU]
            if docaxis_identity
            else [],
            names=[_urn(AGENCY_URN_PREFIX, code)] if docaxis_identity else [],
            not_before=not_before,
            not_after=not_after,
            key=key,
            ocsp_url=ocsp_url,
            signer=True,
        )

    def issue_person(
        self,
        full_name: str,
        agency_code: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: SigningKey | None = None,
        ocsp_url: str | None = None,
        organization: str | None = None,
        unit: str | None = None,
        locality: str = "Hà Nội",
        docaxis_identity: bool = True,
    ) -> IssuedCertificate:
        """An official's certificate: document signing only (officials do not log in via mTLS).

        Shaped like the national CA's person certificate (CN the official, OU the ``unit``,
        O the ``organization``, by default the agency code), plus the docaxis identity; without
        ``docaxis_identity``, as the national CA issues it (the directory must bind it)."""
        subject = PersonSubject(
            full_name, organization or agency_code, unit=unit, locality=locality
        )
        return self._issue_leaf(
            subject.x509_name(),
            key_type=key_type,
            usage=_key_usage(digital_signature=True, content_commitment=True),
            ekus=[DOCUMENT_SIGNING_EKU] if docaxis_identity else [],
            names=[_urn(OFFICIAL_URN_PREFIX, agency_code)] if docaxis_identity else [],
            not_before=not_before,
            not_after=not_after,
            key=key,
            ocsp_url=ocsp_url,
            signer=True,
        )

    def issue_server(
        self,
        *,
        common_name: str = "docaxis server",
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: SigningKey | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate (serverAuth) for the given DNS names and IPs."""
        names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        return self._issue_leaf(
            _name(common_name),
            key_type=key_type,
            # keyEncipherment only matters for RSA key exchange in TLS 1.2 clients.
            usage=_key_usage(
                digital_signature=True, key_encipherment=key_type.value.startswith("rsa")
            ),
            ekus=[ExtendedKeyUsageOID.SERVER_AUTH],
            names=names,
            not_before=not_before,
            not_after=not_after,
            key=key,
        )

    def issue_role(
        self,
        role: Role,
        common_name: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: SigningKey | None = None,
    ) -> IssuedCertificate:
        """An operator (admin, monitor) or hub client certificate; the hub's also signs receipts."""
        hub = role is Role.HUB
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH, *([DOCUMENT_SIGNING_EKU] if hub else [])]
        return self._issue_leaf(
            _name(common_name),
            key_type=key_type,
            usage=_key_usage(digital_signature=True, content_commitment=hub),
            ekus=ekus,
            names=[x509.UniformResourceIdentifier(ROLE_URN_PREFIX + role.value)],
            not_before=not_before,
            not_after=not_after,
            key=key,
        )

    def issue_tsa(
        self, common_name: str = "DEMO TSA", *, key_type: KeyType = KeyType.P256
    ) -> IssuedCertificate:
        """A time-stamping authority's certificate (RFC 3161 §2.3: EKU timeStamping, critical,
        and nothing else), for docaxis_client.trust.tsa."""
        if key_type is KeyType.ED25519:
            raise ValueError("a TSA key must be p256, rsa2048 or rsa3072")
        key = generate_key(key_type)
        start, end = _window(None, None, _LEAF_LIFETIME)
        issuer = self.issuing
        cert = (
            self._builder(issuer, _name(common_name), key, start, end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(digital_signature=True, content_commitment=True), critical=True
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .sign(issuer.key, _hash_for(issuer.key))
        )
        intermediates = () if self.intermediate is None else (self.intermediate.certificate,)
        return IssuedCertificate(cert, key, (cert, *intermediates))

    def issue_peer(self, hub_code: str, *, key_type: KeyType = KeyType.P256) -> IssuedCertificate:
        """A federation peer's certificate (`urn:docaxis:peer:<hub code>`): one hub calling
        another, and signing the receipts of what peers hand over to it (so each receipt proves
        which hub took the document over). Not an agency, operator or the hub role: it acts as
        nothing else."""
        return self._issue_leaf(
            _name(f"docaxis peer hub {hub_code}"),
            key_type=key_type,
            usage=_key_usage(digital_signature=True, content_commitment=True),
            ekus=[ExtendedKeyUsageOID.CLIENT_AUTH, DOCUMENT_SIGNING_EKU],
            names=[x509.UniformResourceIdentifier(PEER_URN_PREFIX + hub_code)],
            not_before=None,
            not_after=None,
            key=None,
        )

    def _label_of_issuer(self, certificate: x509.Certificate) -> str:
        if (
            self.intermediate is not None
            and certificate.issuer == self.intermediate.certificate.subject
        ):
            return "intermediate"
        if certificate.issuer == self.root.certificate.subject:
            return "root"
        raise ValueError("certificate was not issued by this demo CA")

    def _ca(self, label: str) -> IssuedCertificate:
        if label == "intermediate" and self.intermediate is not None:
            return self.intermediate
        return self.root

    def revoke(self, certificate: x509.Certificate, *, at: dt.datetime | None = None) -> None:
        """Put ``certificate`` on its issuer's CRL (call :meth:`crls` to get the new CRLs)."""
        moment = (at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        self.revoked.setdefault(self._label_of_issuer(certificate), {})[
            certificate.serial_number
        ] = moment

    def crl(self, label: str = "intermediate") -> x509.CertificateRevocationList:
        """A freshly signed CRL of one CA ("root" or "intermediate"), numbered monotonically."""
        if label not in ("root", "intermediate"):
            raise ValueError(f"unknown CA label {label!r}")
        if label == "intermediate" and self.intermediate is None:
            label = "root"
        ca = self._ca(label)
        number = self.crl_numbers.get(label, 0) + 1
        self.crl_numbers[label] = number
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.certificate.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + _CRL_LIFETIME)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(_authority_key_id(ca.certificate), critical=False)
        )
        for serial, revoked_at in sorted(self.revoked.get(label, {}).items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(revoked_at)
                .build()
            )
        return builder.sign(ca.key, _hash_for(ca.key))

    def crls(self) -> list[x509.CertificateRevocationList]:
        """One CRL per CA; an empty but signed CRL still says "nothing revoked as of now"."""
        labels = ["root"] + (["intermediate"] if self.intermediate is not None else [])
        return [self.crl(label) for label in labels]

    def trust_store(self) -> TrustStore:
        """A trust store anchored at this root, with the intermediate and current CRLs."""
        intermediates = [] if self.intermediate is None else [self.intermediate.certificate]
        return TrustStore([self.root.certificate], intermediates=intermediates, crls=self.crls())


@dataclass(frozen=True, slots=True)
class IssuedFiles:
    """Where :class:`PkiFolder` wrote an issued certificate."""

    certificate: Path
    key: Path
    serial: int


_SLUG_DROP = re.compile(r"[^a-z0-9.]+")


def slug(text: str) -> str:
    """ASCII file-name form of a Vietnamese name: ``Nguyễn Văn Đức`` -> ``nguyen-van-duc``."""
    # NFKD strips tone and vowel marks; đ/Đ is a letter of its own, not d plus a mark.
    ascii_text = (
        unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    result = _SLUG_DROP.sub("-", ascii_text.lower()).strip("-.")
    if not result:
        raise ValueError(f"cannot make a file name from {text!r}")
    return result


class PkiFolder:
    """A demo PKI on disk; the ``docaxis pki …`` commands call these methods.

    Layout::

        ca.pem, ca.key                      root (ca.pem is the trust anchor to distribute)
        intermediate.pem, intermediate.key  issuing CA, when created with one
        crl/root.pem, crl/intermediate.pem  current CRLs
        agencies/<code>.pem|.key            chain PEM (leaf first, no root) and key
        persons/<agency code>/<name>.pem|.key
        servers/<name>.pem|.key
        roles/<role>/<name>.pem|.key

    Private keys are written 0600 and folders 0700.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def init(
        self,
        *,
        key_type: KeyType = KeyType.P256,
        with_intermediate: bool = True,
        not_after: dt.datetime | None = None,
        force: bool = False,
    ) -> DemoCA:
        """Create a new CA in an empty folder (or replace one with ``force``)."""
        if (self.path / "ca.pem").exists() and not force:
            raise FileExistsError(f"{self.path / 'ca.pem'} exists; pass force to replace the CA")
        ca = DemoCA.create(
            key_type=key_type, with_intermediate=with_intermediate, not_after=not_after
        )
        self._write_pair(self.path / "ca", ca.root.chain, ca.root.key, force=True)
        if ca.intermediate is not None:
            self._write_pair(
                self.path / "intermediate", ca.intermediate.chain, ca.intermediate.key, force=True
            )
        elif (self.path / "intermediate.pem").exists():
            (self.path / "intermediate.pem").unlink()
            (self.path / "intermediate.key").unlink(missing_ok=True)
        self._write_crls(ca)
        return ca

    def load(self) -> DemoCA:
        """Read the CA, its keys and the revocations recorded in its CRLs."""
        root = self._read_pair(self.path / "ca")
        intermediate_path = self.path / "intermediate"
        intermediate = (
            self._read_pair(intermediate_path)
            if _file(intermediate_path, ".pem").exists()
            else None
        )
        ca = DemoCA(root=root, intermediate=intermediate)
        for label in ("root", "intermediate"):
            crl_path = self.path / "crl" / f"{label}.pem"
            if not crl_path.exists():
                continue
            crl = x509.load_pem_x509_crl(crl_path.read_bytes())
            ca.revoked[label] = {entry.serial_number: entry.revocation_date_utc for entry in crl}
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            ca.crl_numbers[label] = number
        return ca

    def issue_agency(
        self,
        code: str,
        name: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        force: bool = False,
        parent: str | None = None,
        locality: str = "Hà Nội",
    ) -> IssuedFiles:
        """Issue ``agencies/<code>.pem|.key`` (the agency's mTLS client certificate, which also
        signs for the organisation)."""
        check_tls_key_type(key_type, "an agency certificate")
        issued = self.load().issue_agency(
            code,
            name,
            key_type=key_type,
            not_before=not_before,
            not_after=not_after,
            parent=parent,
            locality=locality,
        )
        return self._save(self.path / "agencies" / code, issued, force=force)

    def issue_person(
        self,
        full_name: str,
        agency_code: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        force: bool = False,
        organization: str | None = None,
        unit: str | None = None,
        locality: str = "Hà Nội",
    ) -> IssuedFiles:
        """Issue ``persons/<agency code>/<name slug>.pem|.key``."""
        issued = self.load().issue_person(
            full_name,
            agency_code,
            key_type=key_type,
            not_before=not_before,
            not_after=not_after,
            organization=organization,
            unit=unit,
            locality=locality,
        )
        return self._save(
            self.path / "persons" / agency_code / slug(full_name), issued, force=force
        )

    def issue_server(
        self,
        name: str = "localhost",
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        force: bool = False,
    ) -> IssuedFiles:
        """Issue ``servers/<name>.pem|.key``."""
        check_tls_key_type(key_type, "a server certificate")
        issued = self.load().issue_server(
            common_name=name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            key_type=key_type,
            not_before=not_before,
            not_after=not_after,
        )
        return self._save(self.path / "servers" / slug(name), issued, force=force)

    def issue_tsa(self, *, force: bool = False) -> IssuedFiles:
        """Issue ``tsa/tsa.pem|.key``: the demo's time-stamping authority."""
        return self._save(self.path / "tsa" / "tsa", self.load().issue_tsa(), force=force)

    def issue_peer(self, hub_code: str, *, force: bool = False) -> IssuedFiles:
        """Issue ``peers/<hub code>.pem|.key``: this hub's certificate towards its peer hubs."""
        issued = self.load().issue_peer(hub_code)
        return self._save(self.path / "peers" / slug(hub_code), issued, force=force)

    def issue_role(
        self,
        role: Role,
        name: str,
        *,
        key_type: KeyType = KeyType.P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        force: bool = False,
    ) -> IssuedFiles:
        """Issue ``roles/<role>/<name>.pem|.key``; operators' certificates are TLS clients,
        the hub's signs receipts (and is a TLS client only towards a separate directory)."""
        if role is not Role.HUB:
            check_tls_key_type(key_type, f"a {role.value} certificate")
        issued = self.load().issue_role(
            role, name, key_type=key_type, not_before=not_before, not_after=not_after
        )
        return self._save(self.path / "roles" / role.value / slug(name), issued, force=force)

    def revoke(self, certificate_path: Path) -> list[Path]:
        """Revoke the (leaf) certificate in ``certificate_path``; rewrites the CRLs."""
        certificate = x509.load_pem_x509_certificates(certificate_path.read_bytes())[0]
        ca = self.load()
        ca.revoke(certificate)
        return self._write_crls(ca)

    def trust_store(self) -> TrustStore:
        """Trust store from ``ca.pem``, ``intermediate.pem`` and ``crl/*.pem``."""
        intermediate = self.path / "intermediate.pem"
        crl_dir = self.path / "crl"
        return TrustStore.from_pem(
            (self.path / "ca.pem").read_bytes(),
            intermediates_pem=intermediate.read_bytes() if intermediate.exists() else b"",
            crls_pem=[path.read_bytes() for path in sorted(crl_dir.glob("*.pem"))],
        )

    @staticmethod
    def load_identity(certificate_path: Path) -> SigningIdentity:
        """A signing identity from ``<name>.pem`` and the ``<name>.key`` beside it."""
        return SigningIdentity.from_pem(
            certificate_path.read_bytes(),
            _file(certificate_path.parent / certificate_path.stem, ".key").read_bytes(),
        )

    def _save(self, stem: Path, issued: IssuedCertificate, *, force: bool) -> IssuedFiles:
        certificate, key = self._write_pair(stem, issued.chain, issued.key, force=force)
        return IssuedFiles(certificate, key, issued.certificate.serial_number)

    def _write_crls(self, ca: DemoCA) -> list[Path]:
        labels = ["root"] + (["intermediate"] if ca.intermediate is not None else [])
        written = []
        for label, crl in zip(labels, ca.crls(), strict=True):
            path = self.path / "crl" / f"{label}.pem"
            _mkdir(path.parent)
            path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
            written.append(path)
        stale = self.path / "crl" / "intermediate.pem"
        if ca.intermediate is None and stale.exists():
            stale.unlink()
        return written

    def _write_pair(
        self,
        stem: Path,
        chain: Sequence[x509.Certificate],
        key: SigningKey,
        *,
        force: bool,
    ) -> tuple[Path, Path]:
        certificate_path, key_path = _file(stem, ".pem"), _file(stem, ".key")
        if not force and (certificate_path.exists() or key_path.exists()):
            raise FileExistsError(f"{certificate_path} exists; pass force to re-issue")
        _mkdir(stem.parent)
        write_private(key_path, key_pem(key))
        certificate_path.write_bytes(certificates_pem(chain))
        return certificate_path, key_path

    @staticmethod
    def _read_pair(stem: Path) -> IssuedCertificate:
        identity = PkiFolder.load_identity(_file(stem, ".pem"))
        return IssuedCertificate(identity.certificate, identity.key, identity.chain)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Writes a file only its owner may read (a private key, say)."""
    # Create with 0600 from the start (no window where the key is world-readable), and fix the
    # mode of a file that already existed with looser permissions.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
