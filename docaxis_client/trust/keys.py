"""Accepted signature algorithms, signing identities (key + chain) and raw sign/verify."""

from __future__ import annotations

import enum
import functools
import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from docaxis_client.trust.errors import UnsupportedAlgorithmError
from docaxis_client.trust.per_certificate import per_certificate

SigningKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
VerifyingKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048


class SignatureAlgorithm(enum.StrEnum):
    """Wire names of the accepted algorithms; all hash with SHA-256 where a hash is chosen."""

    ED25519 = "ed25519"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    RSA_PKCS1V15_SHA256 = "rsa-pkcs1v15-sha256"
    RSA_PSS_SHA256 = "rsa-pss-sha256"


# Salt length pinned to the digest length (RFC 8017's recommendation) instead of MAX_LENGTH,
# so signers using HSMs or other libraries produce signatures we verify the same way.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


_RSA_FAMILY = frozenset({SignatureAlgorithm.RSA_PSS_SHA256, SignatureAlgorithm.RSA_PKCS1V15_SHA256})


def parse_algorithm(name: str) -> SignatureAlgorithm:
    """Map a wire name to the enum, or raise ``UNSUPPORTED_ALGORITHM``."""
    try:
        return SignatureAlgorithm(name)
    except ValueError:
        raise UnsupportedAlgorithmError(f"unknown signature algorithm {name!r}") from None


def default_algorithm(key: SigningKey | VerifyingKey) -> SignatureAlgorithm:
    """The algorithm a key signs with unless told otherwise.

    RSA keys default to PKCS#1 v1.5 with SHA-256: the scheme Vietnamese national CA tokens and
    the DMS products in use sign with, and what the demo uses. RSA-PSS is accepted too; ask for
    it explicitly (``SigningIdentity(..., algorithm=SignatureAlgorithm.RSA_PSS_SHA256)``).
    """
    check_key(key)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return SignatureAlgorithm.ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return SignatureAlgorithm.ECDSA_P256_SHA256
    return SignatureAlgorithm.RSA_PKCS1V15_SHA256


