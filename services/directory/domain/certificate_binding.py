"""Certificates bound to agencies: whom a national-CA certificate signs for.

The national CA's certificates name their holder in words, not with a docaxis identity; an
administrator binds each one's key to the agency it signs for and the role it signs in
(docaxis_client.trust.bindings says why by key). Every binding and unbinding is a `directory`
ledger event: who decided that this key speaks for that agency, and when.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from cryptography import x509

from docaxis_client.trust.chain import describe, identity_uri
from docaxis_client.trust.keys import key_id
from services.common.errors import FieldViolation


class CertificateRole(enum.StrEnum):
    """The role a bound certificate signs in (the trust core's SignerRole values)."""

    PERSON = "person"
    ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class CertificateBinding:
    spki_sha256: str
    agency_code: str
    role: CertificateRole
    subject: str = ""
    issuer: str = ""
    serial: str = ""
    not_after: dt.datetime | None = None
    bound_by: str = ""
    bound_at: dt.datetime | None = field(default=None, compare=False)

    def ledger_data(self, event: str) -> dict[str, object]:
        """The `directory` ledger fact of binding (or unbinding) this certificate."""
        return {
            "event": event,
            "spki_sha256": self.spki_sha256,
            "agency": self.agency_code,
            "role": self.role.value,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "by": self.bound_by,
        }

    def same_decision(self, other: CertificateBinding) -> bool:
        """Whether ``other`` binds the same key to the same agency in the same role."""
        return (self.spki_sha256, self.agency_code, self.role) == (
            other.spki_sha256,
            other.agency_code,
            other.role,
        )


def binding_of(
    certificate: x509.Certificate, agency_code: str, role: CertificateRole | None
) -> tuple[CertificateBinding | None, list[FieldViolation]]:
    """The binding an administrator asks for, or why it cannot be made (every problem)."""
    problems = []
    if not agency_code:
        problems.append(FieldViolation("agency_code", "required"))
    if role is None:
        problems.append(FieldViolation("role", "person or organization"))
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        problems.append(FieldViolation("certificate", "a CA certificate signs no documents"))
    if identity_uri(certificate) is not None:
        # Its own identity decides whom it signs for: a binding beside it could only contradict.
        problems.append(
            FieldViolation("certificate", "carries a docaxis identity of its own: nothing to bind")
        )
    if problems or role is None:
        return None, problems
    return (
        CertificateBinding(
            spki_sha256=key_id(certificate),
            agency_code=agency_code,
            role=role,
            subject=describe(certificate),
            issuer=certificate.issuer.rfc4514_string(),
            serial=f"{certificate.serial_number:x}",
            not_after=certificate.not_valid_after_utc,
        ),
        [],
    )
