"""Submit's transaction writes a group of documents in one statement (insert_submissions): every
row of every document of the group, one round trip, and each refusal still told apart."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common import postgres
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.signature_chains import SignatureChains
from services.exchange.domain.model import AttachmentRef, Signature, Submission
from services.exchange.service_layer.ports import (
    AttachmentsGoneError,
    DirectoryChangedError,
    NewSubmission,
)
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    chunks,
    events_for,
    sha256_of,
)
from tests.integration.contract.test_signature_chains import InlineChains

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


@pytest.mark.parametrize("chains", [SignatureChains, InlineChains])
async def test_each_signature_keeps_its_own_certificate_chain(
    pool: asyncpg.Pool, chains: type[SignatureChains]
) -> None:
    """Chains of two, none and three certificates, stored in order, each with its signature:
    inline, or by reference (migration 0043), each chain's slice of the one flat array."""
    store = PostgresDocumentStore(pool, signature_chains=chains())
    item = await a_document(store)
    assert await store.store_submissions([item]) == [None]
    rows = await pool.fetch(
        """
        SELECT s.position, s.value, coalesce(s.certificate_chain, c.certificates)
            AS certificate_chain, s.signed_at
        FROM exchange.document_signature s
        LEFT JOIN exchange.signature_chain c ON c.sha256 = s.chain_sha256
        WHERE s.document_uuid = $1 ORDER BY s.position
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


@pytest.fixture
async def one_connection(contract_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection: every statement the store sends is on it, in order."""
    created = await postgres.create_pool(contract_database_url, min_size=1, max_size=1)
    yield created
    await created.close()


async def test_a_group_is_stored_by_its_statement_alone(
    pool: asyncpg.Pool, one_connection: asyncpg.Pool
) -> None:
    """A group of documents, and a document on its own, each go to Postgres as one statement
    and nothing else: no BEGIN and COMMIT around a statement that is atomic by itself (two
    round trips of every Submit group)."""
    group = [await a_document(PostgresDocumentStore(pool)) for _ in range(4)]
    store = PostgresDocumentStore(one_connection)
    # The first use of the connection reads the types of its statement (asyncpg's own queries).
    assert await store.store_submissions(group[:1]) == [None]
    sent: list[str] = []
    async with one_connection.acquire() as conn:
        conn.add_query_logger(lambda logged: sent.append(logged.query))
    assert await store.store_submissions(group[1:3]) == [None, None]
    assert await store.store_submissions(group[3:]) == [None]
    assert [query.split()[:2] for query in sent] == [["WITH", "documents"]] * 2


async def test_a_group_decided_on_a_changed_directory_leaves_no_row(pool: asyncpg.Pool) -> None:
    """Documents whose directory reads are stamped with a generation that is no longer the
    current one are refused with DirectoryChangedError, and nothing of them is stored: no
    document, attachment, signature, copy, outbox row nor ledger event (no transaction rolls
    them back: the statement itself writes none)."""
    store = PostgresDocumentStore(pool)
    current = await pool.fetchval("SELECT n FROM directory.generation")
    group = [
        dataclasses.replace(await a_document(store), directory_generations=frozenset({current - 1}))
        for _ in range(2)
    ]
    outcomes = await store.store_submissions(group)
    assert [type(outcome) for outcome in outcomes] == [DirectoryChangedError] * 2
    documents = [uuid.UUID(item.receipt.document_uuid) for item in group]
    rows = await pool.fetchval(
        """
        SELECT (SELECT count(*) FROM exchange.document WHERE uuid = ANY($1::uuid[]))
            + (SELECT count(*) FROM exchange.document_attachment
                WHERE document_uuid = ANY($1::uuid[]))
            + (SELECT count(*) FROM exchange.document_signature
                WHERE document_uuid = ANY($1::uuid[]))
            + (SELECT count(*) FROM exchange.delivery WHERE document_uuid = ANY($1::uuid[]))
            + (SELECT count(*) FROM exchange.outbox WHERE message_id = ANY($2::text[]))
            + (SELECT count(*) FROM ledger.pending WHERE doc_uuid = ANY($1::uuid[]))
        """,
        documents,
        [route.delivery_id for item in group for route in item.receipt.routes],
    )
    assert rows == 0
    # The same documents, stamped with the current generation, are stored whole.
    fresh = [
        dataclasses.replace(item, directory_generations=frozenset({current})) for item in group
    ]
    assert await store.store_submissions(fresh) == [None, None]
