"""AdminService on real Postgres and RabbitMQ over mutual TLS: document search, a document's
timeline, and a copy pushed past a small push limit that is dead-lettered, listed, tracked by
its sender, found in RabbitMQ's dead-letter queue and resent by an administrator."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aio_pika
import asyncpg
import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from services.bootstrap.plan import Component
from services.common.grpc_errors import error_details
from services.exchange.adapters.rabbit import DEAD_LETTER_QUEUE
from services.exchange.domain.model import today_in_vietnam
from tests.conftest import Register, make_header, served, settings_for
from tests.infra import SuiteServices
from tests.integration.test_lifecycle_flow import next_item, send_and_receive
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SMALL_MAX_PUSHES = 2


@pytest.fixture
async def admin(axis: str, pki: SuitePki) -> AsyncIterator[apb_grpc.AdminServiceAsyncStub]:
    async with pki.channel(axis, pki.admin_certificate) as channel:
        yield apb_grpc.AdminServiceStub(channel)


@pytest.fixture(scope="module")
async def small_axis(
    database_url: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[str]:
    """A second exchange (and directory) on the suite's database and broker that gives up on a
    copy after two unacknowledged pushes; the main axis's ledger writer sequences its events."""
    settings = dataclasses.replace(
        settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki),
        max_pushes=SMALL_MAX_PUSHES,
    )
    async with served(settings, {Component.DIRECTORY, Component.EXCHANGE}) as address:
        yield address


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def test_documents_are_found_by_each_filter_and_paged_newest_first(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    admin: apb_grpc.AdminServiceAsyncStub,
) -> None:
    sender, r1, r2 = await register_agencies(3)
    first_uuid, copies = await send_and_receive(clients, sender, [r1])  # r1 acknowledges: 01
    first = await clients[sender].track(first_uuid)
    await clients[r1].report_status(
        copies[r1],
        pb.STATUS_CODE_ACCEPTED,
        status_id="s-03",
        occurred_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
    )
    number = str(uuid.uuid4().int % 10**9)
    second = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [r1, r2], number=number)
        )
    ).receipt
    third = (await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [r2]))).receipt

    async def search(**filters: object) -> list[str]:
        response = await admin.SearchDocuments(
            apb.SearchDocumentsRequest(sender=sender, **filters),  # type: ignore[arg-type]
            timeout=30,
        )
        assert not response.next_page_token
        return [d.document.document_uuid for d in response.documents]

    newest_first = [third.document_uuid, second.document_uuid, first_uuid]
    assert await search() == newest_first
    assert await search(document_id=second.document_id) == [second.document_uuid]
    notation = first.header.code.notation
    assert await search(code=f"{number}/{notation}") == [second.document_uuid]
    assert await search(code=number) == [second.document_uuid]
    assert await search(recipient=r2) == [third.document_uuid, second.document_uuid]
    assert await search(latest_status=pb.STATUS_CODE_ACCEPTED) == [first_uuid]
    assert await search(state=pb.DELIVERY_STATE_ACKNOWLEDGED) == [first_uuid]
    # The copy filters hold for one copy: r2's copy of the second document is not acknowledged.
    assert await search(recipient=r2, state=pb.DELIVERY_STATE_ACKNOWLEDGED) == []
    # The Vietnam days of the first and the last Submit, not "today" read after them: a run
    # across midnight there (17:00 UTC) read the next day and found none of the three.
    first_day = today_in_vietnam(first.submitted_at.ToDatetime(dt.UTC))
    last_day = today_in_vietnam(third.accepted_at.ToDatetime(dt.UTC))
    assert (
        await search(submitted_from=first_day.isoformat(), submitted_to=last_day.isoformat())
        == newest_first
    )
    assert await search(submitted_to=(first_day - dt.timedelta(days=1)).isoformat()) == []
    assert await search(submitted_from=(last_day + dt.timedelta(days=1)).isoformat()) == []

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await admin.SearchDocuments(
            apb.SearchDocumentsRequest(sender=sender, page_size=2, page_token=token), timeout=30
        )
        pages.append([d.document.document_uuid for d in page.documents])
        token = page.next_page_token
        if not token:
            break
    assert pages == [newest_first[:2], newest_first[2:]]

    found = await admin.SearchDocuments(
        apb.SearchDocumentsRequest(document_id=first.header.document_id), timeout=30
    )
    (result,) = found.documents
    assert (result.document.sender, result.document.subject) == (sender, first.header.subject)
    assert result.document.code == first.header.code
    (copy,) = result.recipients
    assert (copy.delivery_id, copy.effective_recipient, copy.state, copy.latest_status) == (
        copies[r1],
        r1,
        pb.DELIVERY_STATE_ACKNOWLEDGED,
        pb.STATUS_CODE_ACCEPTED,
    )

    bad = await refused(
        admin.SearchDocuments(
            apb.SearchDocumentsRequest(
                page_size=201,
                submitted_from="2026-13-01",
                latest_status=99,  # type: ignore[arg-type]
                page_token="nope",
            ),
            timeout=30,
        )
    )
    details = error_details(bad)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert [v.field for v in details.violations] == [
        "latest_status",
        "submitted_from",
        "page_size",
        "page_token",
    ]


