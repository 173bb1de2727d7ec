"""The document path on real Postgres and RabbitMQ: submit, push, acknowledge, track."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.receive import ReceiveStream
from services.common.grpc_errors import error_details
from tests.conftest import TEST_MAX_ATTACHMENT_BYTES, Register, make_header

pytestmark = pytest.mark.integration


async def next_delivery(call: ReceiveStream, within: float = 15) -> pb.Delivery:
    async with asyncio.timeout(within):
        response = await call.read()
    return response.delivery


async def no_delivery(call: ReceiveStream, within: float = 1.0) -> None:
    """Asserts nothing more arrives within `within` seconds (a bounded negative check)."""
    try:
        async with asyncio.timeout(within):
            response = await call.read()
    except TimeoutError:
        return
    pytest.fail(f"unexpected item: {response}")


async def test_a_document_reaches_every_recipient_exactly_once(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Each recipient's stream gets the document once; after acknowledging, a new stream gets
    nothing, and the sender sees every copy acknowledged."""
    sender, *recipients = await register_agencies(4)
    streams = {code: clients[code].receive() for code in recipients}
    upload = await clients[sender].upload_stream(b"%PDF-1.7 test body")
    response = await clients[sender].submit(
        f"c-{uuid.uuid4()}",
        make_header(sender, recipients),
        [upload.ref("cv.pdf", "application/pdf")],
    )
    receipt = response.receipt
    assert not response.replayed
    assert [r.effective_recipient for r in receipt.routes] == recipients
    for code, stream in streams.items():
        delivery = await next_delivery(stream)
        assert delivery.document_uuid == receipt.document_uuid
        assert delivery.header.document_id == receipt.document_id
        assert delivery.attachments[0].sha256 == upload.sha256
        ack = await clients[code].acknowledge(delivery.delivery_id)
        assert not ack.already_acknowledged
        again = await clients[code].acknowledge(delivery.delivery_id)
        assert again.already_acknowledged
        await no_delivery(stream, within=0.5)
        stream.cancel()
    reopened = clients[recipients[0]].receive()
    await no_delivery(reopened, within=1.0)
    reopened.cancel()
    track = await clients[sender].track(receipt.document_uuid)
    assert {r.effective_recipient: r.state for r in track.recipients} == dict.fromkeys(
        recipients, pb.DELIVERY_STATE_ACKNOWLEDGED
    )
    assert all(r.push_count == 1 for r in track.recipients)


