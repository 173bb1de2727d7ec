"""Issue 17, finding 8 (services): uploads that end in a refused submission leave no orphan
blobs for ever (the sweeper deletes what no document uses after the TTL), and an agency cannot
fill the storage with uploads it never sends (UPLOAD_QUOTA_EXCEEDED)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path

import grpc
import pytest

from docaxis_client.client import AgencyClient
from services.common import postgres
from services.common.grpc_errors import error_details
from services.common.postgres import Conn
from services.exchange.adapters.postgres_uploads import PostgresAbandonedUploads
from services.exchange.service_layer.uploads import AbandonedUploadSweeper
from tests.conftest import (
    TEST_MAX_ATTACHMENT_BYTES,
    Register,
    make_header,
    served,
    settings_for,
)
from tests.infra import SuiteServices
from tests.pki import SuitePki

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crash_free_log")]

TTL = dt.timedelta(days=7)


async def _blob_rows(conn: Conn, sha256: str) -> tuple[int, int, int]:
    """(blob, owner, chunk) rows stored for the content."""
    blob = await conn.fetchval("SELECT count(*) FROM exchange.blob WHERE sha256 = $1", sha256)
    owners = await conn.fetchval(
        "SELECT count(*) FROM exchange.blob_owner WHERE sha256 = $1", sha256
    )
    chunks = await conn.fetchval(
        """
        SELECT count(*) FROM exchange.blob_chunk c JOIN exchange.blob b
            ON b.storage_id = c.storage_id
        WHERE b.sha256 = $1
        """,
        sha256,
    )
    return blob, owners, chunks


async def test_uploads_of_a_refused_submission_are_swept_after_the_ttl(
    register_agencies: Register, clients: dict[str, AgencyClient], database_url: str
) -> None:
    sender, recipient = await register_agencies(2)
    client = clients[sender]
    refused = await client.upload_stream(os.urandom(300_000))
    used = await client.upload_stream(os.urandom(200_000))
    # The submission that was to use the first upload is refused (no such recipient)...
    with pytest.raises(grpc.aio.AioRpcError):
        await client.submit(
            f"c-{uuid.uuid4()}",
            make_header(sender, ["000.00.99.H99"]),
            [refused.ref("cv.pdf", "application/pdf")],
        )
    # ... and the second is used by an accepted one.
    await client.submit(
        f"c-{uuid.uuid4()}",
        make_header(sender, [recipient]),
        [used.ref("cv.pdf", "application/pdf")],
    )
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            assert (await _blob_rows(conn, refused.sha256))[0] == 1
            sweeper = AbandonedUploadSweeper(PostgresAbandonedUploads(pool), TTL)
            await sweeper.sweep()
            assert (await _blob_rows(conn, refused.sha256))[0] == 1  # not idle for the TTL yet
            # A TTL and a minute later (nobody uploaded either content again).
            for sha256 in (refused.sha256, used.sha256):
                await conn.execute(
                    "UPDATE exchange.blob SET created_at = now() - $2::interval WHERE sha256 = $1",
                    sha256,
                    TTL + dt.timedelta(minutes=1),
                )
                await conn.execute(
                    "UPDATE exchange.blob_owner SET owned_at = now() - $2::interval "
                    "WHERE sha256 = $1",
                    sha256,
                    TTL + dt.timedelta(minutes=1),
                )
            assert await sweeper.sweep() >= 1
            assert await _blob_rows(conn, refused.sha256) == (0, 0, 0)
            blob, owners, chunks = await _blob_rows(conn, used.sha256)
            assert (blob, owners) == (1, 1)
            assert chunks > 0
    finally:
        await pool.close()
    # The swept content is no longer the sender's to reference.
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await client.submit(
            f"c-{uuid.uuid4()}",
            make_header(sender, [recipient]),
            [refused.ref("cv.pdf", "application/pdf")],
        )
    details = error_details(gone.value)
    assert (details.reason, [v.field for v in details.violations]) == (
        "VALIDATION",
        ["attachments[0]"],
    )


async def test_an_agency_cannot_hold_more_unused_uploads_than_its_quota(
    register_agencies: Register,
    database_url: str,
    services: SuiteServices,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    sender, recipient = await register_agencies(2)
    quota = TEST_MAX_ATTACHMENT_BYTES  # the smallest quota allowed
    settings = dataclasses.replace(
        settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki),
        upload_quota_bytes=quota,
    )
    part = quota // 2 + 1
    async with served(settings) as address, pki.client(address, sender) as client:
        first = await client.upload_stream(os.urandom(part))
        # The second streamed upload would exceed the quota: refused before its bytes are kept.
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            await client.upload_stream(os.urandom(part))
        details = error_details(streamed.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "UPLOAD_QUOTA_EXCEEDED",
        )
        assert details.metadata["quota_bytes"] == str(quota)
        # So is a resumable one, when it begins.
        content = os.urandom(part)
        with pytest.raises(grpc.aio.AioRpcError) as resumable:
            await client.uploader.begin(hashlib.sha256(content).hexdigest(), len(content))
        assert error_details(resumable.value).reason == "UPLOAD_QUOTA_EXCEEDED"
        # Once a document uses the first upload, the agency may upload again.
        await client.submit(
            f"c-{uuid.uuid4()}",
            make_header(sender, [recipient]),
            [first.ref("cv.pdf", "application/pdf")],
        )
        await client.upload_stream(content)