async def test_a_timeline_shows_every_copy_with_its_statuses_and_links(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    admin: apb_grpc.AdminServiceAsyncStub,
) -> None:
    sender, r1, r2 = await register_agencies(3)
    document_uuid, copies = await send_and_receive(clients, sender, [r1, r2])
    base = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for code, status_id, seconds in (
        (pb.STATUS_CODE_ACCEPTED, "s-03", 1),
        (pb.STATUS_CODE_COMPLETED, "s-06", 2),
    ):
        await clients[r1].report_status(
            copies[r1],
            code,
            status_id=status_id,
            occurred_at=base + dt.timedelta(seconds=seconds),
            description="Đã xử lý",
        )
    original = await clients[sender].track(document_uuid)
    reply_header = make_header(r1, [sender], subject="Trả lời")
    reply_header.response_for.append(original.header.document_id)
    reply = (await clients[r1].submit(f"c-{uuid.uuid4()}", reply_header)).receipt

    timeline = await admin.GetDocumentTimeline(
        apb.GetDocumentTimelineRequest(document_uuid=document_uuid), timeout=30
    )
    assert timeline.document.document_uuid == document_uuid
    assert timeline.document.document_id == original.header.document_id
    assert timeline.header == original.header
    # Who signed and how it was checked: the client's manifest signatures, official first.
    assert timeline.verification.mode == common_pb2.SIGNATURE_MODE_SIGNED
    assert [(c.form, c.role) for c in timeline.verification.checks] == [
        (common_pb2.SIGNATURE_FORM_MANIFEST, common_pb2.SIGNATURE_ROLE_PERSON),
        (common_pb2.SIGNATURE_FORM_MANIFEST, common_pb2.SIGNATURE_ROLE_ORGANIZATION),
    ]
    assert [r.effective_recipient for r in timeline.recipients] == [r1, r2]
    first, second = timeline.recipients
    assert (first.delivery_id, first.state, first.push_count) == (
        copies[r1],
        pb.DELIVERY_STATE_ACKNOWLEDGED,
        1,
    )
    for stamp in ("accepted_at", "queued_at", "pushed_at", "acknowledged_at"):
        assert first.HasField(stamp), stamp
    assert [(s.code, s.reported_by) for s in first.statuses] == [
        (pb.STATUS_CODE_ARRIVED, r1),
        (pb.STATUS_CODE_ACCEPTED, r1),
        (pb.STATUS_CODE_COMPLETED, r1),
    ]
    assert first.statuses[2].description == "Đã xử lý"
    assert first.statuses[2].HasField("recorded_at")
    assert [s.code for s in second.statuses] == [pb.STATUS_CODE_ARRIVED]
    assert [link.document_uuid for link in timeline.replies] == [reply.document_uuid]
    assert not timeline.in_reply_to

    missing = await refused(
        admin.GetDocumentTimeline(
            apb.GetDocumentTimelineRequest(document_uuid=str(uuid.uuid4())), timeout=30
        )
    )
    assert (error_details(missing).code, error_details(missing).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    malformed = await refused(
        admin.GetDocumentTimeline(apb.GetDocumentTimelineRequest(document_uuid="x"), timeout=30)
    )
    assert [v.field for v in error_details(malformed).violations] == ["document_uuid"]


async def test_agencies_are_refused_the_admin_service(
    register_agencies: Register, axis: str, pki: SuitePki
) -> None:
    (agency,) = await register_agencies(1)
    async with pki.channel(axis, pki.agency(agency).agency) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        for call in (
            stub.SearchDocuments(apb.SearchDocumentsRequest(sender=agency), timeout=30),
            stub.ListDeadLetters(apb.ListDeadLettersRequest(agency=agency), timeout=30),
            stub.ResendDeadLetter(
                apb.ResendDeadLetterRequest(delivery_id=str(uuid.uuid4()), reason="x"), timeout=30
            ),
        ):
            details = error_details(await refused(call))
            assert (details.code, details.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "PERMISSION_DENIED",
            )


async def dead_lettered_message(
    amqp_url: str, message_id: str
) -> aio_pika.abc.AbstractIncomingMessage:
    """Takes the message with this id from docaxis.dead-letter (others are left there: they
    return to the queue when the channel closes)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        async with asyncio.timeout(15), queue.iterator() as messages:
            async for message in messages:
                if message.message_id == message_id:
                    await message.ack()
                    return message
    finally:
        await connection.close()
    raise AssertionError("unreachable: the iterator ends only by timeout")


async def resent_ledger_event(database_url: str, document_uuid: str) -> dict[str, object]:
    """The `resent` delivery event of the document, once the ledger writer has sequenced it."""
    connection = await asyncpg.connect(database_url)
    try:

        async def events() -> list[dict[str, object]]:
            rows = await connection.fetch(
                "SELECT body FROM ledger.entry WHERE doc_id = $1 ORDER BY seq",
                uuid.UUID(document_uuid),
            )
            bodies = [json.loads(bytes(r["body"])) for r in rows]
            return [b for b in bodies if b["type"] == "delivery" and b["data"]["event"] == "resent"]

        found = await eventually(events, bool)
    finally:
        await connection.close()
    (event,) = found
    return event


async def test_a_copy_pushed_past_the_limit_is_dead_lettered_then_resent_by_an_admin(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    admin: apb_grpc.AdminServiceAsyncStub,
    small_axis: str,
    pki: SuitePki,
    services: SuiteServices,
    database_url: str,
) -> None:
    """Two pushes without an acknowledgement on an axis limited to two: the third attempt
    dead-letters the copy instead (its message into docaxis.dead-letter); the sender's Track and
    ListDeadLetters show it; an administrator's resend, with a reason, gets it delivered again
    and is ledgered with the administrator's serial and a commitment to the reason."""
    sender, recipient = await register_agencies(2)
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    ).receipt
    (route,) = receipt.routes
    delivery_id = route.delivery_id
    dms = pki.client(small_axis, recipient)
    try:
        for _ in range(SMALL_MAX_PUSHES):  # pushed, never acknowledged (the DMS drops the link)
            stream = dms.receive()
            item = await next_item(stream)
            assert item.delivery.delivery_id == delivery_id
            stream.cancel()
        stream = dms.receive()  # the third push gives up instead

        async def track() -> pb.RecipientState:
            (copy,) = (await clients[sender].track(receipt.document_uuid)).recipients
            return copy

        copy = await eventually(track, lambda c: c.state == pb.DELIVERY_STATE_DEAD_LETTERED)
        stream.cancel()
    finally:
        await dms.close()
    assert (copy.push_count, copy.dead_letter_reason) == (SMALL_MAX_PUSHES, "MAX_PUSHES_EXCEEDED")
    assert copy.HasField("dead_lettered_at")
    message = await dead_lettered_message(services.amqp_url, delivery_id)
    assert message.message_id == delivery_id

    listed = await admin.ListDeadLetters(apb.ListDeadLettersRequest(agency=recipient), timeout=30)
    (dead,) = listed.dead_letters
    assert (dead.delivery_id, dead.effective_recipient, dead.reason, dead.push_count) == (
        delivery_id,
        recipient,
        "MAX_PUSHES_EXCEEDED",
        SMALL_MAX_PUSHES,
    )
    assert (dead.document.document_uuid, dead.document.sender) == (receipt.document_uuid, sender)
    assert dead.dead_lettered_at == copy.dead_lettered_at
    by_sender = await admin.ListDeadLetters(apb.ListDeadLettersRequest(agency=sender), timeout=30)
    assert [d.delivery_id for d in by_sender.dead_letters] == [delivery_id]

    no_reason = error_details(
        await refused(
            admin.ResendDeadLetter(
                apb.ResendDeadLetterRequest(delivery_id="x", reason=" "), timeout=30
            )
        )
    )
    assert no_reason.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in no_reason.violations] == ["delivery_id", "reason"]
    unknown = error_details(
        await refused(
            admin.ResendDeadLetter(
                apb.ResendDeadLetterRequest(delivery_id=str(uuid.uuid4()), reason="x"), timeout=30
            )
        )
    )
    assert unknown.code is grpc.StatusCode.NOT_FOUND

    inbox = clients[recipient].receive()
    reason = "DMS của đơn vị nhận đã sửa lỗi"
    resent = await admin.ResendDeadLetter(
        apb.ResendDeadLetterRequest(delivery_id=delivery_id, reason=reason), timeout=30
    )
    assert resent.state == pb.DELIVERY_STATE_QUEUED
    assert (resent.resend.reason, resent.resend.push_count) == (reason, SMALL_MAX_PUSHES)
    assert resent.resend.administrator_serial
    item = await next_item(inbox)
    assert item.delivery.delivery_id == delivery_id
    await clients[recipient].acknowledge(delivery_id)
    inbox.cancel()
    again = error_details(
        await refused(
            admin.ResendDeadLetter(
                apb.ResendDeadLetterRequest(delivery_id=delivery_id, reason=reason), timeout=30
            )
        )
    )
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_DEAD_LETTERED")

    (copy,) = (await clients[sender].track(receipt.document_uuid)).recipients
    assert (copy.state, copy.push_count) == (pb.DELIVERY_STATE_ACKNOWLEDGED, 1)
    assert not copy.dead_letter_reason
    remaining = await admin.ListDeadLetters(
        apb.ListDeadLettersRequest(agency=recipient), timeout=30
    )
    assert not remaining.dead_letters
    timeline = await admin.GetDocumentTimeline(
        apb.GetDocumentTimelineRequest(document_uuid=receipt.document_uuid), timeout=30
    )
    assert [(r.delivery_id, r.reason) for r in timeline.resends] == [(delivery_id, reason)]

    event = await resent_ledger_event(database_url, receipt.document_uuid)
    assert event["data"] == {
        "delivery": delivery_id,
        "event": "resent",
        "administrator_serial": resent.resend.administrator_serial,
        "administrator_subject_sha256": hashlib.sha256(
            resent.resend.administrator_subject.encode()
        ).hexdigest(),
        "reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
        "dead_letter_reason": "MAX_PUSHES_EXCEEDED",
        "push_count": SMALL_MAX_PUSHES,
    }
