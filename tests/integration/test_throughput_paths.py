"""The bulk paths end to end, through docaxis_client over mutual TLS, on real Postgres and
RabbitMQ: acknowledgements on the stream, back-pressure from a slow DMS, batch acknowledgement
(pull mode) and batch submission."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient, BatchDocument
from docaxis_client.errors import item_error
from docaxis_client.streams import AcknowledgingStream, item_id
from tests.conftest import Register, make_header
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def send(client: AgencyClient, sender: str, recipients: list[str], count: int) -> list[str]:
    """`count` documents; their document uuids."""
    sent = []
    for _ in range(count):
        response = await client.submit(f"c-{uuid.uuid4()}", make_header(sender, recipients))
        sent.append(response.receipt.document_uuid)
    return sent


async def next_item(stream: AcknowledgingStream, within: float = 15) -> pb.ReceiveResponse:
    async with asyncio.timeout(within):
        return await anext(aiter(stream))


async def nothing_more(stream: AcknowledgingStream, within: float = 1.0) -> None:
    """Asserts nothing more is pushed within `within` seconds (a bounded negative check)."""
    try:
        async with asyncio.timeout(within):
            item = await anext(aiter(stream))
    except TimeoutError:
        return
    pytest.fail(f"unexpected item: {item}")


async def test_acknowledgements_on_the_stream_are_confirmed_once_durable(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Each acknowledgement sent on the stream is confirmed on it; the copies are acknowledged
    with their 01 and the sender's status notices; a repeat says so, an unknown item gets its
    own NOT_FOUND without ending the stream, and a new stream gets nothing again."""
    sender, recipient = await register_agencies(2)
    sent = await send(clients[sender], sender, [recipient], 3)
    async with clients[recipient].receive_stream(window=10) as stream:
        items = [await next_item(stream) for _ in sent]
        assert sorted(i.delivery.document_uuid for i in items) == sorted(sent)
        stream.acknowledge(*items)
        results = [await stream.confirmed(item_id(i)) for i in items]
        assert [(item_error(r.error), r.already_acknowledged) for r in results] == [
            (None, False)
        ] * 3
        stranger = str(uuid.uuid4())
        stream.acknowledge(items[0], pb.AcknowledgeRequest(delivery_id=stranger))
        again, unknown = await stream.confirmed(item_id(items[0])), await stream.confirmed(stranger)
        assert again.already_acknowledged
        assert again.acknowledged_at == results[0].acknowledged_at
        error = item_error(unknown.error)
        assert error is not None
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        await nothing_more(stream)
    for document_uuid in sent:
        track = await clients[sender].track(document_uuid)
        (copy,) = track.recipients
        assert copy.state == pb.DELIVERY_STATE_ACKNOWLEDGED
        assert [s.code for s in copy.statuses] == [pb.STATUS_CODE_ARRIVED]
    notices = await clients[sender].list_pending()
    assert sorted(i.document_uuid for i in notices.items) == sorted(sent)
    receipt = await clients[recipient].transport_receipt(items[0].delivery.delivery_id)
    assert receipt.recipient == recipient
    async with clients[recipient].receive_stream() as reopened:
        await nothing_more(reopened)


