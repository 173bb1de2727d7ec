"""Tests for hub-signed transport receipts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable

import pytest

from docaxis_client.trust import (
    CertificateRevokedError,
    Role,
    SignatureInvalidError,
    SignerMismatchError,
    TransportReceipt,
    UnsupportedAlgorithmError,
    key_id,
    sign_receipt,
    verify_receipt,
)
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import RECIPIENTS, make_manifest


def _receipt(hub: IssuedCertificate) -> TransportReceipt:
    manifest = make_manifest()
    return sign_receipt(
        document_uuid=str(uuid.uuid4()),
        document_id=manifest.document_id,
        manifest_sha256=manifest.sha256_hex(),
        recipient=RECIPIENTS[0],
        hub=hub.identity(),
        acknowledged_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )


@pytest.fixture(scope="module")
def hub(ca: DemoCA) -> IssuedCertificate:
    """The hub's P-256 receipt-signing certificate."""
    return ca.issue_role(Role.HUB, "docaxis hub")


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.P256])
def test_receipt_signed_by_the_hub_verifies_offline(ca: DemoCA, key_type: KeyType) -> None:
    """An Ed25519 or P-256 hub receipt verifies against the trust store alone."""
    hub = ca.issue_role(Role.HUB, "docaxis hub", key_type=key_type)
    receipt = _receipt(hub)
    assert receipt.hub_key_id == key_id(hub.certificate)
    assert verify_receipt(receipt, ca.trust_store()) == hub.certificate


def test_receipt_survives_a_json_round_trip(ca: DemoCA, hub: IssuedCertificate) -> None:
    """to_json/from_json keep every signed field, so archived receipts still verify."""
    receipt = _receipt(hub)
    restored = TransportReceipt.from_json(receipt.to_json())
    assert restored == receipt
    verify_receipt(restored, ca.trust_store())


def _second_earlier(receipt: TransportReceipt) -> dict[str, object]:
    return {"acknowledged_at": receipt.acknowledged_at - dt.timedelta(seconds=1)}


@pytest.mark.parametrize(
    "change",
    [
        lambda _: {"recipient": RECIPIENTS[1]},
        lambda _: {"manifest_sha256": "0" * 64},
        lambda _: {"document_id": "000.00.00.H45,2025/07/01,1235/UBND-VP"},
        lambda _: {"document_uuid": "00000000-0000-4000-8000-000000000000"},
        _second_earlier,
    ],
    ids=["recipient", "manifest", "document-id", "uuid", "time"],
)
def test_tampered_receipt_is_rejected(
    ca: DemoCA, hub: IssuedCertificate, change: Callable[[TransportReceipt], dict[str, object]]
) -> None:
    """Changing any signed field gives SIGNATURE_INVALID."""
    receipt = _receipt(hub)
    tampered = dataclasses.replace(receipt, **change(receipt))  # type: ignore[arg-type]  # test data
    with pytest.raises(SignatureInvalidError):
        verify_receipt(tampered, ca.trust_store())


def test_receipt_with_the_key_id_of_another_key_is_rejected(
    ca: DemoCA, hub: IssuedCertificate, p256: Signers
) -> None:
    """The hub key id must name the key in the attached certificate."""
    other = dataclasses.replace(_receipt(hub), hub_key_id=key_id(p256.organization.certificate))
    with pytest.raises(SignatureInvalidError):
        verify_receipt(other, ca.trust_store())


def test_receipt_signed_by_an_agency_certificate_is_rejected(ca: DemoCA, p256: Signers) -> None:
    """Only a hub certificate may sign receipts: SIGNER_MISMATCH otherwise."""
    with pytest.raises(SignerMismatchError):
        verify_receipt(_receipt(p256.organization), ca.trust_store())


def test_rsa_hub_keys_cannot_sign_receipts(ca: DemoCA, signers: dict[KeyType, Signers]) -> None:
    """Receipts are Ed25519 or P-256 only."""
    rsa_hub = ca.issue_role(Role.HUB, "hub", key=signers[KeyType.RSA2048].organization.key)
    with pytest.raises(UnsupportedAlgorithmError):
        _receipt(rsa_hub)


def test_receipt_from_a_revoked_hub_certificate_is_rejected(fresh_ca: DemoCA) -> None:
    """A revoked hub key's receipts no longer verify."""
    hub = fresh_ca.issue_role(Role.HUB, "hub")
    receipt = _receipt(hub)
    fresh_ca.revoke(hub.certificate)
    with pytest.raises(CertificateRevokedError):
        verify_receipt(receipt, fresh_ca.trust_store())
