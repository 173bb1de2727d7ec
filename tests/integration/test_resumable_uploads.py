"""Resumable uploads over real gRPC and Postgres: a cut link loses at most the chunk in flight,
the upload resumes from the committed offset, and the stored bytes are verified."""

from __future__ import annotations

import asyncio
import datetime as dt
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
from services.common import postgres
from services.common.grpc_errors import error_details
from services.exchange.adapters.postgres_uploads import PostgresAbandonedUploads
from services.exchange.service_layer.uploads import AbandonedUploadSweeper
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
    upload = await clients[sender].upload_file_resumable(path)
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


async def test_an_abandoned_upload_is_deleted_with_its_chunks_after_its_time_to_live(
    register_agencies: Register, clients: dict[str, AgencyClient], database_url: str
) -> None:
    """An unfinished upload untouched for the TTL is swept (resuming it is then NOT_FOUND, and
    its chunks are gone); a fresher one, and a completed one, are left alone."""
    (agency,) = await register_agencies(1)
    uploader = clients[agency].uploader
    stale_content, fresh_content = b"a" * (CHUNK_BYTES + 7), b"b" * (CHUNK_BYTES + 7)
    stale = await uploader.begin(hashlib.sha256(stale_content).hexdigest(), len(stale_content))
    await uploader.send(stale.upload_id, 0, iter([stale_content[:CHUNK_BYTES]]))
    done = await uploader.upload(
        hashlib.sha256(b"c" * 99).hexdigest(), 99, lambda offset: iter([(b"c" * 99)[offset:]])
    )
    assert done.complete
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            storage = await conn.fetchval(
                "SELECT storage_id FROM exchange.upload WHERE id = $1", uuid.UUID(stale.upload_id)
            )
            # The stale upload was last touched a week and a minute ago.
            await conn.execute(
                "UPDATE exchange.upload SET updated_at = now() - interval '7 days 1 minute' "
                "WHERE id = $1",
                uuid.UUID(stale.upload_id),
            )
        fresh = await uploader.begin(hashlib.sha256(fresh_content).hexdigest(), len(fresh_content))
        sweeper = AbandonedUploadSweeper(PostgresAbandonedUploads(pool), dt.timedelta(days=7))
        assert await sweeper.sweep() >= 1
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM exchange.blob_chunk WHERE storage_id = $1", storage
                )
                == 0
            )
    finally:
        await pool.close()
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await uploader.status(stale.upload_id)
    assert error_details(gone.value).code is grpc.StatusCode.NOT_FOUND
    assert (await uploader.status(fresh.upload_id)).committed_size == 0
    assert (await uploader.status(done.upload_id)).complete
