"""Submit's transaction writes a group of documents in one statement (insert_submissions): every
row of every document of the group, one round trip, and each refusal still told apart."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.domain.model import AttachmentRef, Signature, Submission
from services.exchange.service_layer.ports import AttachmentsGoneError, NewSubmission
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    chunks,
    events_for,
    sha256_of,
)

pytestmark = pytest.mark.integration

SIGNED_AT = dt.datetime(2025, 7, 30, 1, 2, 3, tzinfo=dt.UTC)
# Certificate chains of different lengths, an empty one among them: they share one flat array.
CHAINS = ((b"leaf-1", b"ca-1"), (), (b"leaf-3", b"sub-3", b"ca-3"))


async def a_document(store: PostgresDocumentStore) -> NewSubmission:
    """A document with an uploaded attachment, three signatures and two copies."""
    sender = unique("S")
    content = uuid.uuid4().bytes
    await store.store_blob(sender, sha256_of(content), chunks(content))
    attachment = AttachmentRef("cv.pdf", "application/pdf", len(content), sha256_of(content))
    submission = dataclasses.replace(
        a_submission(sender, [unique("R"), unique("R")], attachments=(attachment,)),
        signatures=tuple(
            Signature("organization", "ES256", f"sig-{i}".encode(), chain, SIGNED_AT)
            for i, chain in enumerate(CHAINS)
        ),
    )
    return _new(submission)


def _new(submission: Submission) -> NewSubmission:
    receipt = a_receipt(submission)
    return NewSubmission(submission, receipt, "f" * 64, events_for(receipt, "x"))


async def test_a_group_of_documents_is_written_by_one_statement(pool: asyncpg.Pool) -> None:
    """Every row of both documents (document, attachment, signatures, copies, outbox rows,
    ledger events) carries the same command id: one statement wrote them all, where each
    table's INSERT was a statement and a round trip of its own."""
    store = PostgresDocumentStore(pool)
    group = [await a_document(store), await a_document(store)]
    assert await store.store_submissions(group) == [None, None]
    documents = [uuid.UUID(item.receipt.document_uuid) for item in group]
    commands = await pool.fetch(
        """
        SELECT 'document' AS t, xmin::text, cmin::text FROM exchange.document
            WHERE uuid = ANY($1::uuid[])
        UNION ALL SELECT 'attachment', xmin::text, cmin::text FROM exchange.document_attachment
            WHERE document_uuid = ANY($1::uuid[])
        UNION ALL SELECT 'signature', xmin::text, cmin::text FROM exchange.document_signature
            WHERE document_uuid = ANY($1::uuid[])
        UNION ALL SELECT 'copy', xmin::text, cmin::text FROM exchange.delivery
            WHERE document_uuid = ANY($1::uuid[])
        UNION ALL SELECT 'outbox', o.xmin::text, o.cmin::text FROM exchange.outbox o
            JOIN exchange.delivery d ON d.id = o.delivery_id WHERE d.document_uuid = ANY($1::uuid[])
        UNION ALL SELECT 'ledger', xmin::text, cmin::text FROM ledger.pending
            WHERE doc_uuid = ANY($1::uuid[])
        """,
        documents,
    )
    tables = sorted({row["t"] for row in commands})
    assert tables == ["attachment", "copy", "document", "ledger", "outbox", "signature"]
    assert len({(row["xmin"], row["cmin"]) for row in commands}) == 1, [
        dict(row) for row in commands
    ]


async def test_each_signature_keeps_its_own_certificate_chain(pool: asyncpg.Pool) -> None:
    """Chains of two, none and three certificates, stored in order, each with its signature."""
    store = PostgresDocumentStore(pool)
    item = await a_document(store)
    assert await store.store_submissions([item]) == [None]
    rows = await pool.fetch(
        """
        SELECT position, role, algorithm, value, certificate_chain, signed_at
        FROM exchange.document_signature WHERE document_uuid = $1 ORDER BY position
        """,
        uuid.UUID(item.receipt.document_uuid),
    )
    assert [
        (r["position"], r["value"], tuple(r["certificate_chain"]), r["signed_at"]) for r in rows
    ] == [(i, f"sig-{i}".encode(), chain, SIGNED_AT) for i, chain in enumerate(CHAINS)]


async def test_an_attachment_swept_before_the_commit_refuses_its_document_alone(
    pool: asyncpg.Pool,
) -> None:
    """A document naming content no longer stored is refused with AttachmentsGoneError; the
    other document of its group is stored."""
    store = PostgresDocumentStore(pool)
    good = await a_document(store)
    gone = AttachmentRef("gone.pdf", "application/pdf", 8, sha256_of(uuid.uuid4().bytes))
    swept = _new(a_submission(unique("S"), [unique("R")], attachments=(gone,)))
    outcomes = await store.store_submissions([good, swept])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], AttachmentsGoneError)
    stored = await pool.fetchval(
        "SELECT count(*) FROM exchange.document WHERE uuid = ANY($1::uuid[])",
        [uuid.UUID(good.receipt.document_uuid), uuid.UUID(swept.receipt.document_uuid)],
    )
    assert stored == 1
