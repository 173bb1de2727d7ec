"""Uploading attachments: verified against size, SHA-256 and limits as they stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.common.errors import ValidationError
from services.exchange.service_layer.handlers import (
    MAX_CHUNK_BYTES,
    AttachmentMismatchError,
    ExchangeHandlers,
    SizeLimitError,
)
from tests.fakes import FakeDocumentStore
from tests.unit.exchange.builders import HEALTH, LIMIT, SENDER, chunked, sha256_of

CONTENT = b"%PDF-1.7\n" + bytes(range(256)) * 8


def nothing_stored(store: FakeDocumentStore) -> bool:
    return not store.blobs and not store.blob_owners


async def test_an_upload_in_chunks_stores_the_content_for_its_owner(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The blob holds the bytes in order and the uploader owns it."""
    sha = sha256_of(CONTENT)
    await exchange.upload_attachment(
        SENDER, sha, len(CONTENT), chunked(CONTENT[:10], CONTENT[10:1000], CONTENT[1000:])
    )
    assert store.blobs[sha].content == CONTENT
    assert store.blobs[sha].size == len(CONTENT)
    assert store.blob_owners == {(sha, SENDER)}


async def test_a_second_uploader_of_the_same_content_becomes_an_owner_too(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Content is stored once; each agency that proved it holds the bytes may reference it."""
    sha = sha256_of(CONTENT)
    await exchange.upload_attachment(SENDER, sha, len(CONTENT), chunked(CONTENT))
    await exchange.upload_attachment(HEALTH, sha, len(CONTENT), chunked(CONTENT[:5], CONTENT[5:]))
    assert store.blob_owners == {(sha, SENDER), (sha, HEALTH)}
    assert store.blobs[sha].chunks == ((0, CONTENT),)


@pytest.mark.parametrize(
    ("chunks", "field"),
    [
        ((CONTENT[:-1],), "declaration.size"),  # fewer bytes than declared
        ((CONTENT, b"!"), "chunk"),  # more bytes than declared
        ((CONTENT[:-1] + b"?",), "declaration.sha256"),  # right size, other content
    ],
    ids=["short", "long", "wrong-hash"],
)
async def test_content_that_differs_from_its_declaration_is_refused_and_not_kept(
    exchange: ExchangeHandlers, store: FakeDocumentStore, chunks: tuple[bytes, ...], field: str
) -> None:
    """ATTACHMENT_MISMATCH names what differed, and the store keeps nothing."""
    with pytest.raises(AttachmentMismatchError) as failure:
        await exchange.upload_attachment(SENDER, sha256_of(CONTENT), len(CONTENT), chunked(*chunks))
    assert failure.value.reason == "ATTACHMENT_MISMATCH"
    assert [v.field for v in failure.value.violations] == [field]
    assert nothing_stored(store)


async def test_a_declared_size_over_the_limit_is_refused_before_reading(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """SIZE_LIMIT_EXCEEDED with the limit in the metadata; the stream is never consumed."""
    consumed: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        consumed.append(b"read")
        yield b"x"

    with pytest.raises(SizeLimitError) as failure:
        await exchange.upload_attachment(SENDER, "0" * 64, LIMIT + 1, watched())
    assert failure.value.reason == "SIZE_LIMIT_EXCEEDED"
    assert failure.value.meta == {"limit_bytes": str(LIMIT)}
    assert consumed == []
    assert nothing_stored(store)


async def test_a_stream_that_outgrows_the_limit_is_cut_off(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """A sender that declares a small size but keeps sending hits SIZE_LIMIT_EXCEEDED."""
    with pytest.raises(SizeLimitError):
        await exchange.upload_attachment(SENDER, "0" * 64, LIMIT, chunked(b"x" * LIMIT, b"x"))
    assert nothing_stored(store)


async def test_an_upload_of_exactly_the_limit_is_accepted(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The limit itself is allowed."""
    content = b"y" * LIMIT
    await exchange.upload_attachment(SENDER, sha256_of(content), LIMIT, chunked(content))
    assert store.blobs[sha256_of(content)].size == LIMIT


async def test_a_chunk_larger_than_4_mib_is_refused(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """One message may not carry more than MAX_CHUNK_BYTES, whatever was declared."""
    with pytest.raises(ValidationError) as failure:
        await exchange.upload_attachment(
            SENDER, "0" * 64, 10, chunked(b"z" * (MAX_CHUNK_BYTES + 1))
        )
    assert failure.value.reason == "VALIDATION"
    assert [v.field for v in failure.value.violations] == ["chunk"]
    assert nothing_stored(store)


async def test_a_malformed_declaration_reports_both_fields(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """An upper-case digest and a zero size are reported together."""
    with pytest.raises(ValidationError) as failure:
        await exchange.upload_attachment(SENDER, "A" * 64, 0, chunked(b"x"))
    assert [v.field for v in failure.value.violations] == [
        "declaration.sha256",
        "declaration.size",
    ]
    assert nothing_stored(store)
