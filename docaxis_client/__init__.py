"""Client library for DMS integrators: signing, verification, gRPC helpers.

The usual imports: ``AgencyClient`` and ``TlsCredentials`` to connect and submit (signed),
``verify_delivery`` and ``verify_transport_receipt`` to check what docaxis hands over, and
``docaxis_client.trust`` for identities, trust stores and the error types.
"""

from __future__ import annotations

from docaxis_client.client import AgencyClient
from docaxis_client.credentials import TlsCredentials, load_trust_bundle
from docaxis_client.documents import manifest_of, verify_delivery, verify_transport_receipt

__all__ = [
    "AgencyClient",
    "TlsCredentials",
    "load_trust_bundle",
    "manifest_of",
    "verify_delivery",
    "verify_transport_receipt",
]
