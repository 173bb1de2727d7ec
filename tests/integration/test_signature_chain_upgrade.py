"""A rolling upgrade to migration 0043 (the signatures' chains stored once by hash): a process of
the version before reads the chains inline only, so this version reads both forms at once but
writes references only once no such process can run, a day (UPGRADE_WINDOW) after the last
migration of the upgrade that applied 0043; the documents stored before are read as they were."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres import (
    PostgresDocumentStore,
    header_to_json,
    load_documents,
)
from services.exchange.adapters.signature_chains import SignatureChains
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain.model import Signature
from services.exchange.service_layer.ports import NewSubmission
from services.exchange.service_layer.upgrade_walks import UPGRADE_WINDOW
from tests.infra import SuiteServices
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    events_for,
)
from tests.migrations_before import migrate_before

pytestmark = pytest.mark.integration

REFERRING = "0043_signature_chains.sql"
SIGNED_AT = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)
CHAIN = (os.urandom(700), os.urandom(900))


def signed() -> NewSubmission:
    """A document signed by one official, with CHAIN."""
    submission = dataclasses.replace(
        a_submission("A001", ["A002"]),
        signatures=(Signature("person", "Ed25519", os.urandom(64), CHAIN, SIGNED_AT),),
    )
    receipt = a_receipt(submission)
    return NewSubmission(submission, receipt, "f" * 64, events_for(receipt, "A001"))


async def _stored_inline(conn: asyncpg.Connection, item: NewSubmission) -> None:
    """The document and its signature as a process of the version before 0043 stores them."""
    key = uuid.UUID(item.receipt.document_uuid)
    submission = item.submission
    await conn.execute(
        """
        INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
            business_type, header, submitted_at)
        VALUES ($1, $2, $3, $4, 'f', 0, $5::jsonb, $6)
        """,
        key,
        item.receipt.document_id,
        submission.header.sender,
        submission.consignment_id,
        header_to_json(submission.header),
        item.receipt.accepted_at,
    )
    (signature,) = submission.signatures
    await conn.execute(
        """
        INSERT INTO exchange.document_signature (document_uuid, position, role, algorithm,
            value, certificate_chain, signed_at)
        VALUES ($1, 0, $2, $3, $4, $5, $6)
        """,
        key,
        signature.role,
        signature.algorithm,
        signature.value,
        list(signature.certificate_chain),
        signature.signed_at,
    )


async def _read(pool: asyncpg.Pool, item: NewSubmission) -> tuple[Signature, ...]:
    """The document's signatures as a process that never saw it reads them."""
    key = uuid.UUID(item.receipt.document_uuid)
    async with pool.acquire() as conn:
        documents = await load_documents(conn, [key], StoredDocuments(), SignatureChains())
    return documents[key][2]


async def _inline(pool: asyncpg.Pool, item: NewSubmission) -> bool:
    """Whether the document's signature holds its chain inline (else by reference)."""
    inline: bool = await pool.fetchval(
        "SELECT certificate_chain IS NOT NULL FROM exchange.document_signature "
        "WHERE document_uuid = $1",
        uuid.UUID(item.receipt.document_uuid),
    )
    return inline


async def _stored(pool: asyncpg.Pool, chains: SignatureChains) -> NewSubmission:
    item = signed()
    store = PostgresDocumentStore(pool, signature_chains=chains)
    assert await store.store_submissions([item]) == [None]
    assert await _read(pool, item) == item.submission.signatures
    return item


async def test_references_are_written_only_a_day_after_the_upgrades_last_migration(
    services: SuiteServices, tmp_path: Path
) -> None:
    """A hub of the version before upgraded: its document stored inline is read as it was;
    this version stores chains inline until a day after the last migration the upgrade applied
    (the ledger's, after 0043), then by reference; a migration applied within that day (the
    same upgrade's, or the next) puts the switch a day after it."""
    url = await postgres.recreate_database(services.database_url, "docaxis_signature_chains")
    conn = await asyncpg.connect(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=2)
    try:
        await migrate_before(conn, REFERRING, tmp_path)
        before = signed()
        await _stored_inline(conn, before)
        # The new version's first process applies the rest, on a connection of its own.
        assert f"exchange/{REFERRING}" in await migrate(url)
        row = await conn.fetchrow(
            "SELECT began_at, (SELECT max(applied_at) FROM public.schema_migrations) "
            "FROM exchange.signature_chain_writes"
        )
        assert row is not None
        began, last = row
        assert began < last  # the ledger's migrations came after 0043
        assert await _read(pool, before) == before.submission.signatures

        now = [began + dt.timedelta(hours=1)]
        chains = SignatureChains(clock=lambda: now[0])
        assert await _inline(pool, await _stored(pool, chains))
        # Past a day after 0043, not a day after the ledger's migrations.
        now[0] = last + UPGRADE_WINDOW - dt.timedelta(microseconds=1)
        assert await _inline(pool, await _stored(pool, chains))
        now[0] = last + UPGRADE_WINDOW
        assert not await _inline(pool, await _stored(pool, chains))
        # Once referring, a process keeps referring (its clock going back changes nothing).
        now[0] = began
        assert not await _inline(pool, await _stored(pool, chains))

        # A migration applied within the day after 0043 (hours of a later one's backfill).
        later = began + dt.timedelta(hours=3)
        await conn.execute(
            "INSERT INTO public.schema_migrations (service, name, sha256, applied_at) "
            "VALUES ('exchange', '9999_later.sql', '', $1)",
            later,
        )
        assert await _inline(
            pool, await _stored(pool, SignatureChains(lambda: last + UPGRADE_WINDOW))
        )
        assert not await _inline(
            pool, await _stored(pool, SignatureChains(lambda: later + UPGRADE_WINDOW))
        )
        assert await _read(pool, before) == before.submission.signatures
    finally:
        await pool.close()
        await conn.close()
