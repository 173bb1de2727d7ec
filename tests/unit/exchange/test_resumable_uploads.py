"""Resumable uploads over fakes: chunks committed as they come, resumed, verified once whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.common.errors import NotFoundError, RejectedError, ValidationError
from services.exchange.domain.model import AttachmentRef
from services.exchange.service_layer.handlers import ExchangeHandlers, SizeLimitError
from services.exchange.service_layer.uploads import MAX_CHUNK_BYTES, UploadMismatchError
from tests.fakes import FakeDocumentStore
from tests.unit.exchange.builders import HEALTH, LIMIT, NOW, SENDER, sha256_of, submission

CONTENT = bytes(range(256)) * 40  # 10 240 bytes


async def stream(
    upload_id: str, start: int, *pieces: bytes
) -> AsyncIterator[tuple[str, int, bytes]]:
    offset = start
    for piece in pieces:
        yield upload_id, offset, piece
        offset += len(piece)


async def broken(
    upload_id: str, pieces: list[bytes], cut_after: int
) -> AsyncIterator[tuple[str, int, bytes]]:
    """Sends `cut_after` chunks, then the link breaks."""
    offset = 0
    for index, piece in enumerate(pieces):
        if index == cut_after:
            raise ConnectionResetError("link cut")
        yield upload_id, offset, piece
        offset += len(piece)


async def test_an_upload_resumes_from_the_committed_offset_after_a_cut(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Chunks before the cut stay; a new stream from the committed size completes the upload,
    which is then verified and owned, and can be referenced in a submission."""
    sha = sha256_of(CONTENT)
    pieces = [CONTENT[i : i + 1000] for i in range(0, len(CONTENT), 1000)]
    begun = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    assert (begun.committed_size, begun.complete) == (0, False)
    with pytest.raises(ConnectionResetError):
        await exchange.uploads.receive(SENDER, broken(begun.upload_id, pieces, cut_after=4))
    where = await exchange.uploads.state(SENDER, begun.upload_id)
    assert where.committed_size == 4000
    assert not store.blobs
    again = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    assert (again.upload_id, again.committed_size) == (begun.upload_id, 4000)
    done = await exchange.uploads.receive(
        SENDER, stream(begun.upload_id, 4000, CONTENT[4000:9000], CONTENT[9000:])
    )
    assert done.complete
    assert done.completed_at == NOW
    assert done.committed_size == len(CONTENT)
    assert store.blobs[sha].content == CONTENT
    assert (sha, SENDER) in store.blob_owners
    ref = AttachmentRef("big.pdf", "application/pdf", len(CONTENT), sha)
    result = await exchange.submit(SENDER, submission(attachments=(ref,)))
    assert result.receipt.routes


async def test_content_that_does_not_match_its_digest_is_discarded(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """ATTACHMENT_MISMATCH once the size is reached; nothing is kept, a new begin starts at 0."""
    sha = sha256_of(CONTENT)
    begun = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    tampered = b"X" + CONTENT[1:]
    with pytest.raises(UploadMismatchError) as failure:
        await exchange.uploads.receive(SENDER, stream(begun.upload_id, 0, tampered))
    assert failure.value.reason == "ATTACHMENT_MISMATCH"
    assert not store.blobs
    assert not store.uploads
    fresh = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    assert fresh.upload_id != begun.upload_id
    assert fresh.committed_size == 0


async def test_a_chunk_at_the_wrong_offset_is_refused_naming_the_committed_size(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    sha = sha256_of(CONTENT)
    begun = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    await exchange.uploads.receive(SENDER, stream(begun.upload_id, 0, CONTENT[:100]))
    with pytest.raises(RejectedError) as failure:
        await exchange.uploads.receive(SENDER, stream(begun.upload_id, 50, CONTENT[50:200]))
    assert failure.value.reason == "ATTACHMENT_MISMATCH"
    assert failure.value.meta["committed_size"] == "100"
    assert store.uploads[begun.upload_id].committed_size == 100


async def test_more_bytes_than_declared_are_refused(exchange: ExchangeHandlers) -> None:
    sha = sha256_of(CONTENT)
    begun = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    with pytest.raises(UploadMismatchError):
        await exchange.uploads.receive(SENDER, stream(begun.upload_id, 0, CONTENT + b"!"))


async def test_declarations_are_checked_like_one_shot_uploads(exchange: ExchangeHandlers) -> None:
    with pytest.raises(SizeLimitError):
        await exchange.uploads.begin(SENDER, sha256_of(CONTENT), LIMIT + 1)
    with pytest.raises(ValidationError) as failure:
        await exchange.uploads.begin(SENDER, "ABC", 0)
    assert [v.field for v in failure.value.violations] == [
        "declaration.sha256",
        "declaration.size",
    ]


async def test_another_agency_cannot_see_or_feed_an_upload(exchange: ExchangeHandlers) -> None:
    begun = await exchange.uploads.begin(SENDER, sha256_of(CONTENT), len(CONTENT))
    with pytest.raises(NotFoundError):
        await exchange.uploads.state(HEALTH, begun.upload_id)
    with pytest.raises(NotFoundError):
        await exchange.uploads.receive(HEALTH, stream(begun.upload_id, 0, CONTENT[:10]))
    with pytest.raises(ValidationError):
        await exchange.uploads.state(SENDER, "not-a-uuid")


async def test_one_stream_uploads_one_upload_in_bounded_non_empty_chunks(
    exchange: ExchangeHandlers,
) -> None:
    first = await exchange.uploads.begin(SENDER, sha256_of(CONTENT), len(CONTENT))
    other = await exchange.uploads.begin(SENDER, sha256_of(b"other"), 5)

    async def mixed() -> AsyncIterator[tuple[str, int, bytes]]:
        yield first.upload_id, 0, CONTENT[:10]
        yield other.upload_id, 0, b"other"

    with pytest.raises(ValidationError):
        await exchange.uploads.receive(SENDER, mixed())
    with pytest.raises(ValidationError):
        await exchange.uploads.receive(SENDER, stream(first.upload_id, 10, b""))
    with pytest.raises(ValidationError):
        await exchange.uploads.receive(SENDER, stream(first.upload_id, 10))
    assert MAX_CHUNK_BYTES > LIMIT  # the limit, not the chunk bound, caps these test uploads


async def test_content_the_agency_already_holds_is_complete_at_once(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Proof of possession was given once; a second begin needs no bytes. Another agency's
    begin of the same content must still send them, and then shares the stored blob."""
    sha = sha256_of(CONTENT)
    begun = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    await exchange.uploads.receive(SENDER, stream(begun.upload_id, 0, CONTENT))
    again = await exchange.uploads.begin(SENDER, sha, len(CONTENT))
    assert again.complete
    assert again.upload_id != begun.upload_id
    theirs = await exchange.uploads.begin(HEALTH, sha, len(CONTENT))
    assert not theirs.complete
    done = await exchange.uploads.receive(HEALTH, stream(theirs.upload_id, 0, CONTENT))
    assert done.complete
    assert store.blob_owners == {(sha, SENDER), (sha, HEALTH)}
    assert store.blobs[sha].content == CONTENT
    with pytest.raises(RejectedError) as failure:
        await exchange.uploads.receive(HEALTH, stream(theirs.upload_id, len(CONTENT), b"x"))
    assert failure.value.meta["complete"] == "true"
