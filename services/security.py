"""The trust side of the composition root: TLS, callers, signature policy, the hub identity.

Built once per process from the settings. With mutual TLS configured, callers are identified by
their client certificates; without it (development mode only, which the settings enforce) by
request headers, over plaintext.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from docaxis_client.credentials import TlsCredentials, load_trust_bundle, pem_of
from docaxis_client.trust.chain import CertificatePurpose, TrustStore, peer_hub_of, role_of
from docaxis_client.trust.chain import Role as CertificateRole
from docaxis_client.trust.errors import CertificateError
from docaxis_client.trust.keys import SignatureAlgorithm, SigningIdentity
from docaxis_client.trust.ocsp import OcspChecker
from services.common.config import ConfigError
from services.common.identity import (
    CallerResolver,
    HeaderCallerResolver,
    Role,
    TlsCallerResolver,
    peer_metadata,
    role_metadata,
)
from services.common.trust import ServerTls, TrustRegistry, load_hub_identity, warn_expiring
from services.exchange.service_layer.ports import DirectoryLookup
from services.exchange.service_layer.signatures import SignatureVerifier
from services.settings import Settings

log = structlog.get_logger(__name__)


_RECEIPT_ALGORITHMS = (SignatureAlgorithm.ED25519, SignatureAlgorithm.ECDSA_P256_SHA256)


def check_hub_identity(hub: SigningIdentity, trust: TrustRegistry | None) -> None:
    """Fail at startup, not at the first acknowledgement, when the hub identity cannot sign
    receipts that verify: a hub certificate of the anchors, with an Ed25519 or P-256 key (P-256
    when the exchange also authenticates to a separate directory: gRPC's TLS has no Ed25519)."""
    if hub.effective_algorithm not in _RECEIPT_ALGORITHMS:
        raise ConfigError("the hub signs receipts with an Ed25519 or P-256 key")
    if role_of(hub.certificate) is not CertificateRole.HUB:
        raise ConfigError("DOCAXIS_HUB_CERT_FILE is not a hub certificate (urn:docaxis:role:hub)")
    if trust is not None:
        try:
            trust.store.validate(
                hub.chain, at=dt.datetime.now(dt.UTC), purpose=CertificatePurpose.DOCUMENT_SIGNING
            )
        except CertificateError as exc:
            raise ConfigError(f"hub certificate, {exc.reason}: {exc}") from None


@dataclass(slots=True)
class _DirectoryCheck:
    """Whether an agency is registered and open, asked of whichever directory this process
    reaches (set once the composition root has built it)."""

    lookup: DirectoryLookup | None = None

    async def __call__(self, code: str) -> bool:
        if self.lookup is None:
            return True  # a process without directory access (the ledger alone) cannot ask
        view = (await self.lookup.lookup([code])).get(code)
        # An agency another hub serves is known here only to route its mail (federation).
        return view is not None and view.open and view.served_here


@dataclass(slots=True)
class Security:
    callers: CallerResolver
    trust: TrustRegistry | None
    server_tls: ServerTls | None
    hub: SigningIdentity | None
    signatures_required: bool
    max_signing_age: dt.timedelta
    # OCSP for signers whose certificates name a responder (None: CRLs only).
    ocsp: OcspChecker | None = None
    # The TSA anchors PDF signature timestamps are verified against (None: none trusted).
    timestamps: TrustStore | None = None
    # Federation: this hub's code, and its certificate chain and key towards peer hubs (PEM).
    hub_code: str = ""
    peer_tls: tuple[bytes, bytes] | None = None
    # The same certificate and key, signing the receipts of what peers hand over to this hub.
    peer_identity: SigningIdentity | None = None
    _directory: _DirectoryCheck = field(default_factory=_DirectoryCheck)

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        """Reads every certificate and key file now, so a bad path fails at startup."""
        directory = _DirectoryCheck()
        trust = (
            TrustRegistry.from_files(settings.tls_client_ca_file, settings.crl_files)
            if settings.tls_client_ca_file is not None
            else None
        )
        server_tls = None
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            server_tls = ServerTls.from_files(settings.tls_cert_file, settings.tls_key_file)
        hub = None
        if settings.hub_cert_file is not None and settings.hub_key_file is not None:
            hub = load_hub_identity(settings.hub_cert_file, settings.hub_key_file)
            check_hub_identity(hub, trust)
        callers: CallerResolver
        if server_tls is not None and trust is not None:
            callers = TlsCallerResolver(trust, directory)
        else:
            log.warning("development_mode", detail="plaintext gRPC, caller identity from headers")
            callers = HeaderCallerResolver(directory)
        peer_tls = None
        peer_identity = None
        if settings.peer_cert_file is not None and settings.peer_key_file is not None:
            peer_tls = load_peer_tls(settings.peer_cert_file, settings.peer_key_file)
            check_peer_certificate(peer_tls[0], settings.hub_code)
            peer_identity = peer_receipt_identity(peer_tls, trust)
        security = cls(
            callers=callers,
            trust=trust,
            server_tls=server_tls,
            hub=hub,
            signatures_required=settings.signatures_required,
            max_signing_age=dt.timedelta(seconds=settings.max_signature_age_s),
            ocsp=OcspChecker(timeout_s=settings.ocsp_timeout_s) if settings.ocsp_enabled else None,
            timestamps=(
                None
                if settings.tsa_ca_file is None
                else load_trust_bundle(Path(settings.tsa_ca_file).read_bytes())
            ),
            _directory=directory,
            hub_code=settings.hub_code,
            peer_tls=peer_tls,
            peer_identity=peer_identity,
        )
        security.warn_expiring(settings.cert_warning_days)
        return security

    def warn_expiring(self, within_days: int) -> None:
        named = []
        if self.server_tls is not None:
            named += [("tls server", cert) for cert in self.server_tls.certificates]
        if self.hub is not None:
            named += [("hub", cert) for cert in self.hub.chain]
        if self.trust is not None:
            named += [("trust anchor", cert) for cert in self.trust.roots]
        # One warning per certificate, even when chains share their issuing CA.
        unique = {cert.fingerprint(hashes.SHA256()): (p, cert) for p, cert in named}
        warn_expiring(unique.values(), within_days=within_days)

    def own_certificates(self) -> list[tuple[str, x509.Certificate]]:
        """The process's own leaf certificates by role (the metrics show their expiry)."""
        named = []
        if self.server_tls is not None:
            named.append(("tls_server", self.server_tls.certificates[0]))
        if self.hub is not None:
            named.append(("hub", self.hub.chain[0]))
        return named

    def use_directory(self, lookup: DirectoryLookup) -> None:
        """Callers' agencies are checked against this directory from now on."""
        self._directory.lookup = lookup

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.server_tls is None or self.trust is None:
            return None
        return self.server_tls.credentials(self.trust.roots_pem())

    def trust_store(self) -> TrustStore | None:
        return None if self.trust is None else self.trust.store

    def signature_verifier(self) -> SignatureVerifier:
        return SignatureVerifier(
            self.trust_store,
            required=self.signatures_required,
            max_signing_age=self.max_signing_age,
            revocation=self.ocsp,
            timestamps=self.timestamps,
        )

    def peer_channel(self, address: str) -> tuple[grpc.aio.Channel, Sequence[tuple[str, str]]]:
        """A channel to another docaxis service, as the hub, and the metadata to send with it."""
        if self.server_tls is None or self.trust is None:
            return grpc.aio.insecure_channel(address), role_metadata(Role.HUB)
        if self.hub is None:
            raise ValueError("calling another service over mutual TLS needs the hub identity")
        key = self.hub.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        credentials = TlsCredentials(self.trust.roots_pem(), pem_of(self.hub.chain), key)
        return grpc.aio.secure_channel(address, credentials.channel_credentials()), ()

    def federation_channel(
        self, address: str
    ) -> tuple[grpc.aio.Channel, Sequence[tuple[str, str]]]:
        """A channel to a peer hub, as this hub's peer identity (urn:docaxis:peer:<code>)."""
        if self.server_tls is None or self.trust is None:
            return grpc.aio.insecure_channel(address), peer_metadata(self.hub_code)
        if self.peer_tls is None:
            raise ValueError("calling a peer hub over mutual TLS needs the peer certificate")
        chain, key = self.peer_tls
        credentials = TlsCredentials(self.trust.roots_pem(), chain, key)
        return grpc.aio.secure_channel(address, credentials.channel_credentials()), ()


def load_peer_tls(cert_file: str, key_file: str) -> tuple[bytes, bytes]:
    try:
        with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
            return cert.read(), key.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the peer certificate or key: {exc.strerror}") from None


def peer_receipt_identity(
    peer_tls: tuple[bytes, bytes], trust: TrustRegistry | None
) -> SigningIdentity:
    """The peer certificate and key as the identity that signs hop receipts. Fails at startup,
    not at the first hand-over a peer then refuses, when they cannot sign receipts the peers
    verify: an Ed25519 or P-256 key, and a certificate valid for signing under the anchors
    (peer certificates issued before it signed receipts lack the documentSigning usage)."""
    chain, key = peer_tls
    try:
        identity = SigningIdentity.from_pem(chain, key)
    except ValueError as exc:
        raise ConfigError(f"DOCAXIS_PEER_CERT_FILE and DOCAXIS_PEER_KEY_FILE: {exc}") from None
    if identity.effective_algorithm not in _RECEIPT_ALGORITHMS:
        raise ConfigError("the peer certificate signs receipts: it needs an Ed25519 or P-256 key")
    if trust is not None:
        try:
            trust.store.validate(
                identity.chain,
                at=dt.datetime.now(dt.UTC),
                purpose=CertificatePurpose.DOCUMENT_SIGNING,
            )
        except CertificateError as exc:
            raise ConfigError(
                f"the peer certificate cannot sign hop receipts, {exc.reason}: {exc}; issue a "
                "new one with `docaxis pki issue-peer --force <hub code>`"
            ) from None
    return identity


def check_peer_certificate(chain_pem: bytes, hub_code: str) -> None:
    """The peer certificate must name this hub: presenting another's would be refused by peers
    anyway, so it fails here, at startup."""
    try:
        leaf = x509.load_pem_x509_certificate(chain_pem)
    except ValueError:
        raise ConfigError("DOCAXIS_PEER_CERT_FILE is not a PEM certificate") from None
    named = peer_hub_of(leaf)
    if named != hub_code:
        raise ConfigError(
            f"DOCAXIS_PEER_CERT_FILE names hub {named!r}, not this hub ({hub_code!r}): issue "
            "one with `docaxis pki issue-peer <hub code>`"
        )
