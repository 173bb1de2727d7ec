"""Which signatures an agency's documents must carry (the directory keeps one per agency/type).

The person signature (the official's, Nghị định 30/2020) can come as a docaxis manifest signature
or as the first PAdES signature of the main PDF; the organisation signature (the agency's) as a
manifest signature, the PAdES signature after the official's, or the XML-DSig on the edXML
envelope. A policy narrows these forms, may accept SHA-1 from DMS software that cannot do better
yet, and may let an agency whose DMS cannot sign at all send on the strength of its mutual-TLS
identity: such documents are accepted but marked unsigned wherever they appear.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from services.common.errors import FieldViolation


class SignatureForm(enum.StrEnum):
    """How a signature reaches the hub."""

    MANIFEST = "manifest"
    PADES = "pades"
    XMLDSIG = "xmldsig"


PERSON_FORMS = frozenset({SignatureForm.MANIFEST, SignatureForm.PADES})
ORGANIZATION_FORMS = frozenset(SignatureForm)
# The type key of a policy that holds for every document type of its agency.
ANY_DOCUMENT_TYPE = 0


@dataclass(frozen=True, slots=True)
class SignaturePolicy:
    """The rules for one agency (and document type); the default instance is the deployment's."""

    agency_code: str = ""
    document_type: int = ANY_DOCUMENT_TYPE
    person_forms: frozenset[SignatureForm] = PERSON_FORMS
    organization_forms: frozenset[SignatureForm] = ORGANIZATION_FORMS
    allow_legacy_algorithms: bool = False
    transport_attested: bool = False
    updated_by: str = ""
    updated_at: dt.datetime | None = field(default=None, compare=False)

    def ledger_data(self) -> dict[str, object]:
        """The `directory` ledger fact of setting this policy (the audit of who allowed what)."""
        return {
            "event": "signature_policy_set",
            "agency": self.agency_code,
            "document_type": self.document_type,
            "person_forms": sorted(self.person_forms),
            "organization_forms": sorted(self.organization_forms),
            "allow_legacy_algorithms": self.allow_legacy_algorithms,
            "transport_attested": self.transport_attested,
            "by": self.updated_by,
        }

    def describe(self) -> str:
        """One line for logs and the console."""
        if self.transport_attested:
            return "transport-attested: unsigned documents accepted on the mTLS identity"
        person = "/".join(sorted(self.person_forms))
        organization = "/".join(sorted(self.organization_forms))
        legacy = ", legacy algorithms allowed" if self.allow_legacy_algorithms else ""
        return f"person: {person}; organisation: {organization}{legacy}"


def policy_problems(policy: SignaturePolicy) -> list[FieldViolation]:
    """Why a policy cannot be stored (every problem at once)."""
    problems = []
    if not policy.agency_code:
        problems.append(FieldViolation("policy.agency_code", "required"))
    if policy.document_type < 0:
        problems.append(FieldViolation("policy.document_type", "must not be negative"))
    if not policy.person_forms:
        problems.append(FieldViolation("policy.person_forms", "at least one form"))
    elif not policy.person_forms <= PERSON_FORMS:
        problems.append(
            FieldViolation(
                "policy.person_forms", "an official signs as a manifest or PAdES signature"
            )
        )
    if not policy.organization_forms:
        problems.append(FieldViolation("policy.organization_forms", "at least one form"))
    return problems


# The deployment's policy for agencies without one of their own.
DEFAULT_POLICY = SignaturePolicy()
