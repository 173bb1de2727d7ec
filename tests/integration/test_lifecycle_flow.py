"""Statuses, recalls and pull mode on real Postgres and RabbitMQ, over mutual TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.errors import item_error
from docaxis_client.receive import ReceiveStream
from services.common.grpc_errors import ErrorDetails, error_details
from tests.conftest import Register, make_header

pytestmark = pytest.mark.integration

Stream = ReceiveStream


async def next_item(stream: Stream, within: float = 15) -> pb.ReceiveResponse:
    async with asyncio.timeout(within):
        return await stream.read()


async def nothing_more(stream: Stream, within: float = 1.0) -> None:
    """Asserts nothing arrives within `within` seconds (a bounded negative check)."""
    try:
        async with asyncio.timeout(within):
            response = await stream.read()
    except TimeoutError:
        return
    pytest.fail(f"unexpected item: {response}")


async def next_status(stream: Stream, client: AgencyClient) -> pb.StatusNotice:
    """The next item, which must be a status notice; acknowledges it."""
    item = await next_item(stream)
    assert item.WhichOneof("item") == "status", item
    await client.acknowledge_notice(item.status.notice_id)
    return item.status


async def send_and_receive(
    clients: dict[str, AgencyClient], sender: str, recipients: list[str]
) -> tuple[str, dict[str, str]]:
    """Submits a document; each recipient takes it from its stream and acknowledges it.
    Returns the document uuid and the delivery ids by recipient."""
    streams = {code: clients[code].receive() for code in recipients}
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, recipients))
    ).receipt
    copies: dict[str, str] = {}
    for code, stream in streams.items():
        item = await next_item(stream)
        assert item.delivery.document_uuid == receipt.document_uuid
        await clients[code].acknowledge(item.delivery.delivery_id)
        copies[code] = item.delivery.delivery_id
        stream.cancel()
    return receipt.document_uuid, copies


def minutes_ago(minutes: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)


async def test_every_status_code_reaches_the_sender_and_tracks_in_timestamp_order(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """01 on acknowledgement, then 03, 04, 05, 06 (a late 03 stamped before the 05): each is
    pushed to the sender's stream once, and Track lists them by their own timestamps."""
    sender, recipient = await register_agencies(2)
    inbox = clients[sender].receive()
    document_uuid, copies = await send_and_receive(clients, sender, [recipient])
    delivery_id = copies[recipient]
    arrived = await next_status(inbox, clients[sender])
    assert (arrived.recipient, arrived.delivery_id, arrived.document_uuid) == (
        recipient,
        delivery_id,
        document_uuid,
    )
    assert arrived.status.code == pb.STATUS_CODE_ARRIVED
    assert arrived.status.reported_by == recipient
    dms = clients[recipient]
    staff = pb.StaffInfo(department="Văn thư", staff="Nguyễn Văn A")
    # Stamped after the acknowledgement (the DMS's clock may run up to 5 minutes ahead).
    base = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    reports = [
        (pb.STATUS_CODE_PROCESSING, 3, "s-05"),
        (pb.STATUS_CODE_ACCEPTED, 1, "s-03"),  # arrives late, happened earlier
        (pb.STATUS_CODE_ASSIGNED, 2, "s-04"),
        (pb.STATUS_CODE_COMPLETED, 4, "s-06"),
    ]
    for code, seconds, status_id in reports:
        response = await dms.report_status(
            delivery_id,
            code,
            status_id=status_id,
            occurred_at=base + dt.timedelta(seconds=seconds),
            description="Đã xử lý",
            staff=staff,
        )
        assert not response.already_recorded
        notice = await next_status(inbox, clients[sender])
        assert (notice.status.code, notice.status.status_id) == (code, status_id)
        assert notice.status.staff.staff == "Nguyễn Văn A"
    repeated = await dms.report_status(
        delivery_id,
        pb.STATUS_CODE_ACCEPTED,
        status_id="s-03-retry",
        occurred_at=base + dt.timedelta(seconds=1),
    )
    assert repeated.already_recorded
    await nothing_more(inbox)
    inbox.cancel()
    reopened = clients[sender].receive()
    await nothing_more(reopened)  # every notice was acknowledged: none comes again
    reopened.cancel()
    track = await clients[sender].track(document_uuid)
    (copy,) = track.recipients
    assert [s.code for s in copy.statuses] == [
        pb.STATUS_CODE_ARRIVED,
        pb.STATUS_CODE_ACCEPTED,
        pb.STATUS_CODE_ASSIGNED,
        pb.STATUS_CODE_PROCESSING,
        pb.STATUS_CODE_COMPLETED,
    ]
    assert [s.status_id for s in copy.statuses][1:] == ["s-03", "s-04", "s-05", "s-06"]
    assert copy.statuses[0].occurred_at == copy.acknowledged_at
    assert all(s.HasField("recorded_at") for s in copy.statuses)
    mine = await dms.track(document_uuid)
    assert [s.status_id for s in mine.recipients[0].statuses] == [
        s.status_id for s in copy.statuses
    ]


