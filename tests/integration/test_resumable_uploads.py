"""Resumable uploads over real gRPC and Postgres: a cut link loses at most the chunk in flight,
the upload resumes from the committed offset, and the stored bytes are verified."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient, Upload
from docaxis_client.uploads import CHUNK_BYTES, ResumableUploader
from services.common.grpc_errors import error_details
from tests.conftest import TEST_MAX_ATTACHMENT_BYTES, Register, make_header
from tests.integration.test_exchange_flow import next_delivery

pytestmark = pytest.mark.integration


CONTENT = random.Random(20250701).randbytes(6 * CHUNK_BYTES + 12345)  # noqa: S311 - test data
SHA256 = hashlib.sha256(CONTENT).hexdigest()


def chunks_from(data: bytes, offset: int) -> Iterator[bytes]:
    for start in range(offset, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


async def downloaded_sha256(client: AgencyClient, document_uuid: str, sha256: str) -> str:
    digest = hashlib.sha256()
    call = client.exchange.DownloadAttachment(
        pb.DownloadAttachmentRequest(document_uuid=document_uuid, sha256=sha256),
        metadata=client.metadata,
        timeout=60,
    )
    async for piece in call:
        digest.update(piece.chunk)
    return digest.hexdigest()


async def test_an_upload_cut_mid_stream_resumes_from_the_committed_offset(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Three chunks arrive, then the link is cut with the stream still open: GetUpload (and a
    new BeginUpload) report those three chunks committed, the rest is sent from there, and the
    attachment downloads with the declared digest."""
    sender, recipient = await register_agencies(2)
    uploader = clients[sender].uploader
    begun = await uploader.begin(SHA256, len(CONTENT))
    assert (begun.committed_size, begun.complete) == (0, False)
    never = asyncio.Event()

    async def three_then_stall() -> AsyncIterator[pb.UploadChunksRequest]:
        for index, chunk in enumerate(chunks_from(CONTENT, 0)):
            if index == 3:
                await never.wait()  # the link hangs: nothing more is sent
            yield pb.UploadChunksRequest(
                upload_id=begun.upload_id, offset=index * CHUNK_BYTES, chunk=chunk
            )

    call = clients[sender].exchange.UploadChunks(
        three_then_stall(), metadata=clients[sender].metadata
    )
    async with asyncio.timeout(15):
        while (await uploader.status(begun.upload_id)).committed_size < 3 * CHUNK_BYTES:  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    cut = await uploader.status(begun.upload_id)
    assert (cut.committed_size, cut.complete) == (3 * CHUNK_BYTES, False)
    again = await uploader.begin(SHA256, len(CONTENT))
    assert (again.upload_id, again.committed_size) == (begun.upload_id, 3 * CHUNK_BYTES)

    finished = (
        await uploader.send(
            begun.upload_id, cut.committed_size, chunks_from(CONTENT, cut.committed_size)
        )
    ).upload
    assert (finished.complete, finished.committed_size, finished.sha256) == (
        True,
        len(CONTENT),
        SHA256,
    )
    stream = clients[recipient].receive()
    response = await clients[sender].submit(
        f"c-{uuid.uuid4()}",
        make_header(sender, [recipient]),
        [Upload(finished.sha256, finished.size).ref("hồ sơ lớn.pdf", "application/pdf")],
    )
    delivery = await next_delivery(stream)
    await clients[recipient].acknowledge(delivery.delivery_id)
    stream.cancel()
    assert await downloaded_sha256(clients[recipient], response.receipt.document_uuid, SHA256) == (
        SHA256
    )


async def test_upload_file_resumes_an_unfinished_upload_of_the_same_file(
    register_agencies: Register, clients: dict[str, AgencyClient], tmp_path: Path
) -> None:
    """A DMS that died mid-upload calls upload_file again: it continues the same upload."""
    (sender,) = await register_agencies(1)
    path = tmp_path / "phu-luc.pdf"
    path.write_bytes(CONTENT)
    uploader = clients[sender].uploader
    begun = await uploader.begin(SHA256, len(CONTENT))
    await uploader.send(begun.upload_id, 0, chunks_from(CONTENT[: 2 * CHUNK_BYTES], 0))
    upload = await clients[sender].upload_file(path)
    assert (upload.sha256, upload.size) == (SHA256, len(CONTENT))
    final = await uploader.status(begun.upload_id)
    assert final.complete


async def test_bytes_that_do_not_match_the_digest_are_discarded(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """INVALID_ARGUMENT / ATTACHMENT_MISMATCH when the size is reached; the upload is gone."""
    (sender,) = await register_agencies(1)
    tampered = b"!" + CONTENT[1:]
    uploader = clients[sender].uploader
    begun = await uploader.begin(SHA256, len(CONTENT))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await uploader.send(begun.upload_id, 0, chunks_from(tampered, 0))
    details = error_details(failure.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ATTACHMENT_MISMATCH",
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await uploader.status(begun.upload_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_wrong_offset_and_an_oversized_declaration_are_refused(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    (sender,) = await register_agencies(1)
    uploader = clients[sender].uploader
    with pytest.raises(grpc.aio.AioRpcError) as too_big:
        await uploader.begin(SHA256, TEST_MAX_ATTACHMENT_BYTES + 1)
    assert error_details(too_big.value).reason == "SIZE_LIMIT_EXCEEDED"
    begun = await uploader.begin(hashlib.sha256(b"x" * 10).hexdigest(), 10)
    with pytest.raises(grpc.aio.AioRpcError) as misplaced:
        await uploader.send(begun.upload_id, 4, iter([b"x" * 6]))
    details = error_details(misplaced.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ATTACHMENT_MISMATCH",
    )
    assert details.metadata["committed_size"] == "0"


async def test_a_client_with_a_stale_offset_resynchronises_and_finishes(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """The chunk in flight at a cut may have been committed after all: the client's next
    stream starts too early, gets FAILED_PRECONDITION, asks where the upload stands and goes on
    from there."""
    (sender,) = await register_agencies(1)
    uploader = clients[sender].uploader
    begun = await uploader.begin(SHA256, len(CONTENT))
    await uploader.send(begun.upload_id, 0, chunks_from(CONTENT[: 2 * CHUNK_BYTES], 0))

    class Stale(ResumableUploader):
        async def begin(self, sha256: str, size: int) -> pb.UploadStatus:
            status = await super().begin(sha256, size)
            status.committed_size = CHUNK_BYTES  # one chunk behind the server
            return status

    stale = Stale(clients[sender].exchange, clients[sender].metadata, timeout_s=30)
    final = await stale.upload(SHA256, len(CONTENT), lambda offset: chunks_from(CONTENT, offset))
    assert (final.upload_id, final.complete, final.committed_size) == (
        begun.upload_id,
        True,
        len(CONTENT),
    )
