"""What resumable uploads need from storage (part of the exchange's DocumentStore).

Each method is one transaction, like the rest of the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UploadState:
    upload_id: str
    agency: str
    sha256: str
    size: int
    # Bytes durably stored: where the next chunk starts.
    committed_size: int
    completed_at: dt.datetime | None = None

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


class UploadOffsetError(Exception):
    """The chunk does not start at the committed size, or the upload is already complete."""

    def __init__(self, state: UploadState) -> None:
        super().__init__(state.upload_id)
        self.state = state


class UploadStore(Protocol):
    async def begin_upload(
        self, agency: str, sha256: str, size: int, new_upload_id: str, quota: int | None = None
    ) -> UploadState:
        """The agency's unfinished upload of this content if there is one; else a completed one
        when the agency already holds the blob; else a new, empty upload `new_upload_id`, whose
        declared size counts against the agency's `quota` (quota.check_upload_quota decides,
        serialised per agency; UploadQuotaExceededError stores nothing)."""
        ...

    async def unused_upload_bytes(self, agency: str, except_sha256: str) -> int:
        """The bytes of the agency's completed uploads no document uses and those declared by
        its unfinished uploads, content `except_sha256` left out."""
        ...

    async def upload(self, upload_id: str) -> UploadState | None: ...

    async def append_chunk(self, upload_id: str, offset: int, data: bytes) -> UploadState:
        """Stores `data` at `offset` and advances the committed size, durably. UploadOffsetError
        (storing nothing) when `offset` is not the committed size or the upload is complete.
        The caller keeps offset + len(data) within the declared size."""
        ...

    def upload_content(self, upload_id: str) -> AsyncIterator[bytes]:
        """The committed bytes in order, a stored chunk at a time (never all in memory)."""
        ...

    async def complete_upload(self, upload_id: str, now: dt.datetime) -> UploadState:
        """Marks a fully committed upload complete: its bytes become the blob of its SHA-256
        (or are dropped if that blob exists) and the agency an owner of the blob."""
        ...

    async def discard_upload(self, upload_id: str) -> None:
        """Deletes an unfinished upload and its chunks (its bytes did not verify)."""
        ...