async def test_an_offline_recipient_gets_its_mail_after_reconnecting(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Mail sent while nobody listens waits in the queue; an unacknowledged push is pushed
    again on the next stream."""
    sender, recipient = await register_agencies(2)
    receipts = []
    for _ in range(3):
        response = await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [recipient])
        )
        receipts.append(response.receipt.document_uuid)
    track = await clients[sender].track(receipts[0])
    assert track.recipients[0].state in (pb.DELIVERY_STATE_ACCEPTED, pb.DELIVERY_STATE_QUEUED)

    first = clients[recipient].receive()
    unacknowledged = await next_delivery(first)
    first.cancel()  # the DMS dies before acknowledging

    second = clients[recipient].receive()
    seen = []
    for _ in range(3):
        delivery = await next_delivery(second)
        seen.append(delivery.document_uuid)
        await clients[recipient].acknowledge(delivery.delivery_id)
    await no_delivery(second, within=0.5)
    second.cancel()
    assert sorted(seen) == sorted(receipts)
    assert unacknowledged.document_uuid in seen
    track = await clients[sender].track(unacknowledged.document_uuid)
    assert track.recipients[0].push_count == 2
    assert track.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED


async def test_resubmitting_the_same_consignment_returns_the_first_receipt(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Same consignment and content: the original receipt, flagged as a replay, no second copy."""
    sender, recipient = await register_agencies(2)
    header = make_header(sender, [recipient])
    first = await clients[sender].submit("same-consignment", header)
    second = await clients[sender].submit("same-consignment", header)
    assert second.replayed
    assert second.receipt == first.receipt


async def test_a_reused_consignment_with_other_content_is_a_duplicate(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """ALREADY_EXISTS with reason DUPLICATE naming the original document."""
    sender, recipient = await register_agencies(2)
    first = await clients[sender].submit("reused", make_header(sender, [recipient]))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit("reused", make_header(sender, [recipient], subject="Khác"))
    details = error_details(failure.value)
    assert details.code is grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "DUPLICATE"
    assert details.metadata["document_uuid"] == first.receipt.document_uuid


async def test_the_same_document_id_under_a_new_consignment_is_a_duplicate(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A new document whose DocumentId exists is rejected, and nothing new is delivered."""
    sender, recipient = await register_agencies(2)
    header = make_header(sender, [recipient], number="4242")
    first = await clients[sender].submit(f"c-{uuid.uuid4()}", header)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit(f"c-{uuid.uuid4()}", header)
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE")
    assert details.metadata["document_uuid"] == first.receipt.document_uuid


async def test_an_unknown_recipient_is_an_invalid_addressee(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """FAILED_PRECONDITION / INVALID_ADDRESSEE naming the unknown code; nothing is stored."""
    sender, recipient = await register_agencies(2)
    stranger = "999.99.99.H99"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit("c-unknown", make_header(sender, [recipient, stranger]))
    details = error_details(failure.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_ADDRESSEE",
    )
    assert details.metadata["unknown"] == stranger
    stream = clients[recipient].receive()
    await no_delivery(stream, within=1.0)
    stream.cancel()


async def test_a_split_recipient_is_refused_naming_its_successors(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A code closed with several successors is ambiguous: INVALID_ADDRESSEE naming them (a
    single successor is followed: tests/integration/test_reorganisations.py)."""
    sender, first, second = await register_agencies(3)
    (closed,) = await register_agencies(1, valid_to="2025-06-30", successors=(first, second))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit("c-closed", make_header(sender, [closed]))
    details = error_details(failure.value)
    assert details.reason == "INVALID_ADDRESSEE"
    assert details.metadata[f"successors.{closed}"] == f"{first},{second}"
    assert details.metadata[f"closed_on.{closed}"] == "2025-06-30"


async def test_malformed_fields_are_all_reported_at_once(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """INVALID_ARGUMENT / VALIDATION with a BadRequest violation per bad field."""
    (sender,) = await register_agencies(1)
    header = make_header(sender, ["not-a-code", "000.00.00.h45"])
    header.subject = ""
    header.code.notation = "X" * 31
    header.promulgation_date = "2999-01-01"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit("c-bad", header)
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    fields = {v.field for v in details.violations}
    assert {
        "header.recipients[0]",
        "header.recipients[1]",
        "header.subject",
        "header.code.notation",
        "header.promulgation_date",
    } <= fields


async def test_submitting_as_another_agency_is_refused(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """An agency acts only as itself: PERMISSION_DENIED / SENDER_MISMATCH."""
    sender, other, recipient = await register_agencies(3)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[other].submit("c-as-other", make_header(sender, [recipient]))
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SENDER_MISMATCH")


async def test_an_oversized_attachment_is_refused_and_not_stored(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Declared or streamed past the limit: INVALID_ARGUMENT / SIZE_LIMIT_EXCEEDED; the
    attachment cannot then be referenced."""
    sender, recipient = await register_agencies(2)
    big = b"x" * (TEST_MAX_ATTACHMENT_BYTES + 1)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].upload_stream(big)
    details = error_details(failure.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SIZE_LIMIT_EXCEEDED",
    )
    bogus = common_pb2.AttachmentRef(
        name="big.pdf",
        media_type="application/pdf",
        size=len(big),
        sha256=hashlib.sha256(big).hexdigest(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients[sender].submit("c-big", make_header(sender, [recipient]), [bogus])
    assert error_details(refused.value).code is grpc.StatusCode.INVALID_ARGUMENT


async def test_an_attachment_that_does_not_match_its_digest_is_refused(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """ATTACHMENT_MISMATCH, and the blob is not stored under the declared hash."""
    sender, recipient = await register_agencies(2)
    claimed = hashlib.sha256(b"what I claim").hexdigest()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].upload_stream(b"what I send", declared_sha256=claimed)
    assert error_details(failure.value).reason == "ATTACHMENT_MISMATCH"
    ref = common_pb2.AttachmentRef(
        name="a.pdf", media_type="application/pdf", size=11, sha256=claimed
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients[sender].submit("c-mismatch", make_header(sender, [recipient]), [ref])
    assert error_details(refused.value).violations[0].field == "attachments[0]"


async def test_attachments_download_whole_and_resume_from_an_offset(
    register_agencies: Register, clients: dict[str, AgencyClient], tmp_path: Path
) -> None:
    """A recipient downloads a multi-chunk attachment; a partial file resumes to the same bytes;
    an outsider cannot download it."""
    sender, recipient, outsider = await register_agencies(3)
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of the chunk size
    upload = await clients[sender].upload_stream(data)
    receipt = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}",
            make_header(sender, [recipient]),
            [upload.ref("big.bin", "application/octet-stream")],
        )
    ).receipt
    whole = tmp_path / "whole.bin"
    assert (
        await clients[recipient].download(receipt.document_uuid, upload.sha256, whole)
        == upload.sha256
    )
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:1_500_000])
    assert (
        await clients[recipient].download(receipt.document_uuid, upload.sha256, partial)
        == upload.sha256
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[outsider].download(receipt.document_uuid, upload.sha256, tmp_path / "x")
    assert error_details(failure.value).code is grpc.StatusCode.NOT_FOUND


async def test_only_the_recipient_can_acknowledge_and_only_parties_can_track(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Another agency's delivery is NOT_FOUND to acknowledge and to track."""
    sender, recipient, outsider = await register_agencies(3)
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    ).receipt
    delivery_id = receipt.routes[0].delivery_id
    with pytest.raises(grpc.aio.AioRpcError) as ack_failure:
        await clients[outsider].acknowledge(delivery_id)
    assert error_details(ack_failure.value).code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as track_failure:
        await clients[outsider].track(receipt.document_uuid)
    assert error_details(track_failure.value).code is grpc.StatusCode.NOT_FOUND
    own = await clients[recipient].track(receipt.document_uuid)
    assert [r.effective_recipient for r in own.recipients] == [recipient]