async def test_illegal_and_unauthorised_statuses_are_refused(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """06 before 03, anything after 02, a status before receipt or on another's copy, a 02
    without its reason, and a 15 with no recall pending."""
    sender, recipient, other, late = await register_agencies(4)
    document_uuid, copies = await send_and_receive(clients, sender, [recipient, other])
    dms = clients[recipient]

    async def refused(
        client: AgencyClient, delivery_id: str, code: pb.StatusCode.ValueType
    ) -> ErrorDetails:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await client.report_status(
                delivery_id,
                code,
                status_id=str(uuid.uuid4()),
                occurred_at=minutes_ago(1),
            )
        return error_details(failure.value)

    details = await refused(dms, copies[recipient], pb.STATUS_CODE_COMPLETED)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ILLEGAL_TRANSITION",
    )
    details = await refused(dms, copies[recipient], pb.STATUS_CODE_RECALL_AGREED)
    assert details.reason == "ILLEGAL_TRANSITION"
    details = await refused(dms, copies[recipient], pb.STATUS_CODE_REJECTED)
    assert details.reason == "VALIDATION"
    assert [v.field for v in details.violations] == ["description"]
    details = await refused(dms, copies[other], pb.STATUS_CODE_ACCEPTED)
    assert details.code is grpc.StatusCode.NOT_FOUND
    rejected = await dms.report_status(
        copies[recipient],
        pb.STATUS_CODE_REJECTED,
        status_id="reject-1",
        occurred_at=minutes_ago(2),
        description="Sai thể thức, đề nghị gửi lại",
    )
    assert rejected.status.description == "Sai thể thức, đề nghị gửi lại"
    for code in (pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_PROCESSING):
        details = await refused(dms, copies[recipient], code)
        assert details.reason == "ILLEGAL_TRANSITION"
    # A copy not yet received (acknowledged) takes no status.
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [late]))
    ).receipt
    details = await refused(clients[late], receipt.routes[0].delivery_id, pb.STATUS_CODE_ACCEPTED)
    assert details.reason == "ILLEGAL_TRANSITION"
    track = await clients[sender].track(document_uuid)
    by_code = {r.effective_recipient: [s.code for s in r.statuses] for r in track.recipients}
    assert by_code == {
        recipient: [pb.STATUS_CODE_REJECTED, pb.STATUS_CODE_ARRIVED],
        other: [pb.STATUS_CODE_ARRIVED],
    }


