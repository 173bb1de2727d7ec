"""Trust store, chain validation at a given time, CRL revocation, identities in certificates."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from docaxis_client.recent import Recent
from docaxis_client.trust.canonical import nfc
from docaxis_client.trust.errors import (
    CertificateError,
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    CertificateUsageError,
    CrlInvalidError,
    UntrustedIssuerError,
)
from docaxis_client.trust.keys import KEPT_CERTIFICATES, key_id
from docaxis_client.trust.per_certificate import per_certificate

# Identities live in URI subjectAltNames; `identity_uri` says why.
IDENTITY_URN_PREFIX = "urn:docaxis:"
AGENCY_URN_PREFIX = "urn:docaxis:agency:"
OFFICIAL_URN_PREFIX = "urn:docaxis:official:"
ROLE_URN_PREFIX = "urn:docaxis:role:"
# A hub among federated hubs (`urn:docaxis:peer:<hub code>`): what one hub presents to another.
PEER_URN_PREFIX = "urn:docaxis:peer:"

# RFC 9336 id-kp-documentSigning.
DOCUMENT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")

# Extensions whose meaning we understand on a leaf; any other critical one must be refused
# (RFC 5280 §4.2), which cryptography's permissive extension policy no longer does for us.
_KNOWN_LEAF_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
    }
)


class Role(enum.StrEnum):
    """Non-agency identities: operators and the hub itself."""

    ADMIN = "admin"
    MONITOR = "monitor"
    HUB = "hub"
    GATEWAY = "gateway"  # the REST/edXML gateway, acting for the agencies it authenticated


class CertificatePurpose(enum.StrEnum):
    """What a leaf is being validated for; decides the key usage and EKU checks."""

    DOCUMENT_SIGNING = "document-signing"
    CLIENT_AUTH = "client-auth"
    SERVER_AUTH = "server-auth"


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    """An official: full name (subject CN) and the agency that employs them."""

    full_name: str
    agency_code: str


@per_certificate(KEPT_CERTIFICATES)
def describe(certificate: x509.Certificate) -> str:
    """RFC 4514 subject, the form errors and logs use."""
    return certificate.subject.rfc4514_string()


def _usage_error(certificate: x509.Certificate, detail: str) -> CertificateUsageError:
    return CertificateUsageError(describe(certificate), certificate.serial_number, detail)


@per_certificate(KEPT_CERTIFICATES)
def identity_uri(certificate: x509.Certificate) -> str | None:
    """The one ``urn:docaxis:`` URI SAN of a certificate, or None.

    Why a URI SAN and not ``organizationIdentifier`` in the subject: SANs are what TLS stacks and
    cryptography's verifier hand back for a client, a URN cannot be confused with a display name,
    the same slot carries agency, official and role identities under one namespace, and we do not
    collide with whatever ETSI-style ``NTRVN-…`` value a national CA may put in the subject. More
    than one docaxis URI is refused: an ambiguous certificate must not pick its own identity.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [
        uri
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(IDENTITY_URN_PREFIX)
    ]
    if len(uris) > 1:
        raise _usage_error(certificate, f"more than one docaxis identity: {uris}")
    return uris[0] if uris else None


def agency_code_of(certificate: x509.Certificate) -> str | None:
    """Agency code of an agency (organisation) certificate; None for any other kind."""
    uri = identity_uri(certificate)
    if uri is None or not uri.startswith(AGENCY_URN_PREFIX):
        return None
    code = uri.removeprefix(AGENCY_URN_PREFIX)
    if not code:
        raise _usage_error(certificate, "empty agency code")
    return code


def person_of(certificate: x509.Certificate) -> PersonIdentity | None:
    """Name and employer of an official's certificate; None for any other kind."""
    uri = identity_uri(certificate)
    if uri is None or not uri.startswith(OFFICIAL_URN_PREFIX):
        return None
    code = uri.removeprefix(OFFICIAL_URN_PREFIX)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not code or len(names) != 1 or not isinstance(names[0].value, str):
        raise _usage_error(certificate, "an official's certificate needs one CN and an agency")
    return PersonIdentity(full_name=nfc(names[0].value), agency_code=code)


