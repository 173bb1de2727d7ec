"""The `LifecycleStore` port: one set of tests, run against FakeLifecycleStore and
PostgresLifecycleStore (each over its DocumentStore), observing staged ledger events."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.notices import NoticeLimits
from services.exchange.domain.statuses import (
    IllegalTransitionError,
    RecallState,
    StaffInfo,
    StatusCode,
    StatusConflictError,
    StatusEntry,
    StatusReport,
)
from services.exchange.domain.withdrawal import CopyWithdrawnError
from services.exchange.service_layer.lifecycle_ports import (
    ItemKind,
    LifecycleStore,
    PageCursor,
    RecallNoticeItem,
    StatusNoticeItem,
)
from services.exchange.service_layer.ports import DocumentStore, PushItem
from tests.fakes import FakeDocumentStore
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    ACCEPTED_AT,
    FakeProbe,
    PostgresProbe,
    Probe,
    Sent,
    a_receipt,
    a_submission,
    send,
)
from tests.lifecycle_fakes import FakeLifecycleStore

ACKED_AT = ACCEPTED_AT + dt.timedelta(minutes=5)
# Status notices waiting for one agency, at most, in these tests; coalescing from the first.
BOUND = 3
LIMITS = NoticeLimits(bound=BOUND, coalesce_after=1)


def at(minutes: int) -> dt.datetime:
    return ACKED_AT + dt.timedelta(minutes=minutes)


def status(
    code: StatusCode, minutes: int, reporter: str, status_id: str | None = None
) -> StatusEntry:
    return StatusEntry(
        StatusReport(
            status_id or f"{code}-{minutes}",
            code,
            at(minutes),
            "Đã tiếp nhận",
            StaffInfo("Văn thư", "Nguyễn Văn A", "vt@example.vn", "0900000000"),
        ),
        reported_by=reporter,
        recorded_at=at(minutes + 1),
    )


async def received(docs: DocumentStore, recipients: int = 1) -> tuple[Sent, str, list[str]]:
    """A document to fresh recipients, acknowledged by the first one."""
    sender = unique("S")
    codes = [unique("R") for _ in range(recipients)]
    sent = await send(docs, a_submission(sender, codes))
    await docs.acknowledge(sent.receipt.routes[0].delivery_id, codes[0], ACKED_AT)
    return sent, sender, codes


class LifecycleStoreContract:
    async def test_notices_for_a_sender_not_listening_are_coalesced_and_bounded(
        self, docs: DocumentStore, lifecycle: LifecycleStore, probe: Probe
    ) -> None:
        """A status replaces its copy's notice the sender has not been handed yet; past the
        bound a status is recorded and ledgered without a notice; a handed notice is kept."""
        sent, sender, codes = await received(docs, recipients=BOUND + 1)
        ids = [route.delivery_id for route in sent.receipt.routes]
        for delivery_id, code in zip(ids[1:], codes[1:], strict=True):
            await docs.acknowledge(delivery_id, code, ACKED_AT)
        for index, (delivery_id, code) in enumerate(zip(ids, codes, strict=True)):
            assert await lifecycle.record_status(
                delivery_id, status(StatusCode.ARRIVED, index, code)
            )
        waiting = await lifecycle.pending(sender, None, 10)
        assert len(waiting) == BOUND
        last = (await probe.staged(sent.receipt.document_uuid))[-1]
        assert (last.data["delivery"], last.data["code"]) == (ids[BOUND], "01")
        assert "notice" not in last.data  # suppressed: recorded and ledgered, not queued
        first = waiting[0]
        assert await lifecycle.record_status(ids[0], status(StatusCode.ACCEPTED, 10, codes[0]))
        now_waiting = await lifecycle.pending(sender, None, 10)
        assert len(now_waiting) == BOUND
        assert first.item_id not in {i.item_id for i in now_waiting}
        (latest,) = await lifecycle.begin_notices([(now_waiting[-1].item_id, sender)])
        assert isinstance(latest, StatusNoticeItem)
        assert (latest.delivery_id, latest.entry.code) == (ids[0], StatusCode.ACCEPTED)
        # Handed over now: the next status of the copy no longer replaces it (and, the sender
        # having BOUND notices waiting, is not queued either).
        assert await lifecycle.record_status(ids[0], status(StatusCode.ASSIGNED, 11, codes[0]))
        assert {i.item_id for i in await lifecycle.pending(sender, None, 10)} == {
            i.item_id for i in now_waiting
        }

    async def test_a_status_is_recorded_with_a_notice_for_the_sender_and_a_ledger_event(
        self, docs: DocumentStore, lifecycle: LifecycleStore, probe: Probe
    ) -> None:
        sent, sender, (recipient,) = await received(docs)
        delivery_id = sent.receipt.routes[0].delivery_id
        entry = status(StatusCode.ARRIVED, 0, recipient)
        outcome = await lifecycle.record_status(delivery_id, entry)
        assert outcome is not None
        assert (outcome.entry, outcome.already_recorded) == (entry, False)
        (item,) = await lifecycle.pending(sender, None, 10)
        assert (item.kind, item.document_uuid, item.created_at) == (
            ItemKind.STATUS,
            sent.receipt.document_uuid,
            entry.recorded_at,
        )
        assert item.sender == recipient  # a status notice is from the agency that reported it
        notice = (await lifecycle.begin_notices([(item.item_id, sender)]))[0]
        assert notice == StatusNoticeItem(
            item.item_id,
            sent.receipt.document_uuid,
            sent.receipt.document_id,
            delivery_id,
            recipient,
            entry,
        )
        assert (await lifecycle.begin_notices([(item.item_id, recipient)]))[0] is None
        staged = (await probe.staged(sent.receipt.document_uuid))[-1]
        assert (staged.entry_type, staged.from_agency, staged.to_agency) == (
            "status",
            recipient,
            sender,
        )
        assert staged.occurred_at == entry.recorded_at
        assert staged.data["code"] == "01"
        assert staged.data["notice"] == item.item_id
        assert staged.data["delivery"] == delivery_id
        ack = (await lifecycle.acknowledge_notices([(item.item_id, sender)], at(9)))[0]
        assert ack is not None
        assert (ack.acknowledged_at, ack.already_acknowledged) == (at(9), False)
        again = (await lifecycle.acknowledge_notices([(item.item_id, sender)], at(10)))[0]
        assert again is not None
        assert (again.acknowledged_at, again.already_acknowledged) == (at(9), True)
        assert (await lifecycle.acknowledge_notices([(item.item_id, recipient)], at(9)))[0] is None
        assert (await lifecycle.begin_notices([(item.item_id, sender)]))[0] is None
        assert await lifecycle.pending(sender, None, 10) == []

    async def test_repeats_return_the_first_entry_and_add_nothing(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sent, sender, (recipient,) = await received(docs)
        delivery_id = sent.receipt.routes[0].delivery_id
        first = status(StatusCode.ACCEPTED, 1, recipient, "dms-1")
        await lifecycle.record_status(delivery_id, first)
        for repeat in (
            status(StatusCode.ACCEPTED, 1, recipient, "dms-1"),
            status(StatusCode.ACCEPTED, 1, recipient, "dms-2"),
        ):
            outcome = await lifecycle.record_status(delivery_id, repeat)
            assert outcome is not None
            assert (outcome.entry, outcome.already_recorded) == (first, True)
        with pytest.raises(StatusConflictError):
            await lifecycle.record_status(
                delivery_id, status(StatusCode.PROCESSING, 2, recipient, "dms-1")
            )
        assert len(await lifecycle.pending(sender, None, 10)) == 1
        history = (await lifecycle.lifecycles(sent.receipt.document_uuid))[delivery_id].statuses
        assert history == (first,)

    async def test_reports_that_do_not_fit_store_nothing(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sent, sender, (recipient, other) = await received(docs, recipients=2)
        acked, unacked = (r.delivery_id for r in sent.receipt.routes)
        with pytest.raises(IllegalTransitionError):
            await lifecycle.record_status(acked, status(StatusCode.COMPLETED, 1, recipient))
        with pytest.raises(IllegalTransitionError):
            await lifecycle.record_status(unacked, status(StatusCode.ACCEPTED, 1, other))
        assert await lifecycle.record_status(acked, status(StatusCode.ACCEPTED, 1, other)) is None
        assert (
            await lifecycle.record_status(str(uuid.uuid4()), status(StatusCode.ARRIVED, 0, other))
            is None
        )
        every = await lifecycle.lifecycles(sent.receipt.document_uuid)
        assert [every[acked].statuses, every[unacked].statuses] == [(), ()]
        assert await lifecycle.pending(sender, None, 10) == []

    async def test_statuses_come_back_ordered_by_their_own_timestamps(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sent, _, (recipient,) = await received(docs)
        delivery_id = sent.receipt.routes[0].delivery_id
        for code, minute in (
            (StatusCode.PROCESSING, 3),
            (StatusCode.ACCEPTED, 3),  # reported together with the 05
            (StatusCode.ARRIVED, 0),
            (StatusCode.ASSIGNED, 2),
        ):
            await lifecycle.record_status(delivery_id, status(code, minute, recipient))
        history = (await lifecycle.lifecycles(sent.receipt.document_uuid))[delivery_id].statuses
        assert [e.code for e in history] == [
            StatusCode.ARRIVED,
            StatusCode.ASSIGNED,
            StatusCode.ACCEPTED,
            StatusCode.PROCESSING,
        ]

    async def test_a_recall_withdraws_unreceived_copies_and_asks_the_others(
        self, docs: DocumentStore, lifecycle: LifecycleStore, probe: Probe
    ) -> None:
        sent, sender, (asked, withdrawn) = await received(docs, recipients=2)
        asked_id, withdrawn_id = (r.delivery_id for r in sent.receipt.routes)
        document_uuid = sent.receipt.document_uuid
        assert await lifecycle.request_recall(document_uuid, asked, "x", [], at(1)) is None
        outcomes = await lifecycle.request_recall(document_uuid, sender, "Thu hồi", [], at(1))
        assert outcomes is not None
        assert [(o.recipient, o.delivery_id, o.state, o.already_requested) for o in outcomes] == [
            (asked, asked_id, RecallState.PENDING, False),
            (withdrawn, withdrawn_id, RecallState.WITHDRAWN_BEFORE_RECEIPT, False),
        ]
        assert (await docs.begin_pushes([(withdrawn_id, withdrawn)]))[0] is None
        assert await lifecycle.pending(withdrawn, None, 10) == []
        (item,) = await lifecycle.pending(asked, None, 10)
        assert (item.kind, item.sender) == (ItemKind.RECALL, sender)
        notice = (await lifecycle.begin_notices([(item.item_id, asked)]))[0]
        assert notice == RecallNoticeItem(
            item.item_id,
            document_uuid,
            sent.receipt.document_id,
            asked_id,
            sender,
            "Thu hồi",
            at(1),
            withdrawn=False,
        )
        again = await lifecycle.request_recall(document_uuid, sender, "Lần hai", [asked], at(2))
        assert again is not None
        assert [(o.state, o.already_requested) for o in again] == [(RecallState.PENDING, True)]
        await lifecycle.record_status(asked_id, status(StatusCode.RECALL_AGREED, 3, asked))
        every = await lifecycle.lifecycles(document_uuid)
        assert (every[asked_id].recall, every[asked_id].recall_answered_at) == (
            RecallState.AGREED,
            at(4),
        )
        assert every[asked_id].recall_reason == "Thu hồi"
        assert [e.code for e in every[asked_id].statuses] == [
            StatusCode.RECALL_REQUESTED,
            StatusCode.RECALL_AGREED,
        ]
        assert every[withdrawn_id].recall is RecallState.WITHDRAWN_BEFORE_RECEIPT
        assert every[withdrawn_id].statuses == ()
        track = await docs.track(document_uuid=document_uuid, document_id=None)
        assert track is not None
        assert [r.state for r in track.recipients] == [DeliveryState.WITHDRAWN] * 2
        revokes = [e for e in await probe.staged(document_uuid) if e.entry_type == "revoke"]
        assert [(e.to_agency, e.data["event"]) for e in revokes] == [
            (asked, "requested"),
            (withdrawn, "withdrawn_before_receipt"),
        ]
        # Acknowledging a withdrawn copy is refused and changes nothing (issue 17), whether it
        # was withdrawn before receipt or after an agreed recall.
        for recipient, delivery_id in ((withdrawn, withdrawn_id), (asked, asked_id)):
            with pytest.raises(CopyWithdrawnError):
                await docs.acknowledge(delivery_id, recipient, at(5))
        track = await docs.track(document_uuid=document_uuid, document_id=None)
        assert track is not None
        agreed, unreceived = track.recipients
        assert (agreed.state, unreceived.state) == (DeliveryState.WITHDRAWN,) * 2
        assert agreed.acknowledged_at == ACKED_AT
        assert unreceived.acknowledged_at is None
        record = await docs.delivery(withdrawn_id)
        assert record is not None
        assert (record.state, record.acknowledged_at, record.transport_receipt) == (
            DeliveryState.WITHDRAWN,
            None,
            None,
        )

    async def test_a_pushed_but_unacknowledged_copy_is_withdrawn_with_a_notice(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sender, recipient = unique("S"), unique("R")
        sent = await send(docs, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        assert isinstance((await docs.begin_pushes([(delivery_id, recipient)]))[0], PushItem)
        outcomes = await lifecycle.request_recall(
            sent.receipt.document_uuid, sender, "Thu hồi", [], at(1)
        )
        assert outcomes is not None
        assert [o.state for o in outcomes] == [RecallState.WITHDRAWN_BEFORE_RECEIPT]
        assert (await docs.begin_pushes([(delivery_id, recipient)]))[0] is None
        (item,) = await lifecycle.pending(recipient, None, 10)
        notice = (await lifecycle.begin_notices([(item.item_id, recipient)]))[0]
        assert isinstance(notice, RecallNoticeItem)
        assert (notice.delivery_id, notice.withdrawn, notice.reason) == (
            delivery_id,
            True,
            "Thu hồi",
        )
        every = await lifecycle.lifecycles(sent.receipt.document_uuid)
        assert every[delivery_id].statuses == ()  # no 13: nothing to answer

    async def test_pending_lists_deliveries_and_notices_oldest_first_after_the_cursor(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sender, recipient = unique("S"), unique("R")
        delivery_ids = []
        for minute in (3, 1, 2):
            submission = a_submission(sender, [recipient])
            receipt = a_receipt(submission, accepted_at=ACCEPTED_AT + dt.timedelta(minutes=minute))
            sent = await send(docs, submission, receipt)
            delivery_ids.append(sent.receipt.routes[0].delivery_id)
        first = await lifecycle.pending(recipient, None, 10)
        assert [i.item_id for i in first] == [delivery_ids[1], delivery_ids[2], delivery_ids[0]]
        assert {i.kind for i in first} == {ItemKind.DELIVERY}
        assert {i.sender for i in first} == {sender}
        cursor = PageCursor(first[0].created_at, first[0].item_id)
        assert await lifecycle.pending(recipient, cursor, 1) == first[1:2]
        assert await lifecycle.pending(recipient, None, 0) == []
        await docs.acknowledge(delivery_ids[2], recipient, ACKED_AT)
        rest = await lifecycle.pending(recipient, cursor, 10)
        assert [i.item_id for i in rest] == [delivery_ids[0]]
        # Ties on the time order by id.
        same = a_submission(sender, [recipient])
        tie = await send(docs, same, a_receipt(same, accepted_at=ACCEPTED_AT))
        twin = a_submission(sender, [recipient])
        tie2 = await send(docs, twin, a_receipt(twin, accepted_at=ACCEPTED_AT))
        tied = sorted([tie.receipt.routes[0].delivery_id, tie2.receipt.routes[0].delivery_id])
        listed = await lifecycle.pending(recipient, None, 2)
        assert [i.item_id for i in listed] == tied
        after_first = await lifecycle.pending(
            recipient, PageCursor(listed[0].created_at, listed[0].item_id), 1
        )
        assert [i.item_id for i in after_first] == tied[1:]

    async def test_versions_and_links_follow_response_for_both_ways_for_parties_only(
        self, docs: DocumentStore, lifecycle: LifecycleStore
    ) -> None:
        sender, recipient, other = unique("S"), unique("R"), unique("O")
        original = await send(docs, a_submission(sender, [recipient, other]))
        document_id = original.receipt.document_id
        update_submission = dataclasses.replace(
            original.submission,
            consignment_id=f"c-{uuid.uuid4()}",
            header=dataclasses.replace(
                original.submission.header,
                recipients=(recipient,),
                business_type=BusinessType.UPDATE,
                response_for=(document_id,),
            ),
        )
        update = await send(
            docs,
            update_submission,
            a_receipt(update_submission, accepted_at=ACCEPTED_AT + dt.timedelta(minutes=1)),
        )
        reply_submission = a_submission(recipient, [sender])
        reply_submission = dataclasses.replace(
            reply_submission,
            header=dataclasses.replace(reply_submission.header, response_for=(document_id,)),
        )
        reply = await send(
            docs,
            reply_submission,
            a_receipt(reply_submission, accepted_at=ACCEPTED_AT + dt.timedelta(minutes=2)),
        )
        versions = await lifecycle.versions(document_id)
        assert [(v.document_uuid, v.business_type, v.sender) for v in versions] == [
            (original.receipt.document_uuid, BusinessType.NEW, sender),
            (update.receipt.document_uuid, BusinessType.UPDATE, sender),
        ]
        assert versions[1].submitted_at == ACCEPTED_AT + dt.timedelta(minutes=1)
        assert await lifecycle.versions("nobody,2025/01/01,1/X") == []
        in_reply_to, replies = await lifecycle.links(original.receipt.document_uuid, sender)
        assert in_reply_to == []
        assert [r.document_uuid for r in replies] == [
            update.receipt.document_uuid,
            reply.receipt.document_uuid,
        ]
        in_reply_to, replies = await lifecycle.links(reply.receipt.document_uuid, recipient)
        assert [r.document_uuid for r in in_reply_to] == [
            original.receipt.document_uuid,
            update.receipt.document_uuid,
        ]
        assert replies == []
        # `other` has a copy of the original only.
        in_reply_to, replies = await lifecycle.links(original.receipt.document_uuid, other)
        assert (in_reply_to, replies) == ([], [])
        # An administrator (no agency) sees every linked document.
        in_reply_to, replies = await lifecycle.links(original.receipt.document_uuid, None)
        assert in_reply_to == []
        assert [r.document_uuid for r in replies] == [
            update.receipt.document_uuid,
            reply.receipt.document_uuid,
        ]
        assert await lifecycle.links(str(uuid.uuid4()), sender) == ([], [])
        # Once the recipient's copy of the original is withdrawn, the reply no longer links to it
        # for the recipient (issue 17): a withdrawn copy is not one of its documents.
        await lifecycle.request_recall(
            original.receipt.document_uuid, sender, "Thu hồi", [recipient], at(1)
        )
        in_reply_to, _ = await lifecycle.links(reply.receipt.document_uuid, recipient)
        assert [r.document_uuid for r in in_reply_to] == [update.receipt.document_uuid]


class TestFakeLifecycleStore(LifecycleStoreContract):
    @pytest.fixture
    def fake(self) -> FakeDocumentStore:
        return FakeDocumentStore()

    @pytest.fixture
    def docs(self, fake: FakeDocumentStore) -> DocumentStore:
        return fake

    @pytest.fixture
    def lifecycle(self, fake: FakeDocumentStore) -> LifecycleStore:
        return FakeLifecycleStore(fake, notice_limits=LIMITS)

    @pytest.fixture
    def probe(self, fake: FakeDocumentStore) -> Probe:
        return FakeProbe(fake)


@pytest.mark.integration
class TestPostgresLifecycleStore(LifecycleStoreContract):
    @pytest.fixture
    def docs(self, pool: asyncpg.Pool) -> DocumentStore:
        return PostgresDocumentStore(pool)

    @pytest.fixture
    def lifecycle(self, pool: asyncpg.Pool) -> LifecycleStore:
        return PostgresLifecycleStore(pool, notices=LIMITS)

    @pytest.fixture
    def probe(self, pool: asyncpg.Pool) -> Probe:
        return PostgresProbe(pool)