async def test_a_recall_agreed_by_one_refused_by_another_and_withheld_from_the_offline_one(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Two recipients that received the document are asked and answer 15 and 16; the third,
    offline, never gets the document; the sender sees both answers and Track shows all three."""
    sender, agrees, refuses, offline = await register_agencies(4)
    inbox = clients[sender].receive()
    receipt = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [agrees, refuses, offline])
        )
    ).receipt
    document_uuid = receipt.document_uuid
    copies = {r.effective_recipient: r.delivery_id for r in receipt.routes}
    streams = {code: clients[code].receive() for code in (agrees, refuses)}
    for code, stream in streams.items():
        item = await next_item(stream)
        await clients[code].acknowledge(item.delivery.delivery_id)
    for _ in range(2):
        assert (await next_status(inbox, clients[sender])).status.code == pb.STATUS_CODE_ARRIVED

    recalled = await clients[sender].recall(document_uuid, "Thu hồi văn bản điện tử")
    states = {o.recipient: o.state for o in recalled.recipients}
    assert states == {
        agrees: pb.RECALL_STATE_PENDING,
        refuses: pb.RECALL_STATE_PENDING,
        offline: pb.RECALL_STATE_WITHDRAWN_BEFORE_RECEIPT,
    }
    track = await clients[sender].track(document_uuid)
    assert {r.effective_recipient: r.state for r in track.recipients}[
        offline
    ] == pb.DELIVERY_STATE_WITHDRAWN

    answers = {agrees: pb.STATUS_CODE_RECALL_AGREED, refuses: pb.STATUS_CODE_RECALL_REFUSED}
    for code, stream in streams.items():
        item = await next_item(stream)
        assert item.WhichOneof("item") == "recall", item
        assert (item.recall.delivery_id, item.recall.reason) == (
            copies[code],
            "Thu hồi văn bản điện tử",
        )
        await clients[code].acknowledge_notice(item.recall.notice_id)
        await clients[code].report_status(
            copies[code], answers[code], status_id=f"answer-{code}", occurred_at=minutes_ago(0)
        )
        stream.cancel()
    told = {(await next_status(inbox, clients[sender])).status.code for _ in range(2)}
    assert told == {pb.STATUS_CODE_RECALL_AGREED, pb.STATUS_CODE_RECALL_REFUSED}
    inbox.cancel()

    late = clients[offline].receive()
    await nothing_more(late, within=1.5)  # the queued copy is skipped: it was withdrawn
    late.cancel()
    track = await clients[sender].track(document_uuid)
    view = {r.effective_recipient: r for r in track.recipients}
    assert (view[agrees].recall_state, view[agrees].state) == (
        pb.RECALL_STATE_AGREED,
        pb.DELIVERY_STATE_WITHDRAWN,
    )
    assert (view[refuses].recall_state, view[refuses].state) == (
        pb.RECALL_STATE_REFUSED,
        pb.DELIVERY_STATE_ACKNOWLEDGED,
    )
    assert view[offline].recall_state == pb.RECALL_STATE_WITHDRAWN_BEFORE_RECEIPT
    assert view[offline].push_count == 0
    assert view[agrees].recall_reason == "Thu hồi văn bản điện tử"
    assert view[agrees].HasField("recall_answered_at")
    assert pb.STATUS_CODE_RECALL_REQUESTED in [s.code for s in view[agrees].statuses]
    # The recalled copy takes no more statuses; the refused one does.
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[agrees].report_status(
            copies[agrees], pb.STATUS_CODE_ACCEPTED, status_id="after", occurred_at=minutes_ago(0)
        )
    assert error_details(failure.value).reason == "ILLEGAL_TRANSITION"
    await clients[refuses].report_status(
        copies[refuses], pb.STATUS_CODE_ACCEPTED, status_id="after", occurred_at=minutes_ago(0)
    )
    # Issue 17: the copy withdrawn after receipt keeps only its identity and own status history;
    # the one withdrawn before receipt is not there at all for its recipient.
    kept = await clients[agrees].track(document_uuid)
    assert (kept.header.subject, kept.header.type_name, list(kept.replies)) == ("", "", [])
    assert kept.header.document_id == receipt.document_id
    ((own),) = kept.recipients
    assert own.effective_recipient == agrees
    assert [s.code for s in own.statuses] == [
        pb.STATUS_CODE_ARRIVED,
        pb.STATUS_CODE_RECALL_REQUESTED,
        pb.STATUS_CODE_RECALL_AGREED,
    ]
    assert (await clients[refuses].track(document_uuid)).header.subject == track.header.subject
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await clients[offline].track(document_uuid)
    assert error_details(hidden.value).reason == "NOT_FOUND"
    # Only the sender recalls.
    with pytest.raises(grpc.aio.AioRpcError) as not_sender:
        await clients[refuses].recall(document_uuid, "Thu hồi")
    assert error_details(not_sender.value).code is grpc.StatusCode.NOT_FOUND


async def test_a_recall_of_a_pushed_but_unacknowledged_copy_withdraws_it_and_says_so(
    register_agencies: Register, clients: dict[str, AgencyClient], tmp_path: Path
) -> None:
    """The DMS had the document on its stream but had not acknowledged it: the copy is
    withdrawn at once, the DMS is told (no answer expected), and it is never pushed again.

    Issue 17 (findings 1, 2): the recipient then tries every way to read or acknowledge it
    anyway; each answers as for a document never sent to it, or COPY_WITHDRAWN, and the hub
    signs no receipt."""
    sender, recipient = await register_agencies(2)
    dms = clients[recipient]
    stream = dms.receive()
    upload = await clients[sender].upload_stream(b"%PDF-1.7 withdrawn body")
    header = make_header(sender, [recipient])
    receipt = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}", header, [upload.ref("cv.pdf", "application/pdf")]
        )
    ).receipt
    pushed = await next_item(stream)
    assert pushed.delivery.document_uuid == receipt.document_uuid
    recalled = await clients[sender].recall(receipt.document_uuid, "Gửi nhầm nơi nhận")
    assert [o.state for o in recalled.recipients] == [pb.RECALL_STATE_WITHDRAWN_BEFORE_RECEIPT]
    told = await next_item(stream)
    assert told.WhichOneof("item") == "recall", told
    assert (told.recall.delivery_id, told.recall.withdrawn, told.recall.reason) == (
        pushed.delivery.delivery_id,
        True,
        "Gửi nhầm nơi nhận",
    )
    await dms.acknowledge_notice(told.recall.notice_id)
    delivery_id = pushed.delivery.delivery_id
    # The DMS had stored it after all and acknowledges it on the open stream: refused, typed.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dms.acknowledge(delivery_id)
    assert (error_details(refused.value).code, error_details(refused.value).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COPY_WITHDRAWN",
    )
    # So it is in a batch, and on the acknowledging stream.
    (batched,) = await dms.acknowledge_batch([pb.AcknowledgeRequest(delivery_id=delivery_id)])
    batch_error = item_error(batched.error)
    assert batch_error is not None
    assert batch_error.reason == "COPY_WITHDRAWN"
    async with dms.receive_stream() as acknowledging:
        acknowledging.acknowledge(pb.AcknowledgeRequest(delivery_id=delivery_id))
        on_stream = item_error((await acknowledging.confirmed(delivery_id)).error)
        assert on_stream is not None
        assert on_stream.reason == "COPY_WITHDRAWN"
    stream.cancel()
    again = dms.receive()
    await nothing_more(again, within=1.5)  # ... and it is never pushed again: withdrawn
    again.cancel()
    # Invisible to its recipient on every read: by uuid, by the guessable DocumentId, download.
    reads: list[Callable[[], Awaitable[object]]] = [
        lambda: dms.track(receipt.document_uuid),
        lambda: dms.exchange.Track(
            pb.TrackRequest(document_id=receipt.document_id), metadata=dms.metadata
        ),
        lambda: dms.download(receipt.document_uuid, upload.sha256, tmp_path / "cv.pdf"),
    ]
    for read in reads:
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await read()
        assert error_details(hidden.value).reason == "NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as no_status:
        await dms.report_status(delivery_id, pb.STATUS_CODE_ACCEPTED, status_id="s-03")
    assert error_details(no_status.value).reason == "NOT_FOUND"
    # No transport receipt exists for it, for either party.
    for party in (recipient, sender):
        with pytest.raises(grpc.aio.AioRpcError) as no_receipt:
            await clients[party].transport_receipt(delivery_id)
        assert error_details(no_receipt.value).reason == "NOT_FOUND"
    track = await clients[sender].track(receipt.document_uuid)
    (copy,) = track.recipients
    assert (copy.state, copy.recall_state) == (
        pb.DELIVERY_STATE_WITHDRAWN,
        pb.RECALL_STATE_WITHDRAWN_BEFORE_RECEIPT,
    )
    assert not copy.HasField("acknowledged_at")
    assert list(copy.statuses) == []  # no 01: it never arrived


async def test_pull_mode_pages_under_concurrent_acknowledgements_and_nothing_is_pushed_again(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A DMS without a stream lists its documents a page at a time while acknowledging the
    previous page concurrently: it sees each exactly once, and a stream opened afterwards gets
    none of them. The sender pulls the 01 notices the same way."""
    sender, recipient = await register_agencies(2)
    count = 23
    sent = set()
    for _ in range(count):
        receipt = (
            await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        ).receipt
        sent.add(receipt.routes[0].delivery_id)
    dms = clients[recipient]
    seen: list[str] = []
    acks: list[asyncio.Task[pb.AcknowledgeResponse]] = []
    token = ""
    pages = 0
    async with asyncio.timeout(60):
        while True:
            page = await dms.list_pending(page_size=4, page_token=token)
            pages += 1
            for item in page.items:
                assert (item.kind, item.sender) == (pb.ITEM_KIND_DELIVERY, sender)
                fetched = await dms.fetch(item)
                assert fetched.delivery.delivery_id == item.delivery_id
                seen.append(item.delivery_id)
            # Acknowledge this page, many at once, while the next page is being listed.
            acks.extend(
                asyncio.create_task(dms.acknowledge_item(item))
                for item in page.items
                for _ in range(3)  # the same item three times: idempotent
            )
            token = page.next_page_token
            if not token:
                break
        results = await asyncio.gather(*acks)
    assert pages == (count + 3) // 4
    assert sorted(seen) == sorted(sent)
    assert sum(not r.already_acknowledged for r in results) == count
    assert (await dms.list_pending()).items == []
    stream = dms.receive()
    await nothing_more(stream, within=1.5)
    stream.cancel()

    # The sender's 01 notices, pulled and acknowledged concurrently.
    notices: list[pb.PendingItem] = []
    token = ""
    while True:
        page = await clients[sender].list_pending(page_size=10, page_token=token)
        notices.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    assert len(notices) == count
    assert {n.kind for n in notices} == {pb.ITEM_KIND_STATUS}
    assert {n.sender for n in notices} == {recipient}  # the agency that reported the 01
    first = await clients[sender].fetch(notices[0])
    assert first.status.status.code == pb.STATUS_CODE_ARRIVED
    await asyncio.gather(*(clients[sender].acknowledge_item(n) for n in notices))
    assert (await clients[sender].list_pending()).items == []
    inbox = clients[sender].receive()
    await nothing_more(inbox, within=1.5)
    inbox.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await dms.list_pending(page_token="not-a-token")
    assert error_details(bad_token.value).reason == "VALIDATION"


async def test_an_item_acknowledged_on_the_stream_is_not_listed_and_vice_versa(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, recipient = await register_agencies(2)
    dms = clients[recipient]
    first = (
        (await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient])))
        .receipt.routes[0]
        .delivery_id
    )
    stream = dms.receive()
    item = await next_item(stream)
    assert item.delivery.delivery_id == first
    await dms.acknowledge(first)
    assert (await dms.list_pending()).items == []
    stream.cancel()
    second = (
        (await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient])))
        .receipt.routes[0]
        .delivery_id
    )
    (listed,) = (await dms.list_pending()).items
    assert listed.delivery_id == second
    await dms.acknowledge_item(listed)
    reopened = dms.receive()
    await nothing_more(reopened, within=1.5)
    reopened.cancel()


