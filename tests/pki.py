"""The suite's demo PKI: the server, hub and operator certificates, and per agency an agency
certificate (mutual TLS and organisation signatures) and an official's certificate.

P-256 everywhere (fast to generate); the key-type tests issue their own Ed25519 and RSA ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.credentials import TlsCredentials, load_trust_bundle, pem_of
from docaxis_client.trust.chain import Role, TrustStore
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType, key_pem

# The official named in `make_header`: a person signature must carry the signer's name.
SIGNER = "Lê Thị B"


@dataclass(frozen=True, slots=True)
class AgencyCredentials:
    code: str
    agency: IssuedCertificate
    person: IssuedCertificate


@dataclass(frozen=True, slots=True)
class KeyPair:
    certificate: Path
    key: Path


class SuitePki:
    """A demo CA (P-256 root and issuing CA) with its files in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = DemoCA.create()
        issuing = self.ca.intermediate
        assert issuing is not None
        self.bundle = folder / "bundle.pem"
        self.bundle.write_bytes(pem_of([self.ca.root_certificate, issuing.certificate]))
        self.server = self.write_pair("server", self.ca.issue_server())
        self.hub = self.write_pair("hub", self.ca.issue_role(Role.HUB, "docaxis hub"))
        self.admin_certificate = self.ca.issue_role(Role.ADMIN, "quản trị viên")
        self.monitor_certificate = self.ca.issue_role(Role.MONITOR, "giám sát")
        self.gateway_certificate = self.ca.issue_role(Role.GATEWAY, "docaxis gateway")
        self.gateway_pair = self.write_pair("gateway", self.gateway_certificate)
        # The time-stamping authority signed PDFs may carry timestamps of (its CA: the suite's).
        self.tsa = self.ca.issue_tsa()
        self._agencies: dict[str, AgencyCredentials] = {}

    def write_pair(self, name: str, issued: IssuedCertificate) -> KeyPair:
        """`issued`'s certificate chain and key as files `name`.pem/.key (for TLS clients)."""
        pair = KeyPair(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        pair.certificate.write_bytes(issued.chain_pem())
        pair.key.write_bytes(key_pem(issued.key))
        pair.key.chmod(0o600)
        return pair

    def server_env(self) -> dict[str, str]:
        """The settings of a production-like (mutual TLS, signatures required) server."""
        return {
            "DOCAXIS_TLS_CERT_FILE": str(self.server.certificate),
            "DOCAXIS_TLS_KEY_FILE": str(self.server.key),
            "DOCAXIS_TLS_CLIENT_CA_FILE": str(self.bundle),
            "DOCAXIS_HUB_CERT_FILE": str(self.hub.certificate),
            "DOCAXIS_HUB_KEY_FILE": str(self.hub.key),
            "DOCAXIS_TSA_CA_FILE": str(self.bundle),
        }

    def client_env(self, issued: IssuedCertificate, name: str) -> dict[str, str]:
        """DOCAXIS_CLIENT_* variables for a `docaxis` command acting with `issued`."""
        pair = self.write_pair(name, issued)
        return {
            "DOCAXIS_CLIENT_CA_FILE": str(self.bundle),
            "DOCAXIS_CLIENT_CERT_FILE": str(pair.certificate),
            "DOCAXIS_CLIENT_KEY_FILE": str(pair.key),
        }

    def tls(self, issued: IssuedCertificate) -> TlsCredentials:
        key = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return TlsCredentials(self.bundle.read_bytes(), issued.chain_pem(), key)

    @property
    def admin(self) -> TlsCredentials:
        return self.tls(self.admin_certificate)

    @property
    def monitor(self) -> TlsCredentials:
        return self.tls(self.monitor_certificate)

    @property
    def gateway(self) -> TlsCredentials:
        return self.tls(self.gateway_certificate)

    def agency(self, code: str, *, key_type: KeyType = KeyType.P256) -> AgencyCredentials:
        """The agency's certificates, issued on first use."""
        if code not in self._agencies:
            self._agencies[code] = AgencyCredentials(
                code,
                agency=self.ca.issue_agency(code, f"Cơ quan thử nghiệm {code}", key_type=key_type),
                person=self.ca.issue_person(SIGNER, code, key_type=key_type),
            )
        return self._agencies[code]

    def client(self, address: str, code: str, *, timeout_s: float = 30.0) -> AgencyClient:
        """The agency's DMS: mutual TLS with its agency certificate, signing as its official
        and as the agency."""
        credentials = self.agency(code)
        return AgencyClient.connect(
            address,
            tls=self.tls(credentials.agency),
            person=credentials.person.identity(),
            organization=credentials.agency.identity(),
            timeout_s=timeout_s,
        )

    def channel(self, address: str, issued: IssuedCertificate) -> grpc.aio.Channel:
        return open_channel(address, self.tls(issued))

    def trust(self) -> TrustStore:
        """What a recipient or sender checks signatures and receipts against, offline."""
        return load_trust_bundle(self.bundle.read_bytes())

    def revoke(self, issued: IssuedCertificate) -> bytes:
        """Revokes `issued` and returns the issuing CA's new CRL (DER), for IngestCrl."""
        self.ca.revoke(issued.certificate, at=dt.datetime.now(dt.UTC))
        return self.ca.crl("intermediate").public_bytes(serialization.Encoding.DER)
