"""Issue 17, findings 1 and 2: a recipient whose copy was withdrawn by a recall reads nothing of
it (or only its own status history, when withdrawn after receipt), cannot acknowledge it, and
the hub never signs a receipt for it."""

from __future__ import annotations

import datetime as dt

import pytest

from docaxis_client.trust import Role
from docaxis_client.trust.demo_pki import DemoCA
from services.common.errors import NotFoundError
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import DeliveryState
from services.exchange.domain.statuses import StatusCode, StatusReport
from services.exchange.domain.withdrawal import CopyWithdrawnError
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import PushItem
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.lifecycle_fakes import FakeLifecycleStore
from tests.unit.exchange.builders import (
    EDUCATION,
    HEALTH,
    LIMIT,
    NOW,
    SENDER,
    fixed_clock,
    submission,
    upload,
)

SINCE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA.create(not_before=SINCE)


@pytest.fixture
def hubbed(store: FakeDocumentStore, ca: DemoCA) -> ExchangeHandlers:
    """An exchange that signs transport receipts: the attack is getting one for a withdrawn copy."""
    return ExchangeHandlers(
        store,
        FakeDirectoryLookup(SENDER, HEALTH, EDUCATION),
        code_problem,
        Limits(max_attachment_bytes=LIMIT),
        clock=fixed_clock,
        hub=ca.issue_role(Role.HUB, "hub", not_before=SINCE).identity(),
    )


@pytest.fixture
def lifecycle(hubbed: ExchangeHandlers, store: FakeDocumentStore) -> LifecycleHandlers:
    return LifecycleHandlers(hubbed, FakeLifecycleStore(store), clock=fixed_clock)


async def _pushed(exchange: ExchangeHandlers, store: FakeDocumentStore) -> tuple[str, PushItem]:
    """A document with an attachment to HEALTH and EDUCATION, pushed to HEALTH (which so learns
    its ids): the document uuid and HEALTH's push."""
    attachment = await upload(exchange, SENDER, b"%PDF-1.7 noi dung")
    result = await exchange.submit(SENDER, submission(attachments=(attachment,)))
    store.relay_outbox()
    (route,) = [r for r in result.receipt.routes if r.effective_recipient == HEALTH]
    push = await exchange.begin_push(route.delivery_id, HEALTH)
    assert isinstance(push, PushItem)
    return result.receipt.document_uuid, push


async def test_a_copy_withdrawn_before_receipt_is_invisible_to_its_recipient(
    hubbed: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    document_uuid, push = await _pushed(hubbed, store)
    delivery_id = push.delivery_id
    # Recalled after the push, before the recipient acknowledged it.
    sha256 = push.attachments[0].sha256
    document_id = push.header.document_id
    await lifecycle.recall(SENDER, document_uuid, "Thu hồi do sai sót", [HEALTH])

    # Every read answers as for a document never sent to it.
    for by_uuid, by_id in ((document_uuid, None), (None, document_id)):
        with pytest.raises(NotFoundError):
            await hubbed.track(HEALTH, document_uuid=by_uuid, document_id=by_id)
    with pytest.raises(NotFoundError):
        await hubbed.download(HEALTH, document_uuid, sha256, 0)
    with pytest.raises(NotFoundError):
        await hubbed.transport_receipt(HEALTH, delivery_id)
    # The other recipient, untouched, still reads it.
    assert (
        await hubbed.track(EDUCATION, document_uuid=document_uuid, document_id=None)
    ).attachments

    # The acknowledgement (the attack of finding 2) is refused, records nothing, signs nothing.
    with pytest.raises(CopyWithdrawnError) as refused:
        await lifecycle.acknowledge(HEALTH, delivery_id)
    assert refused.value.reason == "COPY_WITHDRAWN"
    copy = store.deliveries[delivery_id]
    assert (copy.state, copy.acknowledged_at, copy.transport_receipt) == (
        DeliveryState.WITHDRAWN,
        None,
        None,
    )
    assert not [e for e in store.ledger if e.entry_type == "receipt"]
    # Nor can anyone make the hub sign one later: no receipt exists for it, for either party.
    for party in (HEALTH, SENDER):
        with pytest.raises(NotFoundError):
            await hubbed.transport_receipt(party, delivery_id)
    # The sender still sees the copy, withdrawn.
    tracked = await hubbed.track(SENDER, document_uuid=document_uuid, document_id=None)
    assert {r.effective_recipient: r.state for r in tracked.recipients}[HEALTH] is (
        DeliveryState.WITHDRAWN
    )


async def test_a_copy_withdrawn_after_receipt_keeps_only_its_own_history(
    hubbed: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    document_uuid, push = await _pushed(hubbed, store)
    delivery_id = push.delivery_id
    await lifecycle.acknowledge(HEALTH, delivery_id)
    receipt = await hubbed.transport_receipt(HEALTH, delivery_id)
    await lifecycle.recall(SENDER, document_uuid, "Thu hồi do sai sót", [HEALTH])
    agreed = StatusReport("dms-15", StatusCode.RECALL_AGREED, NOW)
    await lifecycle.report_status(HEALTH, delivery_id, agreed)
    assert store.deliveries[delivery_id].state is DeliveryState.WITHDRAWN

    view = await hubbed.track(HEALTH, document_uuid=document_uuid, document_id=None)
    assert view.withheld
    assert view.attachments == ()
    assert (view.header.document_id, view.header.subject, view.header.recipients) == (
        push.header.document_id,
        "",
        (HEALTH,),
    )
    assert [r.delivery_id for r in view.recipients] == [delivery_id]
    history = await lifecycle.lifecycles(view)
    assert [e.code for e in history[delivery_id].statuses] == [
        StatusCode.ARRIVED,
        StatusCode.RECALL_REQUESTED,
        StatusCode.RECALL_AGREED,
    ]
    assert await lifecycle.links(HEALTH, view) == ([], [])
    with pytest.raises(NotFoundError):
        await hubbed.download(HEALTH, document_uuid, push.attachments[0].sha256, 0)
    # The receipt issued at the legitimate pickup stays the recipient's and the sender's.
    assert await hubbed.transport_receipt(HEALTH, delivery_id) == receipt
    assert await hubbed.transport_receipt(SENDER, delivery_id) == receipt
    with pytest.raises(CopyWithdrawnError):
        await lifecycle.acknowledge(HEALTH, delivery_id)
    # The sender keeps the whole document.
    full = await hubbed.track(SENDER, document_uuid=document_uuid, document_id=None)
    assert (full.withheld, len(full.attachments)) == (False, 1)