async def items(stream: Stream, count: int) -> list[pb.ReceiveResponse]:
    return [await next_item(stream) for _ in range(count)]


async def test_an_update_adds_and_removes_recipients_and_every_version_stays(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """The dropped recipient is asked to withdraw the document, the kept one gets the new
    version and a pending decision on the old one, the added one gets the new version; the
    original is never changed and Track links the versions both ways."""
    sender, dropped, kept, added = await register_agencies(4)
    document_uuid, copies = await send_and_receive(clients, sender, [dropped, kept])
    original = await clients[sender].track(document_uuid)
    streams = {code: clients[code].receive() for code in (dropped, kept, added)}
    header = make_header(sender, [kept, added], subject="Kế hoạch năm 2026 (cập nhật)")
    header.code.CopyFrom(original.header.code)
    header.business_type = common_pb2.BUSINESS_TYPE_UPDATE
    header.response_for.append(original.header.document_id)
    update = (await clients[sender].submit(f"c-{uuid.uuid4()}", header)).receipt
    assert update.document_id == original.header.document_id
    assert update.document_uuid != document_uuid

    (asked,) = await items(streams[dropped], 1)
    assert asked.WhichOneof("item") == "recall"
    assert asked.recall.delivery_id == copies[dropped]
    assert asked.recall.reason.startswith("Thu hồi")
    kept_items = {i.WhichOneof("item"): i for i in await items(streams[kept], 2)}
    assert set(kept_items) == {"delivery", "recall"}
    new_version = kept_items["delivery"].delivery
    assert new_version.document_uuid == update.document_uuid
    assert new_version.header.business_type == common_pb2.BUSINESS_TYPE_UPDATE
    assert list(new_version.header.response_for) == [original.header.document_id]
    assert kept_items["recall"].recall.delivery_id == copies[kept]
    (fresh,) = await items(streams[added], 1)
    assert fresh.delivery.document_uuid == update.document_uuid
    for stream in streams.values():
        stream.cancel()
    for code in (dropped, kept):
        await clients[code].report_status(
            copies[code],
            pb.STATUS_CODE_RECALL_AGREED,
            status_id=f"agree-{code}",
            occurred_at=minutes_ago(0),
        )

    before = await clients[sender].track(document_uuid)
    assert before.header == original.header  # the first version is untouched
    assert {r.effective_recipient: (r.state, r.recall_state) for r in before.recipients} == {
        dropped: (pb.DELIVERY_STATE_WITHDRAWN, pb.RECALL_STATE_AGREED),
        kept: (pb.DELIVERY_STATE_WITHDRAWN, pb.RECALL_STATE_AGREED),
    }
    assert [(r.document_uuid, r.business_type) for r in before.replies] == [
        (update.document_uuid, common_pb2.BUSINESS_TYPE_UPDATE)
    ]
    after = await clients[sender].track(update.document_uuid)
    assert [r.document_uuid for r in after.in_reply_to] == [document_uuid]
    assert [r.effective_recipient for r in after.recipients] == [kept, added]
    # By DocumentId, the latest version.
    latest = await clients[sender].exchange.Track(
        pb.TrackRequest(document_id=original.header.document_id),
        metadata=clients[sender].metadata,
        timeout=10,
    )
    assert latest.document_uuid == update.document_uuid


async def test_a_replacement_supersedes_named_documents_for_its_recipients_only(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, replaced_for, untouched = await register_agencies(3)
    first, first_copies = await send_and_receive(clients, sender, [replaced_for, untouched])
    second, second_copies = await send_and_receive(clients, sender, [replaced_for])
    ids = [(await clients[sender].track(uuid_)).header.document_id for uuid_ in (first, second)]
    inbox = clients[replaced_for].receive()
    other = clients[untouched].receive()
    header = make_header(sender, [replaced_for], subject="Văn bản thay thế")
    header.business_type = common_pb2.BUSINESS_TYPE_REPLACE
    header.response_for.extend(ids)
    replacement = (await clients[sender].submit(f"c-{uuid.uuid4()}", header)).receipt
    got = await items(inbox, 3)
    recalls = sorted(i.recall.delivery_id for i in got if i.WhichOneof("item") == "recall")
    assert recalls == sorted([first_copies[replaced_for], second_copies[replaced_for]])
    assert [i.delivery.document_uuid for i in got if i.WhichOneof("item") == "delivery"] == [
        replacement.document_uuid
    ]
    await nothing_more(other)
    inbox.cancel()
    other.cancel()
    track = await clients[sender].track(first)
    assert {r.effective_recipient: r.recall_state for r in track.recipients} == {
        replaced_for: pb.RECALL_STATE_PENDING,
        untouched: pb.RECALL_STATE_UNSPECIFIED,
    }
    assert "Thay thế" in track.recipients[0].recall_reason
    assert [r.business_type for r in track.replies] == [common_pb2.BUSINESS_TYPE_REPLACE]
    replacing = await clients[sender].track(replacement.document_uuid)
    assert sorted(r.document_uuid for r in replacing.in_reply_to) == sorted([first, second])


async def test_a_reply_is_linked_both_ways_for_its_parties(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, answering, bystander = await register_agencies(3)
    document_uuid, _ = await send_and_receive(clients, sender, [answering, bystander])
    original = await clients[sender].track(document_uuid)
    header = make_header(answering, [sender], subject="Báo cáo trả lời")
    header.response_for.append(original.header.document_id)
    reply = (await clients[answering].submit(f"c-{uuid.uuid4()}", header)).receipt
    seen_by_sender = await clients[sender].track(document_uuid)
    assert [(r.document_uuid, r.sender, r.business_type) for r in seen_by_sender.replies] == [
        (reply.document_uuid, answering, common_pb2.BUSINESS_TYPE_NEW)
    ]
    answered = await clients[answering].track(reply.document_uuid)
    assert [r.document_uuid for r in answered.in_reply_to] == [document_uuid]
    assert list((await clients[sender].track(reply.document_uuid)).in_reply_to) == list(
        answered.in_reply_to
    )
    bystanders_view = await clients[bystander].track(document_uuid)
    assert list(bystanders_view.replies) == []


async def test_a_revoke_package_opens_the_same_pending_decision_as_recall(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """The edXML way to recall (business type 1, same DocumentId): the addressed recipient gets
    the package and a recall notice to answer; the other recipient is untouched."""
    sender, revoked_for, untouched = await register_agencies(3)
    document_uuid, copies = await send_and_receive(clients, sender, [revoked_for, untouched])
    original = await clients[sender].track(document_uuid)
    inbox, other = clients[revoked_for].receive(), clients[untouched].receive()
    header = make_header(sender, [revoked_for], subject="Thu hồi văn bản điện tử")
    header.code.CopyFrom(original.header.code)
    header.business_type = common_pb2.BUSINESS_TYPE_REVOKE
    header.response_for.append(original.header.document_id)
    package = (await clients[sender].submit(f"c-{uuid.uuid4()}", header)).receipt
    assert package.document_id == original.header.document_id
    got = {i.WhichOneof("item"): i for i in await items(inbox, 2)}
    assert got["delivery"].delivery.header.business_type == common_pb2.BUSINESS_TYPE_REVOKE
    assert (got["recall"].recall.delivery_id, got["recall"].recall.reason) == (
        copies[revoked_for],
        "Thu hồi văn bản điện tử",
    )
    await nothing_more(other)
    inbox.cancel()
    other.cancel()
    track = await clients[sender].track(document_uuid)
    assert {r.effective_recipient: r.recall_state for r in track.recipients} == {
        revoked_for: pb.RECALL_STATE_PENDING,
        untouched: pb.RECALL_STATE_UNSPECIFIED,
    }
