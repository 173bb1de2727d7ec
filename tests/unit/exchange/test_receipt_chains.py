"""A transport receipt stored without its chain (adapters/receipt_chains.py) is served byte for
byte as TransportReceipt.to_json gives it, whatever its fields hold; one stored whole is served
as it is; a stored receipt is never completed with another chain. A hop receipt, stored from its
bytes (received_receipt), is served as those bytes, whatever they are."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import unicodedata
import uuid

import pytest

from docaxis_client.trust import Role, TransportReceipt, sign_receipt, verify_receipt
from docaxis_client.trust.demo_pki import DemoCA, KeyType
from services.exchange.adapters.receipt_chains import (
    StoredChainError,
    chain_named,
    hub_chain,
    received_receipt,
    served_receipt,
    stored_receipt,
)

# Within the hubs' certificates' validity (from an hour before they are issued).
AT = dt.datetime.now(dt.UTC).replace(microsecond=0)
# Fields a sender chooses, with what the reference looks like inside them: the served bytes must
# come from the reference's one place, not from a look-alike in a value.
DOCUMENT_IDS = [
    "12/QĐ-UBND",
    unicodedata.normalize("NFD", "Quyết định số 7"),
    'x","chain":"sha256:' + "0" * 64 + '"',
    'tab\tquote"backslash\\ newline\n',
]


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA.create()


def _receipt(
    ca: DemoCA, key_type: KeyType, document_id: str, *, peer: bool = False
) -> TransportReceipt:
    """A hub's transport receipt; with `peer`, a hop receipt (signed by a peer certificate)."""
    hub = (
        ca.issue_peer("national", key_type=key_type)
        if peer
        else ca.issue_role(Role.HUB, "docaxis hub", key_type=key_type)
    )
    return sign_receipt(
        document_uuid=str(uuid.uuid4()),
        document_id=document_id,
        manifest_sha256="ab" * 32,
        recipient="000.00.01.H01",
        hub=hub.identity(),
        acknowledged_at=AT,
    )


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.P256])
@pytest.mark.parametrize("document_id", DOCUMENT_IDS)
def test_the_served_receipt_is_the_receipts_json(
    ca: DemoCA, key_type: KeyType, document_id: str
) -> None:
    """Stored without its chain and served with it: to_json's bytes, and they verify."""
    receipt = _receipt(ca, key_type, document_id)
    chain, stored = stored_receipt(receipt)
    assert chain_named(stored) == chain.sha256
    # No certificate in the row.
    assert not any(base64.b64encode(der)[:64] in stored for der in receipt.chain)
    served = served_receipt(stored, chain)
    assert served == receipt.to_json()
    verify_receipt(TransportReceipt.from_json(served), ca.trust_store())


def test_the_row_holds_a_fifth_of_the_receipt(ca: DemoCA) -> None:
    receipt = _receipt(ca, KeyType.P256, DOCUMENT_IDS[0])
    _, stored = stored_receipt(receipt)
    assert len(stored) < 700 < 2_000 < len(receipt.to_json())


def test_a_receipt_stored_whole_is_served_as_it_is(ca: DemoCA) -> None:
    """Receipts stored before migration 0035 keep their chain: nothing to put back."""
    whole = _receipt(ca, KeyType.P256, DOCUMENT_IDS[2]).to_json()
    assert chain_named(whole) is None
    other, _ = stored_receipt(_receipt(ca, KeyType.ED25519, DOCUMENT_IDS[0]))
    assert served_receipt(whole, other) == whole


def test_a_stored_receipt_is_not_completed_with_another_chain(ca: DemoCA) -> None:
    _, stored = stored_receipt(_receipt(ca, KeyType.P256, DOCUMENT_IDS[0]))
    other, _ = stored_receipt(_receipt(ca, KeyType.P256, DOCUMENT_IDS[0]))
    with pytest.raises(StoredChainError):
        served_receipt(stored, other)


def test_a_chain_is_encoded_once_per_chain(ca: DemoCA) -> None:
    """The same chain's bytes, in other bytes objects, give the kept encoding."""
    receipt = _receipt(ca, KeyType.ED25519, DOCUMENT_IDS[0])
    copied = dataclasses.replace(receipt, chain=tuple(bytes(bytearray(d)) for d in receipt.chain))
    assert hub_chain(copied.chain) is hub_chain(receipt.chain)


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.P256])
@pytest.mark.parametrize("document_id", DOCUMENT_IDS)
def test_a_hop_receipt_is_stored_without_its_chain_and_served_as_it_came(
    ca: DemoCA, key_type: KeyType, document_id: str
) -> None:
    """The peer's bytes, stored from themselves: the chain is the one stored_receipt names (one
    row per key whichever way a receipt is stored), and the served bytes are those received."""
    receipt = _receipt(ca, key_type, document_id, peer=True)
    received = receipt.to_json()
    chain, stored = received_receipt(received)
    assert chain == hub_chain(receipt.chain)
    assert (chain, stored) == stored_receipt(receipt)
    assert served_receipt(stored, chain) == received


@pytest.mark.parametrize(
    "received",
    [
        # Another encoding of a receipt: a member out of RFC 8785's order, spaces.
        b'{"alg":"ed25519","acknowledged_at":"2026-12-07T00:00:00Z","chain":["QUJD"]}',
        b'{"acknowledged_at":"2026-12-07T00:00:00Z", "alg":"ed25519","chain":["QUJD"]}',
        # A chain of another shape, a chain array with a bracket in a string.
        b'{"acknowledged_at":"2026-12-07T00:00:00Z","alg":"ed25519","chain":{"a":1},"v":1}',
        b'{"acknowledged_at":"2026-12-07T00:00:00Z","alg":"ed25519","chain":["]x[",""],"v":1}',
        # A chain that already reads as a stored reference (a peer unchecked, no anchors).
        b'{"acknowledged_at":"2026-12-07T00:00:00Z","alg":"ed25519","chain":"sha256:'
        + b"ab" * 32
        + b'","v":1}',
        b"",  # a development hub's (no identity)
        b"\xff not json",
    ],
)
def test_a_hop_receipt_of_any_bytes_is_served_as_it_came(received: bytes) -> None:
    """Whatever a peer sent (kept as it came without trust anchors), the bytes served are the
    ones received; bytes stored as they are never read as stored with a reference."""
    chain, stored = received_receipt(received)
    if chain is None:
        assert stored == received
        assert chain_named(stored) is None
    else:
        assert chain_named(stored) == chain.sha256
        assert served_receipt(stored, chain) == received
