"""The SDK's resumable uploader against refusals of the abuse limits: a retryable
RESOURCE_EXHAUSTED (RATE_LIMITED) is retried after its RetryInfo delay, the upload quota (the
same status code, not retryable) is final."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.uploads import ResumableUploader
from services.common.errors import DomainError, LimitExceededError
from services.common.grpc_errors import rich_status
from services.exchange.domain.quota import UploadQuotaExceededError

DATA = b"%PDF-1.7 body"
SHA256 = hashlib.sha256(DATA).hexdigest()


def refusal(exc: DomainError) -> grpc.aio.AioRpcError:
    """The error a client sees for `exc`, as the server would send it."""
    status = rich_status(exc)
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        status.details,
    )


class RefusingStub:
    """BeginUpload refused with `refusals` first, then answered with a complete upload (the
    content was already stored: nothing to stream)."""

    def __init__(self, *refusals: grpc.aio.AioRpcError) -> None:
        self.refusals = list(refusals)
        self.calls = 0

    async def BeginUpload(self, request: pb.BeginUploadRequest, **_: Any) -> Any:
        self.calls += 1
        if self.refusals:
            raise self.refusals.pop(0)
        return pb.BeginUploadResponse(
            upload=pb.UploadStatus(
                upload_id="u-1",
                sha256=SHA256,
                size=len(DATA),
                committed_size=len(DATA),
                complete=True,
            )
        )


def uploader(stub: RefusingStub) -> ResumableUploader:
    return ResumableUploader(
        cast("pb_grpc.ExchangeServiceAsyncStub", stub), (), timeout_s=5, retry_delay_s=0.001
    )


async def test_a_rate_limited_upload_is_retried_and_completes() -> None:
    limited = LimitExceededError(
        "too fast", reason="RATE_LIMITED", limit="other", retry_after_s=0.01
    )
    stub = RefusingStub(refusal(limited), refusal(limited))
    status = await uploader(stub).upload(SHA256, len(DATA), lambda offset: iter([DATA[offset:]]))
    assert status.complete
    assert stub.calls == 3


async def test_the_upload_quota_is_final() -> None:
    stub = RefusingStub(refusal(UploadQuotaExceededError("uploads full")))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await uploader(stub).upload(SHA256, len(DATA), lambda offset: iter([DATA[offset:]]))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.calls == 1