async def test_a_slow_dms_is_pushed_no_more_than_its_window(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Back-pressure: with a window of 2 the third item waits until one is acknowledged (here
    through the unary Acknowledge, which frees the stream's place too); a wider window lets the
    rest through."""
    sender, recipient = await register_agencies(2)
    sent = await send(clients[sender], sender, [recipient], 5)
    async with clients[recipient].receive_stream(window=2) as stream:
        first, second = await next_item(stream), await next_item(stream)
        await nothing_more(stream)
        await clients[recipient].acknowledge(first.delivery.delivery_id)
        third = await next_item(stream)
        await nothing_more(stream)
        stream.set_window(10)
        rest = [await next_item(stream), await next_item(stream)]
        pushed = [first, second, third, *rest]
        assert sorted(i.delivery.document_uuid for i in pushed) == sorted(sent)
        stream.acknowledge(*pushed[1:])
        for item in pushed[1:]:
            assert item_error((await stream.confirmed(item_id(item))).error) is None
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async with clients[recipient].receive_stream(window=1001) as too_wide:
            await next_item(too_wide)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_batch_acknowledgement_answers_each_item(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Pull mode: fetched copies acknowledged in one call with an unknown and a malformed id;
    each item gets its own answer, and the sender's notices are acknowledged in a batch too."""
    sender, recipient = await register_agencies(2)
    sent = await send(clients[sender], sender, [recipient], 3)
    listed = await clients[recipient].list_pending()
    assert len(listed.items) == 3
    for item in listed.items:
        await clients[recipient].fetch(item)
    requests = [pb.AcknowledgeRequest(delivery_id=i.delivery_id) for i in listed.items]
    results = await clients[recipient].acknowledge_batch(
        [
            *requests,
            pb.AcknowledgeRequest(delivery_id=str(uuid.uuid4())),
            pb.AcknowledgeRequest(delivery_id="not-a-uuid"),
        ]
    )
    assert [item_error(r.error) for r in results[:3]] == [None] * 3
    assert [r.item for r in results[:3]] == requests
    missing, malformed = item_error(results[3].error), item_error(results[4].error)
    assert missing is not None
    assert missing.reason == "NOT_FOUND"
    assert malformed is not None
    assert (malformed.code, malformed.violations[0].field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "delivery_id",
    )
    assert (await clients[recipient].list_pending()).items == []
    notices = (await clients[sender].list_pending()).items
    assert sorted(n.document_uuid for n in notices) == sorted(sent)
    acknowledged = await clients[sender].acknowledge_batch(
        [pb.AcknowledgeRequest(notice_id=n.notice_id) for n in notices]
    )
    assert all(item_error(r.error) is None for r in acknowledged)
    assert (await clients[sender].list_pending()).items == []


async def test_a_batch_submission_answers_each_document_on_its_own(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """One bad document among good ones gets its own typed error; the good ones are signed,
    verified, accepted and delivered, and the same batch again is a replay of each."""
    sender, recipient = await register_agencies(2)
    bad = make_header(sender, [recipient])
    bad.subject = ""
    documents = [
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
        BatchDocument(f"c-{uuid.uuid4()}", bad),
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
    ]
    results = await clients[sender].submit_batch(documents)
    error = item_error(results[1].error)
    assert error is not None
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert any(v.field.endswith("subject") for v in error.violations)
    good = [results[0], results[2]]
    assert [item_error(r.error) for r in good] == [None, None]
    assert [r.response.replayed for r in good] == [False, False]
    assert [r.response.receipt.consignment_id for r in good] == [
        documents[0].consignment_id,
        documents[2].consignment_id,
    ]
    async with clients[recipient].receive_stream() as stream:
        pushed = [await next_item(stream), await next_item(stream)]
        assert sorted(p.delivery.document_uuid for p in pushed) == sorted(
            r.response.receipt.document_uuid for r in good
        )
        assert all(len(p.delivery.signatures) == 2 for p in pushed)
        stream.acknowledge(*pushed)
        await stream.confirmed(item_id(pushed[1]))
        await nothing_more(stream)
    again = await clients[sender].submit_batch([documents[0], documents[2]])
    assert [r.response.replayed for r in again] == [True, True]
    assert [r.response.receipt.document_uuid for r in again] == [
        r.response.receipt.document_uuid for r in good
    ]

    async def counted() -> bool:
        track = await clients[sender].track(good[0].response.receipt.document_uuid)
        return track.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED

    await eventually(counted)


async def test_a_duplicate_inside_a_batch_is_refused_alone(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Two documents of one batch with the same DocumentId: one is accepted, the other is
    ALREADY_EXISTS naming it; the documents around them are accepted and delivered once."""
    sender, recipient = await register_agencies(2)
    number = str(uuid.uuid4().int % 10**9)
    documents = [
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient], number=number)),
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient], number=number)),
        BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
    ]
    results = await clients[sender].submit_batch(documents)
    errors = [item_error(r.error) for r in results]
    assert errors[0] is None
    assert errors[3] is None
    twins = [1, 2]
    refused = [i for i in twins if errors[i] is not None]
    (loser,) = refused
    (winner,) = [i for i in twins if i != loser]
    error = errors[loser]
    assert error is not None
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.metadata["document_uuid"] == results[winner].response.receipt.document_uuid
    accepted = {results[i].response.receipt.document_uuid for i in (0, winner, 3)}
    async with clients[recipient].receive_stream() as stream:
        pushed = [await next_item(stream) for _ in accepted]
        assert {p.delivery.document_uuid for p in pushed} == accepted
        stream.acknowledge(*pushed)
        await stream.confirmed(item_id(pushed[-1]))
        await nothing_more(stream)


async def test_a_crash_in_the_middle_of_a_batch_loses_nothing_and_stores_nothing_twice(
    register_agencies: Register, clients: dict[str, AgencyClient], database_url: str
) -> None:
    """The database connection dies while the documents of a batch are being stored (the
    backend is terminated from inside the transaction, as a crash would end it): the call
    fails, and the same batch sent again answers every document, each either a replay of what
    was committed before the crash or accepted now, and each recipient gets one copy of each."""
    sender, recipient, doomed = await register_agencies(3)
    connection = await asyncpg.connect(database_url)
    function = f"exchange.crash_{uuid.uuid4().hex}"
    try:
        await connection.execute(
            f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_terminate_backend(pg_backend_pid());
                PERFORM pg_sleep(5);  -- the termination arrives during it
                RETURN NEW;
            END $$;
            CREATE TRIGGER crash_{function[-32:]} BEFORE INSERT ON exchange.delivery
                FOR EACH ROW WHEN (NEW.recipient = '{doomed}') EXECUTE FUNCTION {function}();
            """
        )
        documents = [
            BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
            BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
            BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient, doomed])),
            BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient])),
        ]
        with pytest.raises(grpc.aio.AioRpcError):
            await clients[sender].submit_batch(documents)
    finally:
        await connection.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
        await connection.close()
    again = await clients[sender].submit_batch(documents)
    assert [item_error(r.error) for r in again] == [None] * len(documents)
    assert not again[2].response.replayed  # its transaction died: nothing of it was stored
    accepted = {r.response.receipt.document_uuid for r in again}
    async with clients[recipient].receive_stream() as stream:
        pushed = [await next_item(stream) for _ in documents]
        assert {p.delivery.document_uuid for p in pushed} == accepted
        stream.acknowledge(*pushed)
        await stream.confirmed(item_id(pushed[-1]))
        await nothing_more(stream)
    async with clients[doomed].receive_stream() as stream:
        only = await next_item(stream)
        assert only.delivery.document_uuid == again[2].response.receipt.document_uuid
        stream.acknowledge(only)
        await stream.confirmed(item_id(only))
        await nothing_more(stream)


