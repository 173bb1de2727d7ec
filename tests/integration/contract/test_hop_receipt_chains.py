"""Federation hop receipts stored without their chain, as transport receipts are (migration
0035): the forwarding hub's copy of the next hub's receipt (exchange.delivery.hop_receipt) and
the receipt a hub signed for a copy handed over to it (exchange.forwarded_copy.hop_receipt) hold
the chain referred to, exchange.receipt_chain the chain once per key. Every reader (the
federation store answering a retry, the admin timeline) serves the bytes the peer signed and
sent, byte for byte: they verify offline, and they hash to the ledger's hop_receipt_sha256. A
receipt stored whole before is served as it is; a chain row altered or lost is refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid

import asyncpg
import pytest

from docaxis_client.trust import TransportReceipt, verify_hop_receipt
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_federation import PostgresFederationStore
from services.exchange.adapters.receipt_chains import StoredChainError, chain_named, hub_chain
from services.exchange.domain.model import Submission
from services.exchange.domain.verification import SignatureMode, Verification
from services.exchange.service_layer.federation_ports import ForwardedIn
from services.exchange.service_layer.hop_receipts import HopReceipts
from tests.hub_receipts import peer_identity, receipt_ca
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    events_for,
    send,
)

pytestmark = pytest.mark.integration

# Within the test peers' certificates' validity (from an hour before they were issued).
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NEXT_HUB = "national"


def _signed(
    hub: str, origin: str, submission: Submission, recipient: str, at: dt.datetime = NOW
) -> bytes:
    """Hub `hub`'s hop receipt of the copy, as its HopReceipts signs and hands it out (Ed25519:
    signed again, the same bytes)."""
    return HopReceipts(peer_identity(hub), None).sign(origin, submission, recipient, at)


@dataclasses.dataclass(frozen=True, slots=True)
class HandedOver:
    document_uuid: str
    delivery_id: str
    receipt: bytes  # as the next hub signed and sent it


async def _handed_over(pool: asyncpg.Pool, hub: str = NEXT_HUB) -> HandedOver:
    """A copy routed to `hub`, handed over to it with its signed receipt."""
    recipient = unique("R")
    submission = a_submission(unique("S"), [recipient])
    receipt = a_receipt(submission)
    (route,) = receipt.routes
    receipt = dataclasses.replace(receipt, routes=(dataclasses.replace(route, hub=hub),))
    await send(PostgresDocumentStore(pool), submission, receipt)
    signed = _signed(hub, receipt.document_uuid, submission, recipient)
    assert await PostgresFederationStore(pool).handed_over(route.delivery_id, hub, signed)
    return HandedOver(receipt.document_uuid, route.delivery_id, signed)


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    origin: str
    recipient: str
    submission: Submission
    document_uuid: str
    receipt: bytes  # as this hub signed and handed it out


async def _accept(store: PostgresFederationStore, accepted: Accepted, signed: bytes) -> bytes:
    """The copy handed over to this hub (NEXT_HUB) accepted with `signed`, this hub's receipt;
    what it answers the peer."""
    receipt = a_receipt(accepted.submission, document_uuid=accepted.document_uuid)
    return await store.accept_forwarded(
        accepted.submission,
        receipt,
        hashlib.sha256(repr(accepted.submission).encode()).hexdigest(),
        events_for(receipt, accepted.submission.header.sender),
        Verification(SignatureMode.UNSIGNED),
        ForwardedIn(accepted.origin, accepted.recipient, "province-a", (), signed),
    )


async def _accepted(
    pool: asyncpg.Pool, store: PostgresFederationStore, hub: str = NEXT_HUB
) -> Accepted:
    """A copy a peer handed over to this hub (`hub`), accepted with the receipt it signed."""
    origin, recipient = str(uuid.uuid4()), unique("R")
    submission = a_submission(unique("S"), [recipient])
    signed = _signed(hub, origin, submission, recipient)
    accepted = Accepted(origin, recipient, submission, str(uuid.uuid4()), signed)
    assert await _accept(store, accepted, signed) == signed
    return accepted


async def _delivery_row(pool: asyncpg.Pool, delivery_id: str) -> bytes:
    stored: bytes = await pool.fetchval(
        "SELECT hop_receipt FROM exchange.delivery WHERE id = $1", uuid.UUID(delivery_id)
    )
    return stored


async def _forwarded_row(pool: asyncpg.Pool, accepted: Accepted) -> bytes:
    stored: bytes = await pool.fetchval(
        "SELECT hop_receipt FROM exchange.forwarded_copy WHERE origin_uuid = $1 AND recipient = $2",
        uuid.UUID(accepted.origin),
        accepted.recipient,
    )
    return stored


async def _hand_over_served(pool: asyncpg.Pool, document_uuid: str) -> bytes:
    hops = await PostgresAdminStore(pool).hops(document_uuid)
    assert hops is not None
    (hand_over,) = hops.hand_overs
    return hand_over.receipt


async def _arrival_served(pool: asyncpg.Pool, document_uuid: str) -> bytes:
    hops = await PostgresAdminStore(pool).hops(document_uuid)
    assert hops is not None
    (arrival,) = hops.arrivals
    return arrival.receipt


async def _forwarded_sha256(pool: asyncpg.Pool, document_uuid: str) -> str:
    """The hop_receipt_sha256 of the copy's `forwarded` ledger entry (staged, not sequenced:
    no relay runs on the contract database)."""
    (data,) = await pool.fetchval(
        "SELECT array_agg(data::text) FROM ledger.pending WHERE doc_uuid = $1 "
        "AND data->>'event' = 'forwarded'",
        uuid.UUID(document_uuid),
    )
    digest: str = json.loads(data)["hop_receipt_sha256"]
    return digest


async def test_the_next_hubs_receipt_is_served_as_it_signed_it(pool: asyncpg.Pool) -> None:
    """The forwarding hub's timeline serves the next hub's receipt byte for byte as sent; it
    verifies offline as that hub's, hashes to the ledger's hop_receipt_sha256; the row holds
    it without the chain."""
    handed = await _handed_over(pool)
    served = await _hand_over_served(pool, handed.document_uuid)
    assert served == handed.receipt
    parsed = TransportReceipt.from_json(served)
    verify_hop_receipt(parsed, receipt_ca().trust_store(), hub_code=NEXT_HUB)
    assert await _forwarded_sha256(pool, handed.document_uuid) == (
        hashlib.sha256(served).hexdigest()
    )
    row = await _delivery_row(pool, handed.delivery_id)
    assert chain_named(row) == hub_chain(peer_identity(NEXT_HUB).chain_der()).sha256
    assert len(row) < len(served) - 1_000


async def test_the_receipt_signed_for_a_peer_is_answered_and_shown_as_handed_out(
    pool: asyncpg.Pool,
) -> None:
    """The receiving hub answers a retry (accepted_receipt, accept_forwarded again with a
    receipt signed later) with the receipt it first handed out, byte for byte, and its
    timeline shows that receipt; the row holds it without the chain."""
    store = PostgresFederationStore(pool)
    accepted = await _accepted(pool, store)
    for reader in (store, PostgresFederationStore(pool)):  # known stored; read and checked
        assert await reader.accepted_receipt(accepted.origin, accepted.recipient) == (
            accepted.receipt
        )
        later = _signed(
            NEXT_HUB,
            accepted.origin,
            accepted.submission,
            accepted.recipient,
            NOW + dt.timedelta(seconds=1),
        )
        assert later != accepted.receipt
        assert await _accept(reader, accepted, later) == accepted.receipt
    assert await _arrival_served(pool, accepted.document_uuid) == accepted.receipt
    verify_hop_receipt(
        TransportReceipt.from_json(accepted.receipt), receipt_ca().trust_store(), hub_code=NEXT_HUB
    )
    row = await _forwarded_row(pool, accepted)
    assert chain_named(row) == hub_chain(peer_identity(NEXT_HUB).chain_der()).sha256
    assert len(row) < len(accepted.receipt) - 1_000


async def test_every_hop_receipt_of_a_key_shares_one_chain_row(pool: asyncpg.Pool) -> None:
    """Receipts of one peer key, kept by either side, by several stores: one chain row;
    another hub's key a row of its own."""
    store = PostgresFederationStore(pool)
    handed = [await _handed_over(pool), await _handed_over(pool)]
    accepted = [await _accepted(pool, store), await _accepted(pool, PostgresFederationStore(pool))]
    other = await _handed_over(pool, "province-b")
    digests = {chain_named(await _delivery_row(pool, h.delivery_id)) for h in handed} | {
        chain_named(await _forwarded_row(pool, a)) for a in accepted
    }
    assert digests == {hub_chain(peer_identity(NEXT_HUB).chain_der()).sha256}
    theirs = chain_named(await _delivery_row(pool, other.delivery_id))
    assert theirs == hub_chain(peer_identity("province-b").chain_der()).sha256
    rows = await pool.fetchval(
        "SELECT count(*) FROM exchange.receipt_chain WHERE sha256 = ANY($1::bytea[])",
        [*digests, theirs],
    )
    assert rows == 2


