"""A 200 MB attachment through a `docaxis run` process, with the process's memory measured."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.uploads import CHUNK_BYTES
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
SIZE = 200 * MIB
MAX_GROWTH = 64 * MIB


def deterministic_chunks(offset: int, size: int = SIZE) -> Iterator[bytes]:
    """Chunk i of the content is Random(i).randbytes(1 MiB), cut at `size`: any part of it can
    be produced again from any offset, and it is never held whole."""
    index, skip = divmod(offset, CHUNK_BYTES)
    while index * CHUNK_BYTES < size:
        chunk = random.Random(index).randbytes(CHUNK_BYTES)  # noqa: S311 - test data
        chunk = chunk[: size - index * CHUNK_BYTES]
        yield chunk[skip:] if skip else chunk
        skip = 0
        index += 1


def digest_of(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def download_digest(client: AgencyClient, document_uuid: str, sha256: str) -> str:
    digest = hashlib.sha256()
    call = client.exchange.DownloadAttachment(
        pb.DownloadAttachmentRequest(document_uuid=document_uuid, sha256=sha256),
        metadata=client.metadata,
        timeout=120,
    )
    async for piece in call:
        digest.update(piece.chunk)
    return digest.hexdigest()


async def send_with_attachment(
    client: AgencyClient, sender: str, recipient: str, sha256: str, size: int
) -> str:
    upload = await client.upload_resumable(
        sha256, size, lambda offset: deterministic_chunks(offset, size)
    )
    response = await client.submit(
        f"c-{uuid.uuid4()}",
        make_header(sender, [recipient], subject="Hồ sơ quy hoạch (bản đồ số)"),
        [upload.ref("ban-do.zip", "application/zip")],
    )
    return response.receipt.document_uuid


async def test_a_200_mb_attachment_passes_with_the_service_memory_growing_less_than_64_mb(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
    record_property: Callable[[str, object], None],
) -> None:
    """Uploaded in resumable chunks, verified, referenced in a signed document and downloaded
    by the recipient with the same SHA-256, while the `docaxis run` process's peak resident
    memory (VmHWM) stays within 64 MB of its resident memory before (after a warm-up)."""
    process = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        pki=pki,
        extra_env={"DOCAXIS_MAX_ATTACHMENT_BYTES": str(256 * MIB)},
    )
    await process.start()
    try:
        sender, recipient = await register(process, 2)
        async with process.client(sender) as client, process.client(recipient) as receiver:
            # Warm-up: the same path with 3 MB, so pools, TLS sessions and code are loaded.
            small = 3 * MIB + 5
            warm_sha = digest_of(deterministic_chunks(0, small))
            warm = await send_with_attachment(client, sender, recipient, warm_sha, small)
            assert await download_digest(receiver, warm, warm_sha) == warm_sha

            assert process.process is not None
            pid = process.process.pid
            before = memory_kib(pid)
            sha256 = digest_of(deterministic_chunks(0))
            started = time.perf_counter()
            upload = await client.upload_resumable(sha256, SIZE, deterministic_chunks)
            uploaded = time.perf_counter()
            assert (upload.sha256, upload.size) == (sha256, SIZE)
            document = (
                await client.submit(
                    f"c-{uuid.uuid4()}",
                    make_header(sender, [recipient], subject="Hồ sơ quy hoạch (bản đồ số)"),
                    [upload.ref("ban-do.zip", "application/zip")],
                )
            ).receipt.document_uuid
            download_started = time.perf_counter()
            assert await download_digest(receiver, document, sha256) == sha256
            downloaded = time.perf_counter()
            after = memory_kib(pid)
    finally:
        code = await process.terminate()
    assert code == 0, process.logs()
    growth = after["VmHWM"] * 1024 - before["VmRSS"] * 1024
    figures = {
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "hwm_before_mib": round(before["VmHWM"] / 1024, 1),
        "hwm_after_mib": round(after["VmHWM"] / 1024, 1),
        "growth_mib": round(growth / MIB, 1),
        "upload_mib_s": round(SIZE / MIB / (uploaded - started), 1),
        "download_mib_s": round(SIZE / MIB / (downloaded - download_started), 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    sys.stderr.write(f"200 MB attachment: {figures}\n")
    assert growth < MAX_GROWTH, figures


async def test_an_upload_resumes_by_itself_across_a_server_crash(
    axis_process: AxisProcess,
) -> None:
    """kill -9 in the middle of a 48 MB upload, then a restart: the client's retries see
    UNAVAILABLE, ask where the same upload stands and finish it; no committed chunk is sent
    twice from scratch (the upload id and its committed bytes survive)."""
    size = 48 * MIB
    sha256 = digest_of(deterministic_chunks(0, size))
    (sender,) = await register(axis_process, 1)
    async with axis_process.client(sender) as client:
        uploader = client.uploader
        begun = await uploader.begin(sha256, size)
        uploading = asyncio.create_task(
            uploader.upload(sha256, size, lambda offset: deterministic_chunks(offset, size))
        )
        await eventually(
            lambda: uploader.status(begun.upload_id),
            lambda status: status.committed_size >= 8 * MIB,
            within=30,
            every=0.02,
        )
        axis_process.kill()
        await axis_process.start()
        async with asyncio.timeout(60):
            final = await uploading
    assert (final.upload_id, final.complete, final.sha256) == (begun.upload_id, True, sha256)
    # Completed (verified) by the restarted process: the upload went on across the crash.
    assert "attachment_uploaded" in axis_process.logs()
