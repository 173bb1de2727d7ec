"""Attachment storage throughput: a resumable upload (each 1 MiB chunk its own transaction, then
the SHA-256 check reading them back) and a download, through the real Postgres adapter."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import time
from collections.abc import AsyncIterator

from services.common import postgres
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.service_layer.uploads import ResumableUploads

MIB = 1024 * 1024


def _chunk(index: int) -> bytes:
    return random.Random(index).randbytes(MIB)  # noqa: S311 - benchmark data


async def bench_attachment(url: str, size_mib: int) -> tuple[float, float]:
    """(upload MiB/s, download MiB/s) for one attachment of `size_mib` MiB."""
    digest = hashlib.sha256()
    for index in range(size_mib):
        digest.update(_chunk(index))
    sha256 = digest.hexdigest()
    pool = await postgres.create_pool(url, min_size=1, max_size=4)
    store = PostgresDocumentStore(pool)
    uploads = ResumableUploads(
        store,
        clock=lambda: dt.datetime.now(dt.UTC),
        declaration_problems=lambda sha256, size: None,
    )
    try:
        state = await uploads.begin("000.00.01.H45", sha256, size_mib * MIB)

        async def chunks() -> AsyncIterator[tuple[str, int, bytes]]:
            for index in range(size_mib):
                yield state.upload_id, index * MIB, _chunk(index)

        start = time.perf_counter()
        done = await uploads.receive("000.00.01.H45", chunks())
        uploaded = time.perf_counter() - start
        assert done.complete
        start = time.perf_counter()
        received = 0
        async for _offset, piece in store.attachment_chunks("", sha256, 0):
            received += len(piece)
        downloaded = time.perf_counter() - start
        assert received == size_mib * MIB
    finally:
        await pool.close()
    return size_mib / uploaded, size_mib / downloaded