async def test_hop_receipts_stored_whole_are_served_unchanged(pool: asyncpg.Pool) -> None:
    """Receipts stored whole (before), on either side, are served as they are, and the first
    receipt stays the one a retry is answered."""
    handed = await _handed_over(pool)
    accepted = await _accepted(pool, PostgresFederationStore(pool))
    await pool.execute(
        "UPDATE exchange.delivery SET hop_receipt = $2 WHERE id = $1",
        uuid.UUID(handed.delivery_id),
        handed.receipt,
    )
    await pool.execute(
        "UPDATE exchange.forwarded_copy SET hop_receipt = $3 WHERE origin_uuid = $1 "
        "AND recipient = $2",
        uuid.UUID(accepted.origin),
        accepted.recipient,
        accepted.receipt,
    )
    assert await _hand_over_served(pool, handed.document_uuid) == handed.receipt
    assert await _arrival_served(pool, accepted.document_uuid) == accepted.receipt
    store = PostgresFederationStore(pool)
    assert await store.accepted_receipt(accepted.origin, accepted.recipient) == accepted.receipt
    assert await _forwarded_row(pool, accepted) == accepted.receipt


async def test_an_altered_or_missing_chain_of_a_hop_receipt_is_refused(
    pool: asyncpg.Pool,
) -> None:
    """A chain row whose bytes no longer hash to its key (another hub's chain put in its
    place), or a chain row gone: neither side's reader serves the receipt."""
    hub = "altered-hub"
    handed = await _handed_over(pool, hub)
    sha256 = chain_named(await _delivery_row(pool, handed.delivery_id))
    assert sha256 == hub_chain(peer_identity(hub).chain_der()).sha256
    # The receiving side's copy of a receipt of that key, accepted by a store of its own.
    accepted = await _accepted(pool, PostgresFederationStore(pool), hub)
    other = hub_chain(peer_identity("province-b").chain_der()).text
    await pool.execute(
        "UPDATE exchange.receipt_chain SET chain = $2 WHERE sha256 = $1", sha256, other
    )
    with pytest.raises(StoredChainError, match="does not match"):
        await _hand_over_served(pool, handed.document_uuid)
    with pytest.raises(StoredChainError, match="does not match"):
        await PostgresFederationStore(pool).accepted_receipt(accepted.origin, accepted.recipient)
    await pool.execute("DELETE FROM exchange.receipt_chain WHERE sha256 = $1", sha256)
    with pytest.raises(StoredChainError, match="no stored chain"):
        await _hand_over_served(pool, handed.document_uuid)
    with pytest.raises(StoredChainError, match="no stored chain"):
        await _arrival_served(pool, accepted.document_uuid)
