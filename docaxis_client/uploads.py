"""Resumable uploads from the client side: begin, stream from the committed offset, and after
a broken link ask where the upload stands and go on from there."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.errors import error_details
from docaxis_client.progress import BytesDone, ignore_progress

CHUNK_BYTES = 1024 * 1024
# A broken link, a restarting server, a deadline: worth another attempt from the committed size.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)

ChunkSource = Callable[[int], Iterator[bytes]]


def file_chunks(path: Path, offset: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The file's bytes from `offset`, a chunk at a time."""
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(chunk_bytes):
            yield chunk


class ResumableUploader:
    """Uploads content it can re-read from any offset (a file, a deterministic stream)."""

    def __init__(
        self,
        stub: pb_grpc.ExchangeServiceAsyncStub,
        metadata: tuple[tuple[str, str], ...],
        *,
        timeout_s: float,
        attempts: int = 8,
        retry_delay_s: float = 0.5,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._retry_delay_s = retry_delay_s

    async def begin(self, sha256: str, size: int) -> pb.UploadStatus:
        response = await self._stub.BeginUpload(
            pb.BeginUploadRequest(declaration=pb.AttachmentDeclaration(sha256=sha256, size=size)),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )
        return response.upload

    async def status(self, upload_id: str) -> pb.UploadStatus:
        response = await self._stub.GetUpload(
            pb.GetUploadRequest(upload_id=upload_id),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )
        return response.upload

    def send(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterator[bytes],
        progress: BytesDone = ignore_progress,
    ) -> grpc.aio.StreamUnaryCall[pb.UploadChunksRequest, pb.UploadChunksResponse]:
        """One UploadChunks call streaming `chunks` from `offset` (cancel it to cut the link);
        `progress` is told the offset reached after each chunk is handed to the stream."""

        async def requests() -> AsyncIterator[pb.UploadChunksRequest]:
            position = offset
            for chunk in chunks:
                yield pb.UploadChunksRequest(upload_id=upload_id, offset=position, chunk=chunk)
                position += len(chunk)
                progress(position)

        return self._stub.UploadChunks(requests(), metadata=self._metadata)

    async def upload(
        self, sha256: str, size: int, source: ChunkSource, progress: BytesDone = ignore_progress
    ) -> pb.UploadStatus:
        """Uploads until complete, resuming from the committed size after retryable failures
        (at most `attempts` of them in a row); `progress` is told the bytes sent so far."""
        status = await self._retrying(lambda: self.begin(sha256, size))
        failures = 0
        while not status.complete:
            progress(status.committed_size)
            try:
                response = await self.send(
                    status.upload_id,
                    status.committed_size,
                    source(status.committed_size),
                    progress,
                )
            except grpc.aio.AioRpcError as exc:
                # FAILED_PRECONDITION: the server committed a chunk we took for lost (it was in
                # flight when the link broke), so our offset is stale. Ask again and go on.
                resync = exc.code() is grpc.StatusCode.FAILED_PRECONDITION
                wait_s = self._wait_before_retry(exc, failures + 1)
                if (wait_s is None and not resync) or failures >= self._attempts:
                    raise
                failures += 1
                if not resync:
                    await asyncio.sleep(wait_s or 0.0)
                status = await self._retrying(functools.partial(self.status, status.upload_id))
                continue
            if response.upload.committed_size > status.committed_size:
                failures = 0
            status = response.upload
        progress(status.size)
        return status

    async def _retrying(self, call: Callable[[], Awaitable[pb.UploadStatus]]) -> pb.UploadStatus:
        attempt = 0
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                wait_s = self._wait_before_retry(exc, attempt + 1)
                if wait_s is None or attempt >= self._attempts:
                    raise
            attempt += 1
            await asyncio.sleep(wait_s)

    def _wait_before_retry(self, exc: grpc.aio.AioRpcError, attempt: int) -> float | None:
        """How long to wait before retry number `attempt` after `exc`; None when it is final.
        A refusal the server says is retryable (an abuse limit: RATE_LIMITED,
        CONCURRENCY_LIMITED) waits at least its RetryInfo delay; UPLOAD_QUOTA_EXCEEDED, the
        same status code but not retryable, is final."""
        backoff_s = self._retry_delay_s * attempt
        if exc.code() in RETRYABLE:
            return backoff_s
        if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            refused = error_details(exc)
            if refused.retryable:
                return max(refused.retry_after_s or 0.0, backoff_s)
        return None