def peer_hub_of(certificate: x509.Certificate) -> str | None:
    """The hub code of a federation peer's certificate; None for any other kind."""
    uri = identity_uri(certificate)
    if uri is None or not uri.startswith(PEER_URN_PREFIX):
        return None
    code = uri.removeprefix(PEER_URN_PREFIX)
    if not code:
        raise _usage_error(certificate, "empty hub code")
    return code


def role_of(certificate: x509.Certificate) -> Role | None:
    """Operator or hub role of a certificate; None for agencies and officials."""
    uri = identity_uri(certificate)
    if uri is None or not uri.startswith(ROLE_URN_PREFIX):
        return None
    try:
        return Role(uri.removeprefix(ROLE_URN_PREFIX))
    except ValueError:
        # Fail loudly: a role we do not know is a mis-issued certificate, not "no role".
        raise _usage_error(certificate, f"unknown role in {uri}") from None


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    """A certificate that expires within the warning window (or already has)."""

    subject: str
    serial: int
    not_after: dt.datetime
    remaining: dt.timedelta

    @property
    def expired(self) -> bool:
        """True once ``not_after`` has passed."""
        return self.remaining <= dt.timedelta(0)


def expiring_certificates(
    certificates: Iterable[x509.Certificate], *, within: dt.timedelta, at: dt.datetime
) -> list[ExpiryWarning]:
    """Certificates whose notAfter falls before ``at + within``, soonest first."""
    _require_aware(at)
    warnings = [
        ExpiryWarning(
            subject=describe(cert),
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            remaining=cert.not_valid_after_utc - at,
        )
        for cert in certificates
        if cert.not_valid_after_utc <= at + within
    ]
    return sorted(warnings, key=lambda warning: warning.not_after)