CIRCULAR_RECIPIENTS = 200


async def test_a_circular_reaches_every_open_stream_once_and_its_sender_every_status(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Fan-out: one document to 200 agencies, each on its own mutual-TLS connection with a
    ReceiveStream attached before the document is submitted. Every copy is pushed once, to its
    own recipient (nothing more on any stream after its acknowledgement), every acknowledgement
    is confirmed durable, each copy gets a receipt for its recipient over the document's
    manifest, and the sender's stream gets the 01 (arrived) notice of every copy, once."""
    sender, *recipients = await register_agencies(CIRCULAR_RECIPIENTS + 1)
    streams = [clients[code].receive_stream(window=4) for code in recipients]
    notices = clients[sender].receive_stream(window=1000)
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(s.subscribed() for s in [*streams, notices]))
        header = make_header(sender, recipients, subject="Công văn gửi mọi xã")
        response = await clients[sender].submit(f"c-{uuid.uuid4()}", header)
        routes = {r.effective_recipient: r.delivery_id for r in response.receipt.routes}
        assert sorted(routes) == sorted(recipients)
        items = await asyncio.gather(*(next_item(s, within=60) for s in streams))
        assert [i.delivery.delivery_id for i in items] == [routes[code] for code in recipients]
        # Each copy its own fields over the document's shared ones (built once for all).
        assert [i.delivery.requested_recipient for i in items] == recipients
        assert {i.delivery.header.SerializeToString() for i in items} == {
            items[0].delivery.header.SerializeToString()
        }
        assert list(items[0].delivery.header.recipients) == recipients
        for stream, item in zip(streams, items, strict=True):
            stream.acknowledge(item)
        results = await asyncio.gather(
            *(s.confirmed(item_id(i)) for s, i in zip(streams, items, strict=True))
        )
        assert [(item_error(r.error), r.already_acknowledged) for r in results] == [
            (None, False)
        ] * len(recipients)
        statuses: list[pb.StatusNotice] = []
        while len(statuses) < len(recipients):
            notice = await next_item(notices, within=60)
            notices.acknowledge(notice)
            statuses.append(notice.status)
        assert sorted(s.delivery_id for s in statuses) == sorted(routes.values())
        assert {(s.document_uuid, s.status.code) for s in statuses} == {
            (response.receipt.document_uuid, pb.STATUS_CODE_ARRIVED)
        }
        await asyncio.gather(*(nothing_more(s) for s in [*streams, notices]))
    finally:
        for stream in [*streams, notices]:
            stream.cancel()
    manifest = clients[sender].manifest_sha256(header)
    for code in (recipients[0], recipients[-1]):
        receipt = await clients[code].transport_receipt(routes[code])
        assert (receipt.recipient, receipt.manifest_sha256) == (code, manifest)
