"""The documents a store keeps after Submit (StoredDocuments): a push or a transport receipt
served from them carries exactly what it would have read from Postgres."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore, load_manifests
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain.model import AttachmentRef, Route
from services.exchange.domain.verification import SignatureCheck, SignatureMode, Verification
from services.exchange.service_layer.ports import DeadLetter, NewSubmission, PushItem
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    chunks,
    events_for,
    sha256_of,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SIGNED_AT = dt.datetime(2025, 7, 30, 1, 2, 3, 456789, tzinfo=dt.UTC)


async def a_rich_submission(store: PostgresDocumentStore) -> NewSubmission:
    """Every part a push carries: an attachment and an envelope with descriptions (the
    envelope's is not stored), signatures, a verification with a check, a reply's header."""
    sender, recipient = unique("S"), unique("R")
    attachment, envelope = b"%PDF-1.7 not really", b"<edXML/>"
    for content in (attachment, envelope):
        await store.store_blob(sender, sha256_of(content), chunks(content))
    submission = dataclasses.replace(
        a_submission(
            sender,
            [recipient, unique("R")],
            attachments=(
                AttachmentRef(
                    "Công văn.pdf",
                    "application/pdf",
                    len(attachment),
                    sha256_of(attachment),
                    "bản chính",
                ),
            ),
        ),
        envelope=AttachmentRef(
            "goi-tin.edxml", "application/xml", len(envelope), sha256_of(envelope), "gói tin"
        ),
    )
    receipt = a_receipt(submission)
    verification = Verification(
        SignatureMode.SIGNED,
        checks=(
            SignatureCheck(
                form="manifest",
                role="organization",
                subject="CN=Sở Y tế",
                agency_code=sender,
                algorithm="ES256",
                certificate_sha256="ab" * 32,
                serial="1f",
                signed_at=SIGNED_AT,
                full_name="Lê Thị B",
            ),
        ),
        warnings=("chứng thư sắp hết hạn",),
        manifest_sha256="cd" * 32,
        verified_at=SIGNED_AT,
    )
    return NewSubmission(
        submission, receipt, "f" * 64, events_for(receipt, sender), verification, None
    )


def assert_same_document(
    from_kept: PushItem | DeadLetter | None,
    from_postgres: PushItem | DeadLetter | None,
    route: Route,
) -> None:
    """Two pushes of one document's copies (`from_postgres` of `route`'s) carry the same
    document, field by field."""
    assert isinstance(from_kept, PushItem)
    assert isinstance(from_postgres, PushItem)
    assert dataclasses.replace(
        from_kept,
        delivery_id=route.delivery_id,
        requested_recipient=route.requested_recipient,
    ) == dataclasses.replace(from_postgres, first_handover=from_kept.first_handover)


async def test_a_push_from_the_kept_document_equals_one_read_from_postgres(
    pool: asyncpg.Pool,
) -> None:
    """One copy pushed by the store that stored the document (kept), the other by a store that
    never saw it (read back from Postgres): the two items carry the same document, field by
    field, and both stores then hold it."""
    kept, other = StoredDocuments(), StoredDocuments()
    storing = PostgresDocumentStore(pool, kept=kept)
    reading = PostgresDocumentStore(pool, kept=other)
    item = await a_rich_submission(storing)
    assert await storing.store_submissions([item]) == [None]
    key = uuid.UUID(item.receipt.document_uuid)
    assert kept.get(key) is not None
    assert other.get(key) is None
    first, second = item.receipt.routes
    (from_kept,) = await storing.begin_pushes([(first.delivery_id, first.effective_recipient)])
    (from_postgres,) = await reading.begin_pushes(
        [(second.delivery_id, second.effective_recipient)]
    )
    assert_same_document(from_kept, from_postgres, second)
    assert isinstance(from_kept, PushItem)
    assert from_kept.verification is not None
    assert from_kept.verification.checks[0].signed_at == SIGNED_AT
    assert from_kept.envelope is not None
    assert from_kept.envelope.description == ""  # as stored
    assert other.get(key) == kept.get(key)  # the read was kept


async def test_a_claim_commits_while_its_document_is_still_being_read(
    pool: asyncpg.Pool,
) -> None:
    """A store that never saw the document (another worker's Submit) reads it beside the
    claim's transaction, not inside it: with the document's signatures locked by another
    session, the copy is already recorded pushed (committed, its lock released) while the read
    waits; the push then carries the document as the storing store would have."""
    storing = PostgresDocumentStore(pool, kept=StoredDocuments())
    reading = PostgresDocumentStore(pool, kept=StoredDocuments())
    item = await a_rich_submission(storing)
    assert await storing.store_submissions([item]) == [None]
    first, second = item.receipt.routes
    (from_kept,) = await storing.begin_pushes([(first.delivery_id, first.effective_recipient)])
    async with pool.acquire() as other:
        blocking = other.transaction()
        await blocking.start()
        try:
            await other.execute("LOCK TABLE exchange.document_signature IN ACCESS EXCLUSIVE MODE")
            claiming = asyncio.create_task(
                reading.begin_pushes([(second.delivery_id, second.effective_recipient)])
            )
            await eventually(
                lambda: pool.fetchval(
                    "SELECT pushed_at IS NOT NULL FROM exchange.delivery WHERE id = $1",
                    uuid.UUID(second.delivery_id),
                )
            )
            assert not claiming.done()  # its read waits for the table's lock
        finally:
            await blocking.rollback()
    (from_postgres,) = await claiming
    assert_same_document(from_kept, from_postgres, second)


async def test_a_receipts_manifest_from_the_kept_document_equals_one_read_from_postgres(
    pool: asyncpg.Pool,
) -> None:
    """What a transport receipt signs (header and attachments) is the same from either."""
    kept = StoredDocuments()
    store = PostgresDocumentStore(pool, kept=kept)
    item = await a_rich_submission(store)
    assert await store.store_submissions([item]) == [None]
    key = uuid.UUID(item.receipt.document_uuid)
    async with pool.acquire() as conn:
        assert await load_manifests(conn, [key], kept) == await load_manifests(
            conn, [key], StoredDocuments()
        )


def test_the_least_recently_used_document_goes_first() -> None:
    """Bounded: past its size the document unused longest is dropped, a read counts as a use."""
    kept = StoredDocuments(kept=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    document = (
        a_submission("S", ["R"]).header,
        (),
        (),
        dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
        None,
        None,
        (),
    )
    kept.put(a, document)
    kept.put(b, document)
    assert kept.get(a) is document
    kept.put(c, document)
    assert (kept.get(a), kept.get(b), kept.get(c)) == (document, None, document)
