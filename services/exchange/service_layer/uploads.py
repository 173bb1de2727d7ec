"""Resumable uploads: declared first, committed chunk by chunk, verified once whole.

A broken link loses at most the chunk in flight: the client asks where the upload stands and
goes on from there. The SHA-256 is checked over the stored chunks, read back one at a time, so
neither the service nor the database client ever holds the whole attachment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import structlog

from services.common.clock import Clock, utc_now
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    RejectedError,
    ValidationError,
    require_uuid,
)
from services.exchange.service_layer.upload_ports import (
    UploadOffsetError,
    UploadState,
    UploadStore,
)

log = structlog.get_logger(__name__)

MAX_CHUNK_BYTES = 4 * 1024 * 1024


class UploadMismatchError(ValidationError):
    reason = "ATTACHMENT_MISMATCH"


class ResumableUploads:
    def __init__(
        self,
        store: UploadStore,
        *,
        clock: Clock,
        declaration_problems: Callable[[str, int], None],
        quota: int | None = None,
    ) -> None:
        """`declaration_problems` raises for a bad SHA-256 or size (shared with the one-shot
        upload, so both refuse the same declarations the same way). `quota`: the bytes an agency
        may hold in uploads no document uses (domain/quota.py), None for no quota."""
        self._store = store
        self._clock = clock
        self._check_declaration = declaration_problems
        self._quota = quota

    async def begin(self, agency: str, sha256: str, size: int) -> UploadState:
        self._check_declaration(sha256, size)
        state = await self._store.begin_upload(
            agency, sha256, size, str(uuid.uuid4()), quota=self._quota
        )
        log.info(
            "upload_begun",
            upload_id=state.upload_id,
            agency=agency,
            size=size,
            committed=state.committed_size,
        )
        return state

    async def state(self, agency: str, upload_id: str) -> UploadState:
        return await self._own(agency, upload_id)

    async def receive(
        self, agency: str, chunks: AsyncIterator[tuple[str, int, bytes]]
    ) -> UploadState:
        """Commits each (upload id, offset, bytes) as it arrives; verifies and completes the
        upload when its declared size is reached. Returns where it stands at the end."""
        state: UploadState | None = None
        async for upload_id, offset, data in chunks:
            if state is None:
                state = await self._own(agency, upload_id)
            elif upload_id != state.upload_id:
                raise ValidationError(
                    "one upload per stream",
                    [FieldViolation("upload_id", f"this stream uploads {state.upload_id}")],
                )
            if len(data) > MAX_CHUNK_BYTES:
                raise ValidationError(
                    "chunk too large",
                    [FieldViolation("chunk", f"at most {MAX_CHUNK_BYTES} bytes")],
                )
            if not data:
                raise ValidationError("empty chunk", [FieldViolation("chunk", "must not be empty")])
            if state.complete:
                raise _offset_refused(state, offset)
            if offset + len(data) > state.size:
                raise UploadMismatchError(
                    "more bytes than declared",
                    [FieldViolation("chunk", f"declared {state.size} bytes, received more")],
                    meta={"upload_id": state.upload_id, "committed_size": str(offset)},
                )
            try:
                state = await self._store.append_chunk(state.upload_id, offset, data)
            except UploadOffsetError as exc:
                raise _offset_refused(exc.state, offset) from None
            except KeyError:  # discarded meanwhile (its bytes did not verify)
                raise NotFoundError(
                    f"no upload {state.upload_id}", meta={"upload_id": state.upload_id}
                ) from None
            if state.committed_size == state.size:
                state = await self._complete(state)
        if state is None:
            raise ValidationError(
                "an upload stream carries at least one chunk",
                [FieldViolation("chunk", "required")],
            )
        return state

    async def _complete(self, state: UploadState) -> UploadState:
        digest = hashlib.sha256()
        stored = 0
        async for data in self._store.upload_content(state.upload_id):
            digest.update(data)
            stored += len(data)
        if stored != state.size or digest.hexdigest() != state.sha256:
            await self._store.discard_upload(state.upload_id)
            log.info("upload_discarded", upload_id=state.upload_id, agency=state.agency)
            raise UploadMismatchError(
                "content does not match the declared SHA-256; the upload was discarded",
                [FieldViolation("declaration.sha256", f"content hashes to {digest.hexdigest()}")],
                meta={"upload_id": state.upload_id},
            )
        done = await self._store.complete_upload(state.upload_id, self._clock())
        log.info("attachment_uploaded", owner=state.agency, sha256=state.sha256, size=state.size)
        return done

    async def _own(self, agency: str, upload_id: str) -> UploadState:
        require_uuid("upload_id", upload_id)
        state = await self._store.upload(upload_id)
        # Not found and not yours look the same.
        if state is None or state.agency != agency:
            raise NotFoundError(f"no upload {upload_id} of yours", meta={"upload_id": upload_id})
        return state


def _offset_refused(state: UploadState, offset: int) -> RejectedError:
    if state.complete:
        message = f"upload {state.upload_id} is already complete"
    else:
        message = f"upload {state.upload_id} continues at {state.committed_size}, not {offset}"
    return RejectedError(
        message,
        reason="ATTACHMENT_MISMATCH",
        meta={
            "upload_id": state.upload_id,
            "committed_size": str(state.committed_size),
            "complete": str(state.complete).lower(),
        },
    )


class AbandonedUploads(Protocol):
    async def discard_abandoned(self, idle_since: dt.datetime) -> int:
        """Deletes the unfinished uploads last touched before `idle_since`, with their chunks;
        how many."""
        ...

    async def discard_orphan_blobs(self, idle_since: dt.datetime) -> int:
        """Deletes the uploaded contents no document uses and no agency proved to hold since
        `idle_since`, with their chunks; how many."""
        ...


class AbandonedUploadSweeper:
    """An upload left unfinished (the DMS gave up, or uploaded elsewhere) would keep its chunks
    forever: after `ttl` without a chunk it is deleted, and resuming it is NOT_FOUND. So is a
    completed upload no document uses after `ttl` (the submission that was to use it was
    refused, or never came): until then it counts against its agency's quota."""

    def __init__(
        self,
        store: AbandonedUploads,
        ttl: dt.timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock

    async def sweep(self) -> int:
        idle_since = self._clock() - self._ttl
        discarded = await self._store.discard_abandoned(idle_since)
        orphans = await self._store.discard_orphan_blobs(idle_since)
        if discarded or orphans:
            log.info(
                "abandoned_uploads_discarded",
                count=discarded,
                unused_blobs=orphans,
                ttl_s=self._ttl.total_seconds(),
            )
        return discarded + orphans