def _require_aware(moment: dt.datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("validation times must be timezone-aware")


def _time_error(certificate: x509.Certificate, at: dt.datetime) -> CertificateError | None:
    if at < certificate.not_valid_before_utc:
        return CertificateNotYetValidError(
            describe(certificate),
            certificate.serial_number,
            f"valid from {certificate.not_valid_before_utc.isoformat()} (at {at.isoformat()})",
        )
    if at > certificate.not_valid_after_utc:
        return CertificateExpiredError(
            describe(certificate),
            certificate.serial_number,
            f"expired {certificate.not_valid_after_utc.isoformat()} (at {at.isoformat()})",
        )
    return None


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Revocation:
    revoked_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ValidatedChain:
    """A chain that validated: leaf first, trust anchor last."""

    certificates: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        """The end-entity certificate."""
        return self.certificates[0]


# Chains kept validated per store: every agency's signers and more, for a few MiB.
KEPT_CHAINS = 4096


@dataclass(frozen=True, slots=True)
class _Kept:
    """A path that validated from the chain `presented`, and the times at which every
    certificate on it is valid."""

    presented: tuple[x509.Certificate, ...]
    validated: ValidatedChain
    not_before: dt.datetime
    not_after: dt.datetime

    def of(self, chain: Sequence[x509.Certificate]) -> bool:
        """Whether `chain` is the very certificate objects this path was built from."""
        return len(chain) == len(self.presented) and all(
            a is b for a, b in zip(chain, self.presented, strict=True)
        )


def _kept(presented: tuple[x509.Certificate, ...], validated: ValidatedChain) -> _Kept:
    certificates = validated.certificates
    return _Kept(
        presented,
        validated,
        max(c.not_valid_before_utc for c in certificates),
        min(c.not_valid_after_utc for c in certificates),
    )


class TrustStore:
    """Trust anchors, known intermediates and their CRLs; validates chains offline."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        *,
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
        signing_ekus: frozenset[x509.ObjectIdentifier] = frozenset({DOCUMENT_SIGNING_EKU, ANY_EKU}),
    ) -> None:
        if not roots:
            raise ValueError("a trust store needs at least one root certificate")
        self._roots = tuple(roots)
        self._intermediates = tuple(intermediates)
        self._store = Store(list(self._roots))
        self._signing_ekus = signing_ekus
        self._revoked: dict[str, dict[int, _Revocation]] = {}
        self._crls = tuple(crls)
        for crl in crls:
            self._add_crl(crl)
        # Paths already built, by the chain presented and the purpose (validate says why that is
        # sound); validate runs in threads (signature verification is off the event loop). Keyed
        # by the certificate objects' ids, each entry holding the objects (so their ids stay
        # theirs) and checked against them: a certificate hashes by its whole parsed structure,
        # about 8 us each (per_certificate.py), and load_der_chain answers a signer's chain with
        # the same objects every time.
        self._kept: Recent[tuple[tuple[int, ...], CertificatePurpose], _Kept] = Recent(KEPT_CHAINS)
        self._kept_lock = threading.Lock()

    @classmethod
    def from_pem(
        cls,
        roots_pem: bytes,
        *,
        intermediates_pem: bytes = b"",
        crls_pem: Sequence[bytes] = (),
    ) -> TrustStore:
        """Build from PEM bundles (one PEM CRL per item of ``crls_pem``)."""
        return cls(
            x509.load_pem_x509_certificates(roots_pem),
            intermediates=(
                x509.load_pem_x509_certificates(intermediates_pem) if intermediates_pem else []
            ),
            crls=[x509.load_pem_x509_crl(pem) for pem in crls_pem],
        )

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """Trust anchors."""
        return self._roots

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """Intermediates offered to path building (not trusted by themselves)."""
        return self._intermediates

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The CRLs the store checks revocation against (all verified on construction)."""
        return self._crls

    def _add_crl(self, crl: x509.CertificateRevocationList) -> None:
        # A CRL is only as good as its signature: accept it from a store CA allowed to sign CRLs,
        # and refuse the whole store otherwise, so a forged or misplaced CRL is never silent.
        issuer_name = crl.issuer.rfc4514_string()
        for ca in (*self._roots, *self._intermediates):
            if ca.subject != crl.issuer:
                continue
            public_key = ca.public_key()
            if not isinstance(
                public_key,
                ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey,
            ):
                continue
            if not crl.is_signature_valid(public_key):
                continue
            if not _may_sign_crls(ca):
                raise CrlInvalidError(issuer_name, "issuer's key usage lacks cRLSign")
            revoked = self._revoked.setdefault(key_id(ca), {})
            for entry in crl:
                revoked[entry.serial_number] = _Revocation(entry.revocation_date_utc)
            return
        raise CrlInvalidError(issuer_name, "not signed by any CA of the trust store")

    def validate(
        self,
        chain: Sequence[x509.Certificate],
        *,
        at: dt.datetime,
        purpose: CertificatePurpose = CertificatePurpose.DOCUMENT_SIGNING,
    ) -> ValidatedChain:
        """Validate ``chain`` (leaf first) at time ``at`` for ``purpose``, then check CRLs.

        ``at`` is the signing time for signatures: a signature made while the certificate was
        valid stays verifiable after it expires. Revocation, by contrast, is not time-sliced:
        signing times are claimed by the signer, with no trusted timestamp, so a revoked key
        could otherwise backdate its way past its revocation.
        """
        _require_aware(at)
        if not chain:
            raise ValueError("empty certificate chain")
        # Building and checking the path is most of a signature's verification, and every
        # document of a signer presents the same chain. A path that validated at one time
        # validates at any time every certificate on it is valid: path building's only
        # time-dependent rule is each certificate's validity period (the leaf's extensions and
        # usage, checked below, do not depend on time, and the store's anchors, intermediates
        # and EKU set are fixed for its lifetime). Revocation is checked on every call, kept or
        # not: a reloaded CRL makes a new store, and even within one store nothing is skipped.
        presented = tuple(chain)
        key = (tuple(map(id, presented)), purpose)
        with self._kept_lock:
            kept = self._kept.get(key)
        if kept is not None and kept.of(presented) and kept.not_before <= at <= kept.not_after:
            self._check_revocation(kept.validated)
            return kept.validated
        validated = self._build_path(chain, at=at, purpose=purpose)
        with self._kept_lock:
            self._kept.put(key, _kept(presented, validated))
        self._check_revocation(validated)
        return validated

    def _build_path(
        self,
        chain: Sequence[x509.Certificate],
        *,
        at: dt.datetime,
        purpose: CertificatePurpose,
    ) -> ValidatedChain:
        """The path from `chain`'s leaf to an anchor at `at`, its leaf checked for `purpose`."""
        leaf, presented = chain[0], list(chain[1:])
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            # CA certificates get the full Web PKI profile. The leaf profile is relaxed
            # because the client profile insists on EKU clientAuth, which officials' document
            # signing certificates do not (and should not) carry; `_check_leaf` puts back the
            # leaf rules we rely on, with typed errors instead of one opaque string.
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [*presented, *self._intermediates])
        except VerificationError as exc:
            raise self._diagnose(leaf, presented, at, str(exc)) from exc
        validated = ValidatedChain(tuple(verified.chain))
        self._check_leaf(leaf, purpose)
        return validated

    def _diagnose(
        self,
        leaf: x509.Certificate,
        presented: list[x509.Certificate],
        at: dt.datetime,
        detail: str,
    ) -> CertificateError:
        # cryptography reports failures as one string; rebuild the path ourselves to give the
        # precise, typed reason, but only for a path that really ends at one of our roots, so an
        # attacker's made-up chain is always UNTRUSTED_ISSUER.
        pool = [*presented, *self._intermediates]
        path = self._anchored_path(leaf, pool, depth=0)
        if path is not None:
            for cert in path:
                error = _time_error(cert, at)
                if error is not None:
                    return error
        return UntrustedIssuerError(describe(leaf), leaf.serial_number, detail)

    def _anchored_path(
        self, cert: x509.Certificate, pool: list[x509.Certificate], depth: int
    ) -> list[x509.Certificate] | None:
        if depth > 8:
            return None
        for root in self._roots:
            if cert == root or _issued_by(cert, root):
                return [cert] if cert == root else [cert, root]
        for issuer in pool:
            if issuer != cert and _issued_by(cert, issuer):
                rest = self._anchored_path(issuer, pool, depth + 1)
                if rest is not None:
                    return [cert, *rest]
        return None

    def _check_leaf(self, leaf: x509.Certificate, purpose: CertificatePurpose) -> None:
        _check_leaf_extensions(leaf)
        _check_key_usage(leaf, purpose)
        try:
            ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            ekus = None
        if purpose is CertificatePurpose.DOCUMENT_SIGNING:
            # No EKU means "any purpose" (RFC 5280); national CA signing certificates often
            # predate RFC 9336, so the accepted set is configurable on the store.
            if ekus is not None and not ekus & self._signing_ekus:
                raise _usage_error(leaf, "extended key usage does not allow document signing")
            return
        wanted, label = (
            (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")
            if purpose is CertificatePurpose.CLIENT_AUTH
            else (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth")
        )
        if ekus is None or wanted not in ekus:
            raise _usage_error(leaf, f"extended key usage lacks {label}")

    def _check_revocation(self, validated: ValidatedChain) -> None:
        # Each certificate is looked up in the CRLs of the certificate that issued it on this
        # path (matched by key, so a renewed CA certificate keeps its CRL).
        certificates = validated.certificates
        for cert, issuer in itertools.pairwise(certificates):
            revocation = self._revoked.get(key_id(issuer), {}).get(cert.serial_number)
            if revocation is not None:
                raise CertificateRevokedError(
                    describe(cert), cert.serial_number, revocation.revoked_at
                )

    def expiring(self, *, within: dt.timedelta, at: dt.datetime) -> list[ExpiryWarning]:
        """Roots and intermediates of this store that expire within ``within`` of ``at``."""
        return expiring_certificates((*self._roots, *self._intermediates), within=within, at=at)


def _check_leaf_extensions(leaf: x509.Certificate) -> None:
    """No critical extension we do not understand, and not a CA certificate."""
    for extension in leaf.extensions:
        if extension.critical and extension.oid not in _KNOWN_LEAF_EXTENSIONS:
            raise _usage_error(leaf, f"unknown critical extension {extension.oid.dotted_string}")
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise _usage_error(leaf, "a CA certificate cannot sign documents or authenticate")
    except x509.ExtensionNotFound:
        pass


def _check_key_usage(leaf: x509.Certificate, purpose: CertificatePurpose) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise _usage_error(leaf, "key usage extension is missing") from None
    if purpose is CertificatePurpose.DOCUMENT_SIGNING:
        if not (usage.digital_signature or usage.content_commitment):
            raise _usage_error(leaf, "key usage lacks digitalSignature/nonRepudiation")
    elif not usage.digital_signature:
        raise _usage_error(leaf, "key usage lacks digitalSignature")


def _may_sign_crls(ca: x509.Certificate) -> bool:
    try:
        return ca.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return True
