"""What the client library adds over the bare gRPC stubs, against a real axis: health, a push
stream that says when it is subscribed, typed refusals, and the signer's name taken from the
person certificate."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.client import AgencyClient
from docaxis_client.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from docaxis_client.receive import ReceiveStream
from docaxis_client.uploads import CHUNK_BYTES
from tests.conftest import Register, make_header
from tests.pki import SIGNER, SuitePki

pytestmark = pytest.mark.integration


async def test_health_says_serving(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Health/Check through the agency's own mTLS channel."""
    (code,) = await register_agencies(1)
    assert await clients[code].health() == "SERVING"
    assert await clients[code].health("docaxis.exchange.v1.ExchangeService") == "SERVING"


async def test_a_subscribed_stream_gets_what_is_sent_afterwards(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """subscribed() returns before anything is sent; the document sent then is pushed."""
    sender, recipient = await register_agencies(2)
    stream = clients[recipient].receive()
    async with asyncio.timeout(15):
        await stream.subscribed()
        response = await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [recipient])
        )
        item = await stream.read()
    assert item.delivery.document_uuid == response.receipt.document_uuid
    await clients[recipient].acknowledge(item.delivery.delivery_id)
    stream.cancel()


async def test_a_refused_stream_raises_its_typed_error_instead_of_subscribing(
    axis: str, pki: SuitePki
) -> None:
    """An operator's certificate may not open an agency's push stream."""
    async with pki.channel(axis, pki.monitor_certificate) as channel:
        stream = ReceiveStream(pb_grpc.ExchangeServiceStub(channel).Receive(pb.ReceiveRequest()))
        async with asyncio.timeout(15):
            with pytest.raises(PermissionDeniedError) as refused:
                await stream.subscribed()
    assert refused.value.reason_code == common_pb2.ERROR_REASON_PERMISSION_DENIED


async def test_refusals_are_typed_with_every_bad_field(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A malformed document: InvalidArgumentError naming each bad field, not retryable; an
    unknown document: NotFoundError."""
    (sender,) = await register_agencies(1)
    header = make_header(sender, ["not-a-code"])
    header.promulgation_date = "yesterday"
    with pytest.raises(InvalidArgumentError) as refused:
        await clients[sender].submit(f"c-{uuid.uuid4()}", header)
    assert refused.value.reason == "VALIDATION"
    assert {v.field for v in refused.value.violations} == {
        "header.promulgation_date",
        "header.recipients[0]",
    }
    assert not refused.value.retryable
    with pytest.raises(NotFoundError):
        await clients[sender].track(str(uuid.uuid4()))


async def test_the_signer_name_comes_from_the_person_certificate(
    register_agencies: Register, clients: dict[str, AgencyClient], pki: SuitePki
) -> None:
    """A header without the official's name is completed from the certificate, signed with
    it, accepted, and verifies at the recipient; the caller's header is left as it was, and
    the client's manifest digest of it is the one the transport receipt attests."""
    sender, recipient = await register_agencies(2)
    header = make_header(sender, [recipient])
    header.signer.full_name = ""
    stream = clients[recipient].receive()
    await clients[sender].submit(f"c-{uuid.uuid4()}", header)
    assert header.signer.full_name == ""
    async with asyncio.timeout(15):
        item = await stream.read()
    assert item.delivery.header.signer.full_name == SIGNER
    assert AgencyClient.verify(item.delivery, pki.trust()).person.full_name == SIGNER
    await clients[recipient].acknowledge(item.delivery.delivery_id)
    stream.cancel()
    # The sender's digest of its own (nameless) header is the one signed and receipted.
    receipt = await clients[sender].transport_receipt(item.delivery.delivery_id)
    assert receipt.manifest_sha256 == clients[sender].manifest_sha256(header)


async def test_large_transfers_tell_their_progress_hook_the_bytes_done(
    register_agencies: Register, clients: dict[str, AgencyClient], tmp_path: Path
) -> None:
    """Upload and download of a several-chunk attachment: the hook sees the count rise to the
    whole size (and a download resumed from a partial file starts from what is there)."""
    sender, recipient = await register_agencies(2)
    data = os.urandom(3 * CHUNK_BYTES + 123)
    annex = tmp_path / "annex.bin"
    annex.write_bytes(data)
    sent: list[int] = []
    upload = await clients[sender].upload_file_resumable(annex, progress=sent.append)
    assert sent == sorted(sent)
    assert sent[-1] == len(data)
    assert len(set(sent)) >= 4  # one step per chunk at least
    response = await clients[sender].submit(
        f"c-{uuid.uuid4()}",
        make_header(sender, [recipient]),
        [upload.ref("annex.bin", "application/octet-stream")],
    )
    target = tmp_path / "received.bin"
    target.write_bytes(data[:1000])  # a download broken off earlier
    received: list[int] = []
    digest = await clients[recipient].download(
        response.receipt.document_uuid, upload.sha256, target, progress=received.append
    )
    assert digest == upload.sha256
    assert received[0] == 1000
    assert received == sorted(received)
    assert received[-1] == len(data)
