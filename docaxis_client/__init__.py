"""Client library for DMS integrators: signing, verification, gRPC helpers.

Two layers. The core (``docaxis_client.trust``, ``docaxis_client.ledger``,
``docaxis_client.documents``, ``docaxis_client.credentials``) builds manifests, signs, verifies
signatures, transport receipts and ledger proofs; it needs protobuf and cryptography but never
loads grpc, so that a verifier, a batch signer or the services' pure domain modules can use it
without a network stack. The gRPC client (``AgencyClient``, ``docaxis_client.errors``) sits on
top and is loaded only when first used: ``from docaxis_client import AgencyClient`` loads grpc,
``from docaxis_client import verify_delivery`` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docaxis_client.client import AgencyClient
    from docaxis_client.credentials import TlsCredentials, load_trust_bundle
    from docaxis_client.documents import manifest_of, verify_delivery, verify_transport_receipt

# Name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "AgencyClient": "docaxis_client.client",
    "TlsCredentials": "docaxis_client.credentials",
    "load_trust_bundle": "docaxis_client.credentials",
    "manifest_of": "docaxis_client.documents",
    "verify_delivery": "docaxis_client.documents",
    "verify_transport_receipt": "docaxis_client.documents",
}

__all__ = [
    "AgencyClient",
    "TlsCredentials",
    "load_trust_bundle",
    "manifest_of",
    "verify_delivery",
    "verify_transport_receipt",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'docaxis_client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
