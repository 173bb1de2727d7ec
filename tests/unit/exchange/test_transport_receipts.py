"""Transport receipts: issued on acknowledgement, once, for the sender and the recipient only."""

from __future__ import annotations

import datetime as dt

import pytest

from docaxis_client.trust import Role, TransportReceipt, verify_receipt
from docaxis_client.trust.demo_pki import DemoCA
from services.common.errors import NotFoundError, RejectedError
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import manifest_of
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.exchange.builders import (
    EDUCATION,
    HEALTH,
    LIMIT,
    OUTSIDER,
    SENDER,
    fixed_clock,
    header,
    submission,
)

SINCE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    """The trust anchors the hub's certificate chains to, valid on the fixed clock's day."""
    return DemoCA.create(not_before=SINCE)


def _exchange(store: FakeDocumentStore, hub: DemoCA | None) -> ExchangeHandlers:
    return ExchangeHandlers(
        store,
        FakeDirectoryLookup(SENDER, HEALTH, EDUCATION, OUTSIDER),
        code_problem,
        Limits(max_attachment_bytes=LIMIT),
        clock=fixed_clock,
        hub=None if hub is None else hub.issue_role(Role.HUB, "hub", not_before=SINCE).identity(),
    )


async def test_the_recipients_acknowledgement_yields_one_signed_receipt(ca: DemoCA) -> None:
    store = FakeDocumentStore(clock=fixed_clock)
    exchange = _exchange(store, ca)
    accepted = (await exchange.submit(SENDER, submission(head=header([HEALTH])))).receipt
    delivery_id = accepted.routes[0].delivery_id
    with pytest.raises(RejectedError) as early:
        await exchange.transport_receipt(SENDER, delivery_id)
    assert early.value.reason == "NOT_ACKNOWLEDGED"

    await exchange.acknowledge(HEALTH, delivery_id)
    issued = await exchange.transport_receipt(SENDER, delivery_id)
    assert await exchange.transport_receipt(HEALTH, delivery_id) == issued
    await exchange.acknowledge(HEALTH, delivery_id)  # again: the first receipt stays
    assert await exchange.transport_receipt(SENDER, delivery_id) == issued
    with pytest.raises(NotFoundError):
        await exchange.transport_receipt(OUTSIDER, delivery_id)

    receipt = TransportReceipt.from_json(issued)
    verify_receipt(receipt, ca.trust_store())
    document = store.documents[accepted.document_uuid]
    assert receipt.manifest_sha256 == manifest_of(document.header, ()).sha256_hex()
    assert (receipt.recipient, receipt.document_id) == (HEALTH, accepted.document_id)


async def test_a_receipt_missed_at_acknowledgement_is_issued_when_asked_for(ca: DemoCA) -> None:
    """As after a crash between the acknowledgement's commit and the receipt's."""
    store = FakeDocumentStore(clock=fixed_clock)
    accepted = (await _exchange(store, None).submit(SENDER, submission())).receipt
    delivery_id = accepted.routes[0].delivery_id
    await _exchange(store, None).acknowledge(HEALTH, delivery_id)
    assert store.deliveries[delivery_id].transport_receipt is None
    issued = await _exchange(store, ca).transport_receipt(SENDER, delivery_id)
    assert store.deliveries[delivery_id].transport_receipt == issued
    with pytest.raises(NotFoundError):
        await _exchange(FakeDocumentStore(), None).transport_receipt(SENDER, delivery_id)


class _LostAfterCommit(FakeDocumentStore):
    """The database lost right after an acknowledgement commits (a failover): every read and
    receipt write fails while `lost`."""

    lost = False

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        if self.lost:
            raise ConnectionResetError("the primary went away")
        return await super().delivery(delivery_id)

    async def acknowledge(
        self, delivery_id: str, recipient: str, now: dt.datetime
    ) -> Acknowledgement | None:
        acknowledged = await super().acknowledge(delivery_id, recipient, now)
        self.lost = True
        return acknowledged


async def test_a_committed_acknowledgement_is_answered_when_its_receipt_cannot_be_issued(
    ca: DemoCA,
) -> None:
    """The receipt is a separate step after the commit: its failure must not turn the committed
    acknowledgement into an error (a DMS would retry a copy it can no longer list); the receipt
    is issued when someone asks for it."""
    store = _LostAfterCommit(clock=fixed_clock)
    exchange = _exchange(store, ca)
    accepted = (await exchange.submit(SENDER, submission(head=header([HEALTH])))).receipt
    delivery_id = accepted.routes[0].delivery_id

    answer = await exchange.acknowledge(HEALTH, delivery_id)

    assert not answer.already_acknowledged
    assert store.deliveries[delivery_id].acknowledged_at is not None
    assert store.deliveries[delivery_id].transport_receipt is None
    store.lost = False
    issued = await exchange.transport_receipt(SENDER, delivery_id)
    verify_receipt(TransportReceipt.from_json(issued), ca.trust_store())
