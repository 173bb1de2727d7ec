"""Mutual-TLS client credentials and trust-anchor bundles, read from PEM files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from docaxis_client.trust.chain import TrustStore, agency_code_of

if TYPE_CHECKING:
    import grpc

__all__ = ["TlsCredentials", "load_trust_bundle", "pem_of", "split_bundle"]


def split_bundle(pem: bytes) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(trust anchors, intermediates) of a PEM bundle.

    A bundle may carry the issuing CAs next to the roots, so that CRLs of an issuing CA can be
    checked; only self-signed certificates become anchors, the others just help build paths.
    """
    certificates = x509.load_pem_x509_certificates(pem)
    roots = [cert for cert in certificates if cert.subject == cert.issuer]
    intermediates = [cert for cert in certificates if cert.subject != cert.issuer]
    if not roots:
        raise ValueError("the bundle holds no self-signed root certificate")
    return roots, intermediates


def load_trust_bundle(pem: bytes, *, crls_pem: Sequence[bytes] = ()) -> TrustStore:
    """A trust store from a PEM bundle of roots (and optionally issuing CAs) and PEM CRLs."""
    roots, intermediates = split_bundle(pem)
    return TrustStore(
        roots,
        intermediates=intermediates,
        crls=[x509.load_pem_x509_crl(crl) for crl in crls_pem],
    )


def pem_of(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


@dataclass(frozen=True, slots=True)
class TlsCredentials:
    """What an agency's DMS (or an operator) presents over mutual TLS.

    ``root_certificates`` are the anchors the server's certificate must chain to;
    ``certificate_chain`` is the client's own certificate first, then its issuing CAs.
    """

    root_certificates: bytes
    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    # The name the server's certificate must carry, when the target does not say it: a target
    # listing several replicas' addresses ("ipv4:10.0.0.1:50051,10.0.0.2:50051").
    server_name: str | None = None

    @classmethod
    def from_files(cls, *, ca: Path, cert: Path, key: Path) -> Self:
        return cls(ca.read_bytes(), cert.read_bytes(), key.read_bytes())

    @property
    def certificate(self) -> x509.Certificate:
        """The client's own (leaf) certificate."""
        return x509.load_pem_x509_certificates(self.certificate_chain)[0]

    @property
    def agency_code(self) -> str | None:
        """The agency the certificate identifies, or None for operator and hub certificates."""
        return agency_code_of(self.certificate)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        import grpc  # here, not at the top: the core never loads grpc, only a channel needs it

        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def trust_store(self) -> TrustStore:
        """The same anchors as a store for checking signatures and receipts offline."""
        return load_trust_bundle(self.root_certificates)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER; ValueError when it is neither, or when a part of it is malformed.

    cryptography decodes names, times and extensions only when they are first read, so a CRL
    that loads can still fail later, far from here (found by tests/fuzz): every part is read
    once now, so that a CRL that parses is one that can be used.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        crl.issuer.rfc4514_string()
        _ = (crl.last_update_utc, crl.next_update_utc, crl.signature_hash_algorithm)
        list(crl.extensions)
        for entry in crl:
            _ = (entry.serial_number, entry.revocation_date_utc)
            list(entry.extensions)
    except (TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise ValueError(f"malformed CRL: {exc}") from exc
    return crl
