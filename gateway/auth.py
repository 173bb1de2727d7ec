"""Who is calling the gateway: the agency named by its mutual-TLS client certificate.

The TLS listener requests a client certificate (CERT_OPTIONAL) and the handshake already refuses
one that does not chain to the anchors. Here the leaf is validated again with the trust core,
which adds what the handshake does not know: the CRLs, the clientAuth usage and the docaxis
identity. Only agency certificates may use the REST/edXML API, and only administrator
certificates the admin console.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from docaxis_client.credentials import parse_crl, split_bundle
from docaxis_client.delegation import ADMINISTRATOR, on_behalf_metadata
from docaxis_client.trust.chain import (
    CertificatePurpose,
    Role,
    TrustStore,
    agency_code_of,
    describe,
    role_of,
)
from docaxis_client.trust.errors import CertificateError
from gateway.problems import Problem


def load_trust(bundle: str, crl_files: Iterable[str] = ()) -> TrustStore:
    roots, intermediates = split_bundle(Path(bundle).read_bytes())
    crls = [parse_crl(Path(path).read_bytes()) for path in crl_files]
    return TrustStore(roots, intermediates=intermediates, crls=crls)


class Principal(Protocol):
    """Whom the gateway acts for on a call to the services."""

    @property
    def metadata(self) -> tuple[tuple[str, str | bytes], ...]: ...


@dataclass(frozen=True, slots=True)
class Agency:
    code: str
    subject: str
    serial: str
    certificate_der: bytes = field(repr=False, default=b"")

    @property
    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """What the gateway sends with each call it makes for this agency."""
        return on_behalf_metadata(self.code, self.certificate_der)


def client_chain(scope: Any) -> list[x509.Certificate]:
    """The client's certificates from the ASGI TLS extension (PEM strings, leaf first)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    return [
        x509.load_pem_x509_certificate(pem.encode()) for pem in tls.get("client_cert_chain", ())
    ]


@dataclass(frozen=True, slots=True)
class Administrator:
    """An administrator, named by an admin-role client certificate (the admin console)."""

    subject: str
    serial: str
    fingerprint: bytes = field(repr=False, default=b"")
    certificate_der: bytes = field(repr=False, default=b"")

    @property
    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """What the gateway sends with each call it makes for this administrator."""
        return on_behalf_metadata(ADMINISTRATOR, self.certificate_der)


class AgencyAuthenticator:
    """Validates client certificates (cached) and names who presented them: an agency for the
    REST/edXML API, an administrator for the admin console."""

    def __init__(self, trust: TrustStore) -> None:
        self._trust = trust
        self._cache: dict[bytes, tuple[x509.Certificate, dt.datetime]] = {}

    def _leaf(self, scope: Any) -> x509.Certificate:
        """The validated client certificate, or a Problem (401) for none or an unusable one."""
        chain = client_chain(scope)
        if not chain:
            raise Problem(401, "UNAUTHENTICATED", "a client certificate is required")
        leaf = chain[0]
        now = dt.datetime.now(dt.UTC)
        fingerprint = leaf.fingerprint(hashes.SHA256())
        cached = self._cache.get(fingerprint)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            self._trust.validate(chain, at=now, purpose=CertificatePurpose.CLIENT_AUTH)
        except CertificateError as exc:
            raise Problem(401, exc.reason, str(exc)) from None
        if len(self._cache) > 10_000:
            self._cache.clear()
        # Revalidated at least every minute (CRLs loaded at startup only; see the README).
        self._cache[fingerprint] = (
            leaf,
            min(leaf.not_valid_after_utc, now + dt.timedelta(minutes=1)),
        )
        return leaf

    def authenticate(self, scope: Any) -> Agency:
        """The calling agency, or a Problem (401 without or with an unusable certificate,
        403 for a certificate that names no agency)."""
        leaf = self._leaf(scope)
        code = agency_code_of(leaf)
        if code is None:
            raise Problem(
                403, "PERMISSION_DENIED", "the REST and edXML API is for agency certificates"
            )
        return Agency(
            code,
            describe(leaf),
            f"{leaf.serial_number:x}",
            leaf.public_bytes(serialization.Encoding.DER),
        )

    def administrator(self, scope: Any) -> Administrator:
        """The administrator, or a Problem (401 as for agencies, 403 for a certificate without
        the admin role)."""
        leaf = self._leaf(scope)
        if role_of(leaf) is not Role.ADMIN:
            raise Problem(
                403, "PERMISSION_DENIED", "the admin console is for administrator certificates"
            )
        return Administrator(
            describe(leaf),
            f"{leaf.serial_number:x}",
            leaf.fingerprint(hashes.SHA256()),
            leaf.public_bytes(serialization.Encoding.DER),
        )
