"""The sender's signature rules as the exchange applies them: its own view of the signature
policy the directory keeps per agency and document type (the directory's SignaturePolicy also
records who set it and when, and validates it; the exchange only needs what counts).

The person signature (the official's) can come as a docaxis manifest signature or as the first
PAdES signature of the main PDF; the organisation signature (the agency's) also as the XML-DSig
on the edXML envelope.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SignatureForm(enum.StrEnum):
    """How a signature reaches the hub."""

    MANIFEST = "manifest"
    PADES = "pades"
    XMLDSIG = "xmldsig"


PERSON_FORMS = frozenset({SignatureForm.MANIFEST, SignatureForm.PADES})
ORGANIZATION_FORMS = frozenset(SignatureForm)


@dataclass(frozen=True, slots=True)
class SignatureRules:
    """Which forms count for each role, whether legacy algorithms (SHA-1) pass, and whether the
    sender may send unsigned on its mutual-TLS identity (transport-attested)."""

    person_forms: frozenset[SignatureForm] = PERSON_FORMS
    organization_forms: frozenset[SignatureForm] = ORGANIZATION_FORMS
    allow_legacy_algorithms: bool = False
    transport_attested: bool = False


# The deployment's rules for agencies without a policy of their own.
DEFAULT_RULES = SignatureRules()