def check_key(key: object) -> None:
    """Refuse key types and sizes outside the policy (P-256 only; RSA of at least 2048 bits)."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise UnsupportedAlgorithmError(f"EC curve {key.curve.name} is not accepted (P-256)")
        return
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnsupportedAlgorithmError(f"RSA key of {key.key_size} bits is below 2048")
        return
    raise UnsupportedAlgorithmError(f"key type {type(key).__name__} is not accepted")


def _check_pair(key: SigningKey | VerifyingKey, algorithm: SignatureAlgorithm) -> None:
    natural = default_algorithm(key)
    fits = algorithm in _RSA_FAMILY if natural in _RSA_FAMILY else algorithm is natural
    if not fits:
        raise UnsupportedAlgorithmError(f"{algorithm} cannot be used with {type(key).__name__}")


Signer: TypeAlias = Callable[[bytes], bytes]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()
_PKCS1V15 = padding.PKCS1v15()


def signer(key: SigningKey, algorithm: SignatureAlgorithm) -> Signer:
    """The function that signs a message with ``key`` under ``algorithm`` (ECDSA signatures are
    DER-encoded, as X.509 and CMS carry them), the pair checked and the key's type found once:
    a hub signs a receipt for every copy acknowledged, and finding them again for each took
    four to six ABC ``isinstance`` checks and a new ``ECDSA(SHA256())``."""
    _check_pair(key, algorithm)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_key = key
        return lambda message: ec_key.sign(message, _ECDSA_SHA256)
    rsa_key = key
    if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
        return lambda message: rsa_key.sign(message, _PSS, _SHA256)
    return lambda message: rsa_key.sign(message, _PKCS1V15, _SHA256)


def sign_bytes(key: SigningKey, algorithm: SignatureAlgorithm, message: bytes) -> bytes:
    """Sign ``message`` once (an identity that signs often keeps its :func:`signer`)."""
    return signer(key, algorithm)(message)


def verify_bytes(
    key: VerifyingKey, algorithm: SignatureAlgorithm, message: bytes, signature: bytes
) -> bool:
    """True when ``signature`` verifies; key/algorithm mismatches raise instead."""
    _check_pair(key, algorithm)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            key.verify(signature, message, _PSS, hashes.SHA256())
        else:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def public_key_of(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    """The certificate's public key, any type; UnsupportedAlgorithmError when it is unreadable
    (a sender's certificate parses lazily: a malformed key only shows here, found by tests/fuzz)."""
    try:
        return certificate.public_key()
    except (ValueError, CryptographyUnsupportedAlgorithm) as exc:
        raise UnsupportedAlgorithmError(f"certificate key unreadable: {exc}") from exc


def verifying_key(certificate: x509.Certificate) -> VerifyingKey:
    """The certificate's public key, if it is of an accepted type and size."""
    key = public_key_of(certificate)
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise UnsupportedAlgorithmError(f"certificate key type {type(key).__name__} not accepted")
    check_key(key)
    return key


# Pure functions of a certificate, asked for every receipt a hub signs and every signature it
# checks, mostly of the same few certificate objects: kept by the object (per_certificate.py).
KEPT_CERTIFICATES = 4096


@per_certificate(KEPT_CERTIFICATES)
def key_id(certificate: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the SubjectPublicKeyInfo: stable across certificate renewals."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


@functools.lru_cache(maxsize=256)
def _der_chain(chain: tuple[x509.Certificate, ...]) -> tuple[bytes, ...]:
    """Encoded once per identity: every document a DMS signs and every receipt a hub signs
    carries its chain."""
    return tuple(cert.public_bytes(serialization.Encoding.DER) for cert in chain)


@per_certificate(KEPT_CERTIFICATES)
def certificate_sha256(certificate: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate (binds a signature to one certificate)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """A private key with its certificate chain (leaf first, root optional)."""

    key: SigningKey
    chain: tuple[x509.Certificate, ...]
    algorithm: SignatureAlgorithm | None = None
    # Derived once, not per signature: each lookup hashed the certificates again (about 8 us of
    # the 60 a hub spent on each transport receipt before its signature, two receipts a document).
    _effective: SignatureAlgorithm = field(init=False, repr=False, compare=False)
    _key_id: str = field(init=False, repr=False, compare=False)
    _der: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _signer: Signer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a signing identity needs at least its own certificate")
        check_key(self.key)
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        mine = self.key.public_key().public_bytes(serialization.Encoding.DER, public)
        theirs = self.chain[0].public_key().public_bytes(serialization.Encoding.DER, public)
        # Catch wiring mistakes at startup rather than as SIGNATURE_INVALID at the receiver.
        if mine != theirs:
            raise ValueError("the private key does not belong to the leaf certificate")
        if self.algorithm is not None:
            _check_pair(self.key, self.algorithm)
        object.__setattr__(self, "_effective", self.algorithm or default_algorithm(self.key))
        object.__setattr__(self, "_key_id", key_id(self.chain[0]))
        object.__setattr__(self, "_der", _der_chain(self.chain))
        object.__setattr__(self, "_signer", signer(self.key, self._effective))

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate."""
        return self.chain[0]

    @property
    def effective_algorithm(self) -> SignatureAlgorithm:
        """The explicit algorithm, or the key's default."""
        return self._effective

    @property
    def key_id(self) -> str:
        """The leaf's key id (:func:`key_id`)."""
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        """``message`` signed with the key under the effective algorithm."""
        return self._signer(message)

    def chain_der(self) -> tuple[bytes, ...]:
        """The chain as DER, leaf first, as signatures carry it."""
        return self._der

    @classmethod
    def from_pem(
        cls,
        chain_pem: bytes,
        key_pem: bytes,
        *,
        password: bytes | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> Self:
        """Load a PEM chain (leaf first) and a PEM private key."""
        key = serialization.load_pem_private_key(key_pem, password=password)
        if not isinstance(
            key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        ):
            raise UnsupportedAlgorithmError(f"private key type {type(key).__name__}")
        return cls(key, tuple(x509.load_pem_x509_certificates(chain_pem)), algorithm)


# Path building is bounded anyway; refusing long chains up front bounds the parsing work an
# unauthenticated submitter can cause.
MAX_CHAIN_LENGTH = 8


# Chains kept parsed, by their exact DER bytes: every document of a signer, and every receipt of
# a hub, carries the same chain, and parsing it (names, and the public key, which OpenSSL decodes
# slowly) cost more than the signature check it serves. A certificate object is immutable and
# derived from its bytes alone; nothing about its validity is kept here (the trust store judges
# that on every call). Bounded, the least recently used forgotten first: about 20 KiB a chain of
# two certificates once its names, extensions and key were read, so at most about 20 MiB.
PARSED_CHAINS = 1024


def load_der_chain(chain: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """Parse a DER chain (at most 8 certificates); malformed input raises ``ValueError``."""
    if len(chain) > MAX_CHAIN_LENGTH:
        raise ValueError(f"certificate chain longer than {MAX_CHAIN_LENGTH}")
    # bytes() of each: the key must be the exact, immutable bytes the certificates come from.
    return _parsed_chain(tuple(bytes(der) for der in chain))


@functools.lru_cache(maxsize=PARSED_CHAINS)
def _parsed_chain(chain: tuple[bytes, ...]) -> tuple[x509.Certificate, ...]:
    """The chain parsed (only what parses is kept: a refusal raises again on every call)."""
    # Found by tests/fuzz: an unknown version is not a ValueError, and a serial number that is
    # not positive (forbidden by RFC 5280) is only a deprecation warning, until cryptography
    # refuses it too; both are refused here as malformed. So is a name whose attribute has a
    # type its OID does not allow (a BIT STRING other than x500UniqueIdentifier): names are
    # parsed on first read, which raised TypeError in whatever read them (describe, person_of),
    # so they are read here.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            certificates = tuple(x509.load_der_x509_certificate(der) for der in chain)
            for certificate in certificates:
                _ = (certificate.subject, certificate.issuer)
        except (x509.InvalidVersion, CryptographyDeprecationWarning, TypeError) as exc:
            raise ValueError(f"malformed certificate: {exc}") from exc
    return certificates
