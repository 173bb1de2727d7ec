"""Real transport receipts for the stores' tests (a store encodes what it is given: the receipt
with its chain referred to, adapters/receipt_chains.py). The hub's key is Ed25519, whose
signatures are deterministic: the same record signed again gives the same bytes, so a test can
compare what a store serves with a receipt signed afresh."""

from __future__ import annotations

import functools
import hashlib

from docaxis_client.trust import Role, SigningIdentity, TransportReceipt, sign_receipt
from docaxis_client.trust.demo_pki import DemoCA, KeyType
from services.exchange.service_layer.ports import DeliveryRecord


@functools.cache
def receipt_ca() -> DemoCA:
    """The CA of the tests' hub certificates (never revoked through)."""
    return DemoCA.create()


@functools.cache
def hub_identity(name: str = "docaxis test hub") -> SigningIdentity:
    """A hub's receipt-signing identity: one per name, each with its own chain."""
    return receipt_ca().issue_role(Role.HUB, name, key_type=KeyType.ED25519).identity()


def hub_receipt(record: DeliveryRecord, hub: SigningIdentity | None = None) -> TransportReceipt:
    """The receipt the hub signs for an acknowledged copy (a ReceiptIssuer); the manifest's
    digest stands in for the one a handler computes (the store does not read it)."""
    assert record.acknowledged_at is not None
    return sign_receipt(
        document_uuid=record.document_uuid,
        document_id=record.header.document_id,
        manifest_sha256=hashlib.sha256(record.document_uuid.encode()).hexdigest(),
        recipient=record.recipient,
        hub=hub or hub_identity(),
        acknowledged_at=record.acknowledged_at,
    )


@functools.cache
def peer_identity(hub_code: str) -> SigningIdentity:
    """Hub `hub_code`'s peer certificate and key, which sign its hop receipts (federation), under
    receipt_ca: one per hub code, each with its own chain."""
    return receipt_ca().issue_peer(hub_code, key_type=KeyType.ED25519).identity()
