"""The DocumentStore's resumable-upload methods, against the fake and Postgres."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.domain.model import AttachmentRef
from services.exchange.domain.quota import UploadQuotaExceededError
from services.exchange.service_layer.ports import DocumentStore
from services.exchange.service_layer.upload_ports import UploadOffsetError
from tests.fakes import FakeDocumentStore
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

NOW = dt.datetime(2025, 8, 1, 3, 0, tzinfo=dt.UTC)


def content() -> tuple[bytes, str]:
    data = uuid.uuid4().bytes * 300
    return data, hashlib.sha256(data).hexdigest()


async def read_all(store: DocumentStore, upload_id: str) -> bytes:
    return b"".join([piece async for piece in store.upload_content(upload_id)])


class UploadsContract:
    async def test_chunks_commit_one_by_one_and_complete_into_an_owned_blob(
        self, store: DocumentStore
    ) -> None:
        data, sha = content()
        agency = unique("U")
        begun = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
        assert (begun.agency, begun.sha256, begun.size, begun.committed_size) == (
            agency,
            sha,
            len(data),
            0,
        )
        assert not begun.complete
        after_first = await store.append_chunk(begun.upload_id, 0, data[:1000])
        assert after_first.committed_size == 1000
        again = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
        assert (again.upload_id, again.committed_size) == (begun.upload_id, 1000)
        assert await store.upload(begun.upload_id) == after_first
        with pytest.raises(UploadOffsetError) as stale:
            await store.append_chunk(begun.upload_id, 500, data[500:1500])
        assert stale.value.state.committed_size == 1000
        await store.append_chunk(begun.upload_id, 1000, data[1000:])
        assert await read_all(store, begun.upload_id) == data
        ref = AttachmentRef("a.pdf", "application/pdf", len(data), sha)
        assert await store.unowned_attachments(agency, [ref]) == [0]
        done = await store.complete_upload(begun.upload_id, NOW)
        assert done.complete
        assert done.completed_at == NOW
        assert await store.unowned_attachments(agency, [ref]) == []
        assert await store.complete_upload(begun.upload_id, NOW) == done
        with pytest.raises(UploadOffsetError):
            await store.append_chunk(begun.upload_id, len(data), b"x")
        owned = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
        assert owned.complete
        assert owned.committed_size == len(data)

    async def test_a_second_uploader_shares_the_first_blob(self, store: DocumentStore) -> None:
        data, sha = content()
        first, second = unique("U"), unique("U")
        for agency in (first, second):
            begun = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
            await store.append_chunk(begun.upload_id, 0, data)
            await store.complete_upload(begun.upload_id, NOW)
        ref = AttachmentRef("a.pdf", "application/pdf", len(data), sha)
        assert await store.unowned_attachments(first, [ref]) == []
        assert await store.unowned_attachments(second, [ref]) == []

    async def test_a_discarded_upload_is_gone_and_begins_anew(self, store: DocumentStore) -> None:
        data, sha = content()
        agency = unique("U")
        begun = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
        await store.append_chunk(begun.upload_id, 0, data[:10])
        await store.discard_upload(begun.upload_id)
        assert await store.upload(begun.upload_id) is None
        assert await read_all(store, begun.upload_id) == b""
        fresh = await store.begin_upload(agency, sha, len(data), str(uuid.uuid4()))
        assert fresh.upload_id != begun.upload_id
        assert fresh.committed_size == 0
        with pytest.raises(UploadOffsetError):
            await store.complete_upload(fresh.upload_id, NOW)

    async def test_uploads_no_document_uses_count_against_the_agency_quota(
        self, store: DocumentStore
    ) -> None:
        """Issue 17, finding 8: unused uploads are bounded per agency; what a document uses, or
        the agency already holds, is not counted."""
        agency, recipient = unique("Q"), unique("R")
        (first, first_sha), (second, second_sha) = content(), content()
        size = len(first)  # both contents have this size
        quota = 2 * size
        await store.store_blob(agency, first_sha, chunks(first), quota=quota)
        assert await store.unused_upload_bytes(agency, "") == size
        assert await store.unused_upload_bytes(agency, first_sha) == 0
        begun = await store.begin_upload(agency, second_sha, size, str(uuid.uuid4()), quota=quota)
        assert await store.unused_upload_bytes(agency, "") == 2 * size  # reserved when begun
        third, third_sha = content()
        with pytest.raises(UploadQuotaExceededError) as refused:
            await store.begin_upload(agency, third_sha, size, str(uuid.uuid4()), quota=quota)
        assert refused.value.reason == "UPLOAD_QUOTA_EXCEEDED"
        with pytest.raises(UploadQuotaExceededError):
            await store.store_blob(agency, third_sha, chunks(third), quota=quota)
        ref = AttachmentRef("a.pdf", "application/pdf", size, third_sha)
        assert await store.unowned_attachments(agency, [ref]) == [0]  # nothing was kept
        # Content the agency holds is no new bytes; another agency has its own quota.
        await store.store_blob(agency, first_sha, chunks(first), quota=quota)
        await store.store_blob(unique("O"), third_sha, chunks(third), quota=quota)
        # Once a document uses the first upload, it no longer counts.
        await store.append_chunk(begun.upload_id, 0, second)
        await store.complete_upload(begun.upload_id, NOW)
        used = AttachmentRef("a.pdf", "application/pdf", size, first_sha)
        await send(store, a_submission(agency, [recipient], attachments=(used,)))
        assert await store.unused_upload_bytes(agency, "") == size
        await store.begin_upload(agency, third_sha, size, str(uuid.uuid4()), quota=quota)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class TestFakeUploads(UploadsContract):
    @pytest.fixture
    def store(self) -> DocumentStore:
        return FakeDocumentStore()


@pytest.mark.integration
class TestPostgresUploads(UploadsContract):
    @pytest.fixture
    def store(self, pool: asyncpg.Pool) -> DocumentStore:
        return PostgresDocumentStore(pool)
