"""Hop receipts (federation): the receiving hub signs, with its peer certificate, the receipt of
each copy handed over to it; the sending hub keeps it only when it proves that hub took over
that copy, and an auditor can check it offline later."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from docaxis_client.trust import Role, TransportReceipt, verify_hop_receipt
from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.errors import SignerMismatchError
from services.exchange.service_layer.federation_ports import OutboundDocument
from services.exchange.service_layer.hop_receipts import HopReceipts, PeerReceiptInvalidError
from tests.unit.exchange.builders import EDUCATION, HEALTH, header, submission

ORIGIN = str(uuid.uuid4())


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA.create()


def _copy(recipient: str = HEALTH, origin: str = ORIGIN) -> OutboundDocument:
    return OutboundDocument(
        item_id=str(uuid.uuid4()),
        origin_document_uuid=origin,
        source_document_uuid=str(uuid.uuid4()),
        recipient=recipient,
        requested_recipient=recipient,
        submission=submission(head=header([HEALTH, EDUCATION])),
        trace=(),
    )


def _signer(ca: DemoCA, hub: str) -> HopReceipts:
    return HopReceipts(ca.issue_peer(hub).identity(), ca.trust_store())


def _receipt(signer: HopReceipts, item: OutboundDocument) -> bytes:
    return signer.sign(
        item.origin_document_uuid, item.submission, item.recipient, dt.datetime.now(dt.UTC)
    )


def test_the_next_hubs_receipt_is_kept_and_verifies_offline(ca: DemoCA) -> None:
    """Signed by the peer certificate of the hub the copy went to, about that copy: accepted,
    and verifiable later by anyone holding the anchors, as that hub's and no other's."""
    item = _copy()
    receipt = _receipt(_signer(ca, "national"), item)
    _signer(ca, "province-a").check("national", item, receipt)
    parsed = TransportReceipt.from_json(receipt)
    verify_hop_receipt(parsed, ca.trust_store(), hub_code="national")
    assert (parsed.document_uuid, parsed.recipient) == (ORIGIN, HEALTH)
    assert parsed.document_id == item.submission.header.document_id
    with pytest.raises(SignerMismatchError):
        verify_hop_receipt(parsed, ca.trust_store(), hub_code="province-b")


def _other_anchors() -> DemoCA:
    return DemoCA.create()


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("another hub", "SIGNER_MISMATCH"),
        ("the hub role certificate", "SIGNER_MISMATCH"),
        ("untrusted anchors", "UNTRUSTED_ISSUER"),
        ("another document", "document_uuid"),
        ("another recipient", "recipient"),
        ("another content", "document_id"),
        ("tampered", "SIGNATURE_INVALID"),
        ("not a receipt", "malformed"),
        ("empty", "malformed"),
    ],
)
def test_a_receipt_that_does_not_prove_the_hand_over_is_refused(
    ca: DemoCA, case: str, detail: str
) -> None:
    """Signed by another hub (or not as a peer), under anchors this hub does not trust, about
    another copy, or not a receipt at all: PEER_RECEIPT_INVALID, retryable (the copy is handed
    over again), naming the hub and what is wrong."""
    item = _copy()
    national = _signer(ca, "national")
    if case == "another hub":
        receipt = _receipt(_signer(ca, "province-b"), item)
    elif case == "the hub role certificate":
        hub_role = ca.issue_role(Role.HUB, "hub").identity()
        receipt = _receipt(HopReceipts(hub_role, ca.trust_store()), item)
    elif case == "untrusted anchors":
        receipt = _receipt(_signer(_other_anchors(), "national"), item)
    elif case == "another document":
        receipt = _receipt(national, _copy(origin=str(uuid.uuid4())))
    elif case == "another recipient":
        receipt = _receipt(national, _copy(recipient=EDUCATION))
    elif case == "another content":
        other = dataclasses.replace(_copy(), submission=submission(head=header(number="9")))
        receipt = _receipt(national, other)
    elif case == "tampered":
        receipt = _receipt(national, item).replace(b'"recipient":"', b'"recipient":"x')
    elif case == "not a receipt":
        receipt = b'{"nationalAxis": "national", "docId": "1"}'
    else:
        receipt = b""
    with pytest.raises(PeerReceiptInvalidError) as refused:
        _signer(ca, "province-a").check("national", item, receipt)
    error = refused.value
    assert (error.reason, error.retryable) == ("PEER_RECEIPT_INVALID", True)
    assert error.meta["hub"] == "national"
    assert error.meta["origin"] == ORIGIN
    assert detail in error.meta["detail"]


def test_without_an_identity_or_anchors_there_is_nothing_to_sign_or_check() -> None:
    """Development mode (no mutual TLS): the receipt is empty and taken as it comes."""
    dev = HopReceipts(None, None)
    item = _copy()
    assert _receipt(dev, item) == b""
    dev.check("national", item, b"")
