"""Statuses, notices, recalls and pull mode over the fakes."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from docaxis.exchange.v1 import events_pb2

from services.common.errors import NotFoundError, ValidationError
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.statuses import (
    IllegalTransitionError,
    RecallState,
    StaffInfo,
    StatusCode,
    StatusReport,
)
from services.exchange.domain.withdrawal import CopyWithdrawnError
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import (
    ItemKind,
    RecallNoticeItem,
    StatusNoticeItem,
)
from services.exchange.service_layer.ports import PushItem
from tests.fakes import FakeDocumentStore
from tests.lifecycle_fakes import NOTICE_MESSAGE_TYPE, FakeLifecycleStore
from tests.unit.exchange.builders import (
    EDUCATION,
    HEALTH,
    NOW,
    OUTSIDER,
    SENDER,
    fixed_clock,
    header,
    submission,
)


@pytest.fixture
def statuses(store: FakeDocumentStore) -> FakeLifecycleStore:
    return FakeLifecycleStore(store)


@pytest.fixture
def lifecycle(exchange: ExchangeHandlers, statuses: FakeLifecycleStore) -> LifecycleHandlers:
    return LifecycleHandlers(exchange, statuses, clock=fixed_clock)


def report(code: StatusCode, minutes: int, status_id: str | None = None) -> StatusReport:
    return StatusReport(
        status_id or f"dms-{code}-{minutes}",
        code,
        NOW - dt.timedelta(minutes=60 - minutes),
        description="Đã xử lý" if code is not StatusCode.REJECTED else "Sai thể thức",
        staff=StaffInfo(department="Văn thư", staff="Nguyễn Văn A"),
    )


async def send(exchange: ExchangeHandlers, store: FakeDocumentStore) -> dict[str, str]:
    """Submits to HEALTH and EDUCATION and relays the outbox; returns delivery ids by code."""
    result = await exchange.submit(SENDER, submission())
    store.relay_outbox()
    return {r.effective_recipient: r.delivery_id for r in result.receipt.routes}


async def receive(
    lifecycle: LifecycleHandlers, exchange: ExchangeHandlers, code: str, delivery_id: str
) -> None:
    assert isinstance(await exchange.begin_push(delivery_id, code), PushItem)
    await lifecycle.acknowledge(code, delivery_id)


async def test_acknowledging_records_arrival_and_tells_the_sender(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    copies = await send(exchange, store)
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    again = await lifecycle.acknowledge(HEALTH, copies[HEALTH])
    assert again.already_acknowledged
    history = statuses.statuses[copies[HEALTH]]
    assert [(e.code, e.occurred_at, e.reported_by) for e in history] == [
        (StatusCode.ARRIVED, NOW, HEALTH)
    ]
    notices = [m for m in store.outbox if m.message_type == NOTICE_MESSAGE_TYPE]
    assert [m.routing_key for m in notices] == [SENDER]
    event = events_pb2.NoticeQueued.FromString(notices[0].payload)
    item = (await lifecycle.begin_notices([(event.notice_id, SENDER)]))[0]
    assert isinstance(item, StatusNoticeItem)
    assert (item.recipient, item.delivery_id, item.entry.code) == (
        HEALTH,
        copies[HEALTH],
        StatusCode.ARRIVED,
    )
    status_events = [e for e in store.ledger if e.entry_type == "status"]
    assert [(e.from_agency, e.to_agency, e.data["code"]) for e in status_events] == [
        (HEALTH, SENDER, "01")
    ]


async def test_reported_statuses_reach_the_sender_and_track_in_timestamp_order(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    lifecycle: LifecycleHandlers,
) -> None:
    copies = await send(exchange, store)
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    for code, minute in (
        (StatusCode.PROCESSING, 30),
        (StatusCode.ACCEPTED, 10),  # late, but stamped before the 05
        (StatusCode.ASSIGNED, 20),
        (StatusCode.COMPLETED, 40),
    ):
        outcome = await lifecycle.report_status(HEALTH, copies[HEALTH], report(code, minute))
        assert not outcome.already_recorded
    sent = await exchange.track(
        SENDER,
        document_uuid=store.deliveries[copies[HEALTH]].document_uuid,
        document_id=None,
    )
    lifecycles = await lifecycle.lifecycles(sent)
    codes = [e.code.value for e in lifecycles[copies[HEALTH]].statuses]
    # 01 is stamped with the acknowledgement (NOW), after the DMS's own earlier timestamps.
    assert codes == ["03", "04", "05", "06", "01"]
    assert lifecycles[copies[EDUCATION]].statuses == ()
    pending, _ = await lifecycle.list_pending(SENDER, 0, "")
    assert [p.kind for p in pending] == [ItemKind.STATUS] * 5


async def test_statuses_on_copies_not_received_or_not_yours_are_refused(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    copies = await send(exchange, store)
    with pytest.raises(IllegalTransitionError):
        await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.ACCEPTED, 1))
    with pytest.raises(NotFoundError):
        await lifecycle.report_status(EDUCATION, copies[HEALTH], report(StatusCode.ACCEPTED, 1))
    with pytest.raises(ValidationError) as invalid:
        await lifecycle.report_status(
            HEALTH, "nope", StatusReport("", StatusCode.REJECTED, NOW, "")
        )
    assert {v.field for v in invalid.value.violations} == {
        "delivery_id",
        "status_id",
        "description",
    }


async def test_a_repeated_report_is_recorded_and_notified_once(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    copies = await send(exchange, store)
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    first = await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.ACCEPTED, 5))
    notices = len(statuses.notices)
    again = await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.ACCEPTED, 5))
    assert again.already_recorded
    assert again.entry == first.entry
    assert len(statuses.notices) == notices


async def test_a_recall_is_pending_for_a_receiver_and_withdraws_an_unreceived_copy(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    copies = await send(exchange, store)
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    document_uuid = store.deliveries[copies[HEALTH]].document_uuid
    outcomes = await lifecycle.recall(SENDER, document_uuid, "Thu hồi văn bản điện tử", [])
    assert {(o.recipient, o.state) for o in outcomes} == {
        (HEALTH, RecallState.PENDING),
        (EDUCATION, RecallState.WITHDRAWN_BEFORE_RECEIPT),
    }
    # The copy EDUCATION never received is never pushed, nor listed.
    assert store.deliveries[copies[EDUCATION]].state is DeliveryState.WITHDRAWN
    assert await exchange.begin_push(copies[EDUCATION], EDUCATION) is None
    assert await lifecycle.list_pending(EDUCATION, 0, "") == ([], "")
    # HEALTH is asked, and answers.
    (recall_item,), _ = await lifecycle.list_pending(HEALTH, 0, "")
    assert recall_item.kind is ItemKind.RECALL
    notice = await lifecycle.fetch_notice(HEALTH, recall_item.item_id)
    assert isinstance(notice, RecallNoticeItem)
    assert (notice.reason, notice.sender) == ("Thu hồi văn bản điện tử", SENDER)
    again = await lifecycle.recall(SENDER, document_uuid, "Thu hồi lần hai", [HEALTH])
    assert [(o.state, o.already_requested) for o in again] == [(RecallState.PENDING, True)]
    await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.RECALL_AGREED, 59))
    assert store.deliveries[copies[HEALTH]].state is DeliveryState.WITHDRAWN
    track = await exchange.track(SENDER, document_uuid=document_uuid, document_id=None)
    lifecycles = await lifecycle.lifecycles(track)
    assert lifecycles[copies[HEALTH]].recall is RecallState.AGREED
    assert [e.code.value for e in lifecycles[copies[HEALTH]].statuses] == ["15", "01", "13"]
    with pytest.raises(IllegalTransitionError):
        await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.ACCEPTED, 58))
    revokes = [e.data["event"] for e in store.ledger if e.entry_type == "revoke"]
    assert sorted(revokes) == ["requested", "withdrawn_before_receipt"]


async def test_a_refused_recall_leaves_the_copy_in_force(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    copies = await send(exchange, store)
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    document_uuid = store.deliveries[copies[HEALTH]].document_uuid
    await lifecycle.recall(SENDER, document_uuid, "Thu hồi", [HEALTH])
    await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.RECALL_REFUSED, 59))
    assert store.deliveries[copies[HEALTH]].state is DeliveryState.ACKNOWLEDGED
    with pytest.raises(IllegalTransitionError):
        await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.RECALL_AGREED, 59))
    await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.ACCEPTED, 58))
    # EDUCATION's copy was not recalled and still goes out.
    assert isinstance(await exchange.begin_push(copies[EDUCATION], EDUCATION), PushItem)


async def test_only_the_sender_recalls_and_only_its_recipients(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    copies = await send(exchange, store)
    document_uuid = store.deliveries[copies[HEALTH]].document_uuid
    await receive(lifecycle, exchange, HEALTH, copies[HEALTH])
    with pytest.raises(NotFoundError):
        await lifecycle.recall(HEALTH, document_uuid, "Thu hồi", [])
    with pytest.raises(ValidationError) as invalid:
        await lifecycle.recall(SENDER, document_uuid, " ", ["000.00.99.H45", HEALTH, HEALTH])
    assert {v.field for v in invalid.value.violations} == {"reason", "recipients[2]"}
    with pytest.raises(ValidationError) as stranger:
        await lifecycle.recall(SENDER, document_uuid, "Thu hồi", ["000.00.99.H45"])
    assert [v.field for v in stranger.value.violations] == ["recipients[0]"]


async def test_an_acknowledgement_after_a_withdrawal_is_refused(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    """The DMS had the push but had not acknowledged when the recall came."""
    copies = await send(exchange, store)
    assert isinstance(await exchange.begin_push(copies[HEALTH], HEALTH), PushItem)
    document_uuid = store.deliveries[copies[HEALTH]].document_uuid
    (outcome,) = await lifecycle.recall(SENDER, document_uuid, "Thu hồi", [HEALTH])
    assert outcome.state is RecallState.WITHDRAWN_BEFORE_RECEIPT
    # It may have stored what it was pushed: it is told, and expected to discard it.
    (item,), _ = await lifecycle.list_pending(HEALTH, 0, "")
    notice = await lifecycle.fetch_notice(HEALTH, item.item_id)
    assert isinstance(notice, RecallNoticeItem)
    assert (notice.delivery_id, notice.withdrawn) == (copies[HEALTH], True)
    with pytest.raises(CopyWithdrawnError):
        await lifecycle.acknowledge(HEALTH, copies[HEALTH])
    assert store.deliveries[copies[HEALTH]].state is DeliveryState.WITHDRAWN
    assert store.deliveries[copies[HEALTH]].acknowledged_at is None
    assert copies[HEALTH] not in statuses.statuses
    # Nor can it report a status on it: not its copy any more (issue 17).
    with pytest.raises(NotFoundError):
        await lifecycle.report_status(HEALTH, copies[HEALTH], report(StatusCode.RECALL_AGREED, 59))


async def test_pull_mode_pages_through_deliveries_and_notices_oldest_first(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    ids = []
    for n in range(5):
        # Same acceptance time for all (a fixed clock): ties are ordered by id.
        result = await exchange.submit(SENDER, submission(f"c-{n}", head=header(number=str(n))))
        routes = result.receipt.routes
        ids.append(next(r.delivery_id for r in routes if r.effective_recipient == HEALTH))
    first, token = await lifecycle.list_pending(HEALTH, 2, "")
    assert token
    second, token2 = await lifecycle.list_pending(HEALTH, 2, token)
    third, token3 = await lifecycle.list_pending(HEALTH, 2, token2)
    assert token3 == ""
    listed = [i.item_id for i in (*first, *second, *third)]
    assert sorted(listed) == sorted(ids)
    keys = [(i.created_at, i.item_id) for i in (*first, *second, *third)]
    assert keys == sorted(keys)
    fetched = await lifecycle.fetch_delivery(HEALTH, first[0].item_id)
    assert fetched.delivery_id == first[0].item_id
    await lifecycle.acknowledge(HEALTH, first[0].item_id)
    with pytest.raises(NotFoundError):
        await lifecycle.fetch_delivery(HEALTH, first[0].item_id)
    remaining, _ = await lifecycle.list_pending(HEALTH, 0, "")
    assert first[0].item_id not in [i.item_id for i in remaining]
    with pytest.raises(ValidationError):
        await lifecycle.list_pending(HEALTH, 0, "garbage")
    with pytest.raises(ValidationError):
        await lifecycle.list_pending(HEALTH, 501, "")
    # The sender has the arrival notice; acknowledging it takes it off the list.
    (notice,) = (await lifecycle.list_pending(SENDER, 0, ""))[0]
    assert notice.kind is ItemKind.STATUS
    ack = await lifecycle.acknowledge_notice(SENDER, notice.item_id)
    assert not ack.already_acknowledged
    assert (await lifecycle.acknowledge_notice(SENDER, notice.item_id)).already_acknowledged
    assert await lifecycle.list_pending(SENDER, 0, "") == ([], "")
    assert (await lifecycle.begin_notices([(notice.item_id, SENDER)]))[0] is None
    with pytest.raises(NotFoundError):
        await lifecycle.acknowledge_notice(HEALTH, notice.item_id)
    assert statuses.notices[notice.item_id].push_count == 0  # listing is not fetching


# --- updates, replacements and replies ----------------------------------------------------------


async def test_an_update_adds_and_removes_recipients_and_keeps_every_version(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    statuses: FakeLifecycleStore,
    lifecycle: LifecycleHandlers,
) -> None:
    original = await lifecycle.submit(SENDER, submission("c-1"))
    store.relay_outbox()
    routes = {r.effective_recipient: r.delivery_id for r in original.receipt.routes}
    await receive(lifecycle, exchange, HEALTH, routes[HEALTH])
    await receive(lifecycle, exchange, EDUCATION, routes[EDUCATION])
    update_header = dataclasses.replace(
        header((EDUCATION, OUTSIDER), subject="Về việc sáp nhập (cập nhật)"),
        business_type=BusinessType.UPDATE,
        response_for=(original.receipt.document_id,),
    )
    update = await lifecycle.submit(SENDER, submission("c-2", head=update_header))
    # The same DocumentId, a second version; the first is untouched.
    assert update.receipt.document_id == original.receipt.document_id
    assert [r.effective_recipient for r in update.receipt.routes] == [EDUCATION, OUTSIDER]
    first = store.documents[original.receipt.document_uuid]
    assert first.header.subject == "Về việc sáp nhập đơn vị hành chính"
    # (Same submission time under the fixed clock: their order is the uuids'.)
    assert {v.document_uuid for v in await statuses.versions(original.receipt.document_id)} == {
        original.receipt.document_uuid,
        update.receipt.document_uuid,
    }
    track = await exchange.track(
        SENDER, document_uuid=original.receipt.document_uuid, document_id=None
    )
    lifecycles = await lifecycle.lifecycles(track)
    assert {code: lifecycles[routes[code]].recall for code in routes} == {
        HEALTH: RecallState.PENDING,
        EDUCATION: RecallState.PENDING,
    }
    assert lifecycles[routes[HEALTH]].recall_reason.startswith("Thu hồi: nơi nhận bị bỏ")
    assert lifecycles[routes[EDUCATION]].recall_reason.startswith("Cập nhật")
    # EDUCATION accepts the new version in place of the old one; HEALTH agrees to the recall.
    await lifecycle.report_status(
        EDUCATION, routes[EDUCATION], report(StatusCode.RECALL_AGREED, 59)
    )
    await lifecycle.report_status(HEALTH, routes[HEALTH], report(StatusCode.RECALL_AGREED, 59))
    assert {store.deliveries[routes[c]].state for c in routes} == {DeliveryState.WITHDRAWN}
    # The new version goes out to the kept and the added recipient.
    store.relay_outbox()
    for route in update.receipt.routes:
        pushed = await exchange.begin_push(route.delivery_id, route.effective_recipient)
        assert isinstance(pushed, PushItem)
        assert pushed.header.business_type is BusinessType.UPDATE
    # A replay of the update completes nothing twice.
    again = await lifecycle.submit(SENDER, submission("c-2", head=update_header))
    assert again.replayed
    in_reply_to, replies = await lifecycle.links(SENDER, track)
    assert (in_reply_to, [r.document_uuid for r in replies]) == ([], [update.receipt.document_uuid])


async def test_only_the_sender_updates_and_only_its_own_documents(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    original = await lifecycle.submit(SENDER, submission("c-1"))
    stranger = dataclasses.replace(
        header((SENDER,), sender=HEALTH),
        business_type=BusinessType.UPDATE,
        response_for=(original.receipt.document_id,),
    )
    with pytest.raises(ValidationError) as refused:
        await lifecycle.submit(HEALTH, submission("c-h", head=stranger))
    assert [v.field for v in refused.value.violations] == ["header.response_for[0]"]
    assert len(store.documents) == 1


async def test_a_replacement_supersedes_named_documents_for_the_agencies_it_goes_to(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    lifecycle: LifecycleHandlers,
) -> None:
    first = await lifecycle.submit(SENDER, submission("c-1", head=header(number="1")))
    second = await lifecycle.submit(SENDER, submission("c-2", head=header(number="2")))
    store.relay_outbox()
    for sent in (first, second):
        for route in sent.receipt.routes:
            await receive(lifecycle, exchange, route.effective_recipient, route.delivery_id)
    replacement = dataclasses.replace(
        header((HEALTH,), number="3"),
        business_type=BusinessType.REPLACE,
        response_for=(first.receipt.document_id, second.receipt.document_id),
    )
    replaced = await lifecycle.submit(SENDER, submission("c-3", head=replacement))
    assert replaced.receipt.document_id != first.receipt.document_id
    for sent in (first, second):
        track = await exchange.track(
            SENDER, document_uuid=sent.receipt.document_uuid, document_id=None
        )
        lifecycles = await lifecycle.lifecycles(track)
        recalls = {
            r.effective_recipient: lifecycles[r.delivery_id].recall for r in track.recipients
        }
        assert recalls == {HEALTH: RecallState.PENDING, EDUCATION: None}
        _, replies = await lifecycle.links(SENDER, track)
        assert [r.business_type for r in replies] == [BusinessType.REPLACE]


async def test_a_reply_links_both_ways_for_the_parties_only(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    original = await lifecycle.submit(SENDER, submission("c-1"))
    answer = dataclasses.replace(
        header((SENDER,), sender=HEALTH, number="55", subject="Trả lời"),
        response_for=(original.receipt.document_id,),
    )
    reply = await lifecycle.submit(HEALTH, submission("c-r", head=answer))
    sent = await exchange.track(
        SENDER, document_uuid=original.receipt.document_uuid, document_id=None
    )
    in_reply_to, replies = await lifecycle.links(SENDER, sent)
    assert in_reply_to == []
    assert [(r.document_uuid, r.sender, r.business_type) for r in replies] == [
        (reply.receipt.document_uuid, HEALTH, BusinessType.NEW)
    ]
    answered = await exchange.track(
        HEALTH, document_uuid=reply.receipt.document_uuid, document_id=None
    )
    in_reply_to, replies = await lifecycle.links(HEALTH, answered)
    assert [r.document_uuid for r in in_reply_to] == [original.receipt.document_uuid]
    assert replies == []
    # EDUCATION received the original, not the reply: it sees no link to it.
    copy = await exchange.track(
        EDUCATION, document_uuid=original.receipt.document_uuid, document_id=None
    )
    assert await lifecycle.links(EDUCATION, copy) == ([], [])


async def test_a_revoke_package_recalls_the_document_from_its_addressees(
    exchange: ExchangeHandlers, store: FakeDocumentStore, lifecycle: LifecycleHandlers
) -> None:
    """The edXML way (business type 1, same DocumentId): the same pending decisions as Recall."""
    original = await lifecycle.submit(SENDER, submission("c-1"))
    store.relay_outbox()
    routes = {r.effective_recipient: r.delivery_id for r in original.receipt.routes}
    await receive(lifecycle, exchange, HEALTH, routes[HEALTH])
    revoke = dataclasses.replace(
        header((HEALTH,), subject="Thu hồi văn bản điện tử"),
        business_type=BusinessType.REVOKE,
        response_for=(original.receipt.document_id,),
    )
    for attempt in range(2):  # a second revoke package changes nothing
        await lifecycle.submit(SENDER, submission(f"c-revoke-{attempt}", head=revoke))
    track = await exchange.track(
        SENDER, document_uuid=original.receipt.document_uuid, document_id=None
    )
    lifecycles = await lifecycle.lifecycles(track)
    assert lifecycles[routes[HEALTH]].recall is RecallState.PENDING
    assert lifecycles[routes[HEALTH]].recall_reason == "Thu hồi văn bản điện tử"
    assert lifecycles[routes[EDUCATION]].recall is None
