"""The deployment's trust anchors and revocations, and the TLS and hub identities built on them.

One `TrustRegistry` per process holds the current `TrustStore`: the configured anchors plus
every CRL known (files given at startup, CRLs ingested at runtime). Refreshing swaps in a new
store at once, so a certificate revoked anywhere is refused by the next call that checks it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from docaxis_client.credentials import (
    parse_crl,
    pem_of,
    split_bundle,
)
from docaxis_client.trust.chain import TrustStore, expiring_certificates
from docaxis_client.trust.errors import (
    CrlInvalidError,
    ManifestInvalidError,
    SenderMismatchError,
    TrustError,
)
from docaxis_client.trust.keys import SigningIdentity, key_id
from services.common.config import ConfigError
from services.common.errors import (
    DomainError,
    FieldViolation,
    PermissionDeniedError,
    RejectedError,
    ValidationError,
)

log = structlog.get_logger(__name__)


def domain_error(exc: TrustError) -> DomainError:
    """A trust-core refusal in the service error categories, keeping its stable reason."""
    meta = {**exc.meta, **exc.context}
    if isinstance(exc, SenderMismatchError):
        return PermissionDeniedError(exc.describe(), reason=exc.reason, meta=meta)
    if isinstance(exc, ManifestInvalidError):
        return ValidationError(
            "the document does not make a valid manifest",
            [FieldViolation(f"manifest.{exc.field}", exc.problem)],
            reason=exc.reason,
            meta=meta,
        )
    return RejectedError(exc.describe(), reason=exc.reason, meta=meta)


@dataclass(frozen=True, slots=True)
class CrlInfo:
    """What identifies a CRL and orders it against another of the same CA."""

    issuer: str
    issuer_key_id: str
    number: int
    this_update: dt.datetime
    next_update: dt.datetime | None
    revoked_count: int


class TrustRegistry:
    """Anchors, issuing CAs and CRLs; `store` is always the current, complete view."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        static_crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> None:
        self._roots = tuple(roots)
        self._intermediates = tuple(intermediates)
        for crl in static_crls:
            self.check_crl(crl)
        self._static = tuple(static_crls)
        self._generation = 0
        # The runtime CRLs in use (SHA-256 fingerprints), to tell a reload that changes nothing.
        self._runtime: frozenset[bytes] = frozenset()
        # Set (and replaced) at each change of the revocations, for those waiting on `changed`.
        self._changed = asyncio.Event()
        self._store = self._build(())

    @classmethod
    def from_files(cls, bundle: str, crl_files: Iterable[str] = ()) -> TrustRegistry:
        try:
            roots, intermediates = split_bundle(Path(bundle).read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read the trust anchors {bundle}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"trust anchors {bundle}: {exc}") from None
        crls = []
        for path in crl_files:
            try:
                crls.append(parse_crl(Path(path).read_bytes()))
            except OSError as exc:
                raise ConfigError(f"cannot read the CRL {path}: {exc.strerror}") from None
            except ValueError:
                raise ConfigError(f"{path} is not a CRL (PEM or DER)") from None
        try:
            return cls(roots, intermediates, crls)
        except CrlInvalidError as exc:
            raise ConfigError(f"DOCAXIS_CRL_FILES: {exc}") from None

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return self._roots

    @property
    def store(self) -> TrustStore:
        """The current store; replaced, never mutated, so a reader needs no lock."""
        return self._store

    @property
    def generation(self) -> int:
        """Increases whenever the revocations change (callers key caches on it)."""
        return self._generation

    def changed(self) -> Awaitable[bool]:
        """Completes once the revocations change after this call (an open stream then checks
        its caller again)."""
        return self._changed.wait()

    def roots_pem(self) -> bytes:
        return pem_of(self._roots)

    def check_crl(self, crl: x509.CertificateRevocationList) -> CrlInfo:
        """Who issued `crl`, if a CA of the anchors did and may sign CRLs; CrlInvalidError
        otherwise (a forged CRL could un-revoke nothing, but could revoke anyone)."""
        # Building a store with this CRL alone runs the trust core's own signature and cRLSign
        # checks; only then is the issuer looked up for its key id.
        TrustStore(self._roots, intermediates=self._intermediates, crls=[crl])
        for ca in (*self._roots, *self._intermediates):
            public_key = ca.public_key()
            if (
                ca.subject == crl.issuer
                and isinstance(
                    public_key,
                    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey,
                )
                and crl.is_signature_valid(public_key)
            ):
                number = _crl_number(crl)
                return CrlInfo(
                    issuer=crl.issuer.rfc4514_string(),
                    issuer_key_id=key_id(ca),
                    number=number,
                    this_update=crl.last_update_utc,
                    next_update=crl.next_update_utc,
                    revoked_count=len(crl),
                )
        raise CrlInvalidError(crl.issuer.rfc4514_string(), "not signed by a trust anchor")

    def use_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        """Replaces the runtime CRLs (the static ones stay). A CRL the anchors no longer vouch
        for is left out with a warning rather than taking every other revocation down."""
        usable = []
        for crl in crls:
            try:
                self.check_crl(crl)
            except CrlInvalidError as exc:
                log.warning("crl_skipped", issuer=exc.issuer, detail=exc.detail)
                continue
            usable.append(crl)
        runtime = frozenset(crl.fingerprint(hashes.SHA256()) for crl in usable)
        if runtime == self._runtime:
            # The periodic reload (CrlWatcher's safety net) mostly finds what is in use: the
            # revocations are unchanged, so every cached caller stays valid and no open stream
            # is woken to check its caller again (3,000 of them for a circular's communes).
            return
        self._runtime = runtime
        self._store = self._build(usable)
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()
        log.info("revocations_loaded", crls=len(usable) + len(self._static))

    def _build(self, crls: Sequence[x509.CertificateRevocationList]) -> TrustStore:
        return TrustStore(
            self._roots, intermediates=self._intermediates, crls=[*self._static, *crls]
        )


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The server's TLS certificate chain and key; the key never leaves this object."""

    chain_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, cert_file: str, key_file: str) -> ServerTls:
        chain, key = _read(cert_file, "TLS certificate"), _read(key_file, "TLS key")
        try:
            x509.load_pem_x509_certificates(chain)
        except ValueError:
            raise ConfigError(f"{cert_file} holds no PEM certificate") from None
        return cls(chain, key)

    @property
    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.chain_pem)

    def credentials(self, client_roots_pem: bytes) -> grpc.ServerCredentials:
        """Mutual TLS: a client without a certificate of the anchors is refused at handshake."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.chain_pem)],
            root_certificates=client_roots_pem,
            require_client_auth=True,
        )


def load_hub_identity(cert_file: str, key_file: str) -> SigningIdentity:
    """The hub's signing identity (transport receipts, the exchange's client certificate)."""
    chain, key = _read(cert_file, "hub certificate"), _read(key_file, "hub key")
    try:
        return SigningIdentity.from_pem(chain, key)
    except (ValueError, TypeError, UnsupportedAlgorithm, TrustError) as exc:
        raise ConfigError(f"hub identity {cert_file}: {exc}") from None


def warn_expiring(
    certificates: Iterable[tuple[str, x509.Certificate]], *, within_days: int
) -> None:
    """A warning per certificate (server, hub, anchors) that expires within the window."""
    now = dt.datetime.now(dt.UTC)
    named = list(certificates)
    by_serial = {cert.serial_number: purpose for purpose, cert in named}
    for warning in expiring_certificates(
        [cert for _, cert in named], within=dt.timedelta(days=within_days), at=now
    ):
        log.warning(
            "certificate_expiring",
            purpose=by_serial.get(warning.serial, ""),
            subject=warning.subject,
            serial=f"{warning.serial:x}",
            not_after=warning.not_after.isoformat(),
            days_left=warning.remaining.days,
            expired=warning.expired,
        )
