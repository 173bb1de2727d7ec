"""Signatures stored without their certificate chains (migration 0043): a signature's row keeps
its chain's SHA-256, exchange.signature_chain the certificates once. A document read back (what
Download, Fetch and the pushes serve, what federation forwards) has the signatures submitted,
byte for byte, whether its rows hold their chains inline (stored before, or by a process of the
version before) or by reference; a chain row is committed with the first document naming it,
once whatever the Submits racing for it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import uuid

import asyncpg
import pytest

from services.common.postgres import Conn
from services.exchange.adapters.postgres import PostgresDocumentStore, insert_submissions
from services.exchange.adapters.receipt_chains import StoredChainError
from services.exchange.adapters.signature_chains import SignatureChain, SignatureChains
from services.exchange.domain.model import Signature
from services.exchange.entrypoints.convert import signature_to_pb
from services.exchange.service_layer.ports import (
    DuplicateConsignmentError,
    NewSubmission,
    PushItem,
)
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import (
    a_receipt,
    a_submission,
    events_for,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SIGNED_AT = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)


class InlineChains(SignatureChains):
    """A process before the upgrade's window is over: every chain stored inline."""

    async def referring(self, conn: Conn) -> bool:
        return False


def a_chain(*sizes: int) -> tuple[bytes, ...]:
    """Certificates no other test uses (the bench's: an agency's two, an official's two)."""
    return tuple(os.urandom(size) for size in sizes)


def signed(chains: tuple[tuple[bytes, ...], ...], sender: str | None = None) -> NewSubmission:
    """A document to two recipients with a signature per chain."""
    submission = dataclasses.replace(
        a_submission(sender or unique("S"), [unique("R"), unique("R")]),
        signatures=tuple(
            Signature("organization" if i else "person", "ES256", os.urandom(64), chain, SIGNED_AT)
            for i, chain in enumerate(chains)
        ),
    )
    receipt = a_receipt(submission)
    return NewSubmission(submission, receipt, "f" * 64, events_for(receipt, "x"))


def served(item: PushItem | object) -> list[bytes]:
    """The signatures as Download, Fetch and a push put them on the wire."""
    assert isinstance(item, PushItem)
    return [signature_to_pb(s).SerializeToString() for s in item.signatures]


async def read_back(pool: asyncpg.Pool, item: NewSubmission) -> list[bytes]:
    """The signatures a process that never saw the document serves (its first copy pushed)."""
    route = item.receipt.routes[0]
    (pushed,) = await PostgresDocumentStore(pool).begin_pushes(
        [(route.delivery_id, route.effective_recipient)]
    )
    return served(pushed)


def submitted(item: NewSubmission) -> list[bytes]:
    return [signature_to_pb(s).SerializeToString() for s in item.submission.signatures]


async def forms(pool: asyncpg.Pool, item: NewSubmission) -> list[tuple[bool, bytes | None]]:
    """Each signature's row: whether it holds its chain inline, and its chain's key."""
    rows = await pool.fetch(
        """
        SELECT certificate_chain IS NOT NULL AS inline, chain_sha256
        FROM exchange.document_signature WHERE document_uuid = $1 ORDER BY position
        """,
        uuid.UUID(item.receipt.document_uuid),
    )
    return [(row["inline"], row["chain_sha256"]) for row in rows]


async def test_a_document_read_back_has_its_signatures_byte_for_byte_in_either_form(
    pool: asyncpg.Pool,
) -> None:
    """One document stored by reference, one inline (as a process of the version before stores
    it, and every row before 0043): each read back by a process that never saw it serves the
    signatures submitted, byte for byte; the first's rows hold keys, not certificates."""
    chains = (a_chain(700, 900), a_chain(500, 900))
    referred, inline = signed(chains), signed(chains)
    assert await PostgresDocumentStore(pool).store_submissions([referred]) == [None]
    store = PostgresDocumentStore(pool, signature_chains=InlineChains())
    assert await store.store_submissions([inline]) == [None]
    assert await forms(pool, referred) == [(False, SignatureChain.of(c).sha256) for c in chains]
    assert await forms(pool, inline) == [(True, None), (True, None)]
    for item in (referred, inline):
        assert await read_back(pool, item) == submitted(item)


async def test_a_row_stored_inline_is_read_as_it_is_beside_its_chain_stored(
    pool: asyncpg.Pool,
) -> None:
    """A process of the version before stores a signer's document inline after this version
    stored the same chain by reference: each is read with its own form, the same bytes."""
    chains = (a_chain(600, 800),)
    first, second = signed(chains), signed(chains)
    reading = PostgresDocumentStore(pool)
    assert await reading.store_submissions([first]) == [None]
    without = dataclasses.replace(
        second, submission=dataclasses.replace(second.submission, signatures=())
    )
    assert await PostgresDocumentStore(pool).store_submissions([without]) == [None]
    await pool.execute(
        """
        INSERT INTO exchange.document_signature (document_uuid, position, role, algorithm,
            value, certificate_chain, signed_at)
        SELECT $1, 0, 'person', 'ES256', $2, $3, $4
        """,
        uuid.UUID(second.receipt.document_uuid),
        second.submission.signatures[0].value,
        list(chains[0]),
        SIGNED_AT,
    )
    assert await forms(pool, second) == [(True, None)]
    route = second.receipt.routes[0]
    (pushed,) = await reading.begin_pushes([(route.delivery_id, route.effective_recipient)])
    assert served(pushed) == submitted(second)


async def test_a_chain_row_is_committed_by_the_statement_of_the_first_document_naming_it(
    pool: asyncpg.Pool,
) -> None:
    """The chain's row and the signatures naming it are written by one statement (one command
    id); the next document of the signer writes no chain row and sends no certificate."""
    chain = a_chain(640, 880)
    store = PostgresDocumentStore(pool)
    first, second = signed((chain,)), signed((chain,))
    assert await store.store_submissions([first]) == [None]
    key = SignatureChain.of(chain).sha256
    commands = await pool.fetch(
        """
        SELECT xmin::text, cmin::text FROM exchange.signature_chain WHERE sha256 = $1
        UNION ALL SELECT xmin::text, cmin::text FROM exchange.document_signature
            WHERE document_uuid = $2
        """,
        key,
        uuid.UUID(first.receipt.document_uuid),
    )
    assert len(commands) == 2
    assert len({(row["xmin"], row["cmin"]) for row in commands}) == 1
    async with pool.acquire() as conn:
        _, written = await insert_submissions(conn, [second], store._signature_chains)
    assert written == []
    assert (
        await pool.fetchval("SELECT count(*) FROM exchange.signature_chain WHERE sha256 = $1", key)
        == 1
    )


async def test_a_chain_is_not_taken_for_stored_when_its_statement_fails(
    pool: asyncpg.Pool,
) -> None:
    """A refused Submit (a consignment id used before) rolls its chain row back: the process
    must not take it for stored, and the next document of the signer writes it."""
    chain = a_chain(610, 870)
    store = PostgresDocumentStore(pool)
    sender = unique("S")
    before = signed((a_chain(100),), sender)
    assert await store.store_submissions([before]) == [None]
    refused = signed((chain,), sender)
    refused = dataclasses.replace(
        refused,
        submission=dataclasses.replace(
            refused.submission, consignment_id=before.submission.consignment_id
        ),
    )
    (outcome,) = await store.store_submissions([refused])
    assert isinstance(outcome, DuplicateConsignmentError)
    key = SignatureChain.of(chain).sha256
    assert (
        await pool.fetchval("SELECT count(*) FROM exchange.signature_chain WHERE sha256 = $1", key)
        == 0
    )
    after = signed((chain,))
    assert await store.store_submissions([after]) == [None]
    assert await read_back(pool, after) == submitted(after)


async def test_two_submits_with_the_same_new_chain_store_one_row_without_error(
    pool: asyncpg.Pool,
) -> None:
    """Two processes store documents of one new signer at once: the second's statement waits
    for the first's chain row (still uncommitted), then writes none; both documents are
    stored, one chain row, and each reads back as submitted."""
    chain = a_chain(650, 850)
    first, second = signed((chain,)), signed((chain,))
    key = SignatureChain.of(chain).sha256
    async with pool.acquire() as conn:
        holding = conn.transaction()
        await holding.start()
        try:
            _, written = await insert_submissions(conn, [first], SignatureChains())
            assert [c.sha256 for c in written] == [key]
            other = PostgresDocumentStore(pool)
            storing = asyncio.create_task(other.store_submissions([second]))
            # The second statement waits for the first's transaction: the two documents share
            # nothing but the chain (other senders, recipients, ids). pg_stat_activity shows
            # the statement's first 1,024 bytes.
            await eventually(
                lambda: pool.fetchval(
                    """
                    SELECT count(*) = 1 FROM pg_stat_activity
                    WHERE wait_event = 'transactionid' AND query LIKE '%WITH documents AS%'
                    """
                )
            )
            assert not storing.done()
        finally:
            await holding.commit()
    assert await storing == [None]
    assert (
        await pool.fetchval("SELECT count(*) FROM exchange.signature_chain WHERE sha256 = $1", key)
        == 1
    )
    for item in (first, second):
        assert await read_back(pool, item) == submitted(item)


async def test_a_chain_row_altered_or_missing_is_refused(pool: asyncpg.Pool) -> None:
    """A chain row whose certificates no longer hash to its key, or one deleted, is never
    served as the signer's: reading the document fails (StoredChainError)."""
    altered, deleted = signed((a_chain(620, 860),)), signed((a_chain(630, 860),))
    assert await PostgresDocumentStore(pool).store_submissions([altered, deleted]) == [
        None,
        None,
    ]
    ((_, altered_key),) = await forms(pool, altered)
    ((_, deleted_key),) = await forms(pool, deleted)
    await pool.execute(
        "UPDATE exchange.signature_chain SET certificates = certificates[1:1] WHERE sha256 = $1",
        altered_key,
    )
    await pool.execute("DELETE FROM exchange.signature_chain WHERE sha256 = $1", deleted_key)
    for item in (altered, deleted):
        with pytest.raises(StoredChainError):
            await read_back(pool, item)


async def test_a_database_migrated_in_one_run_refers_to_chains_at_once(
    pool: asyncpg.Pool,
) -> None:
    """The contract database was migrated from nothing in one run: no process of an earlier
    version ever ran against it, so 0043 lets this version refer to chains at once."""
    assert not await pool.fetchval("SELECT isfinite(began_at) FROM exchange.signature_chain_writes")
    async with pool.acquire() as conn:
        assert await SignatureChains(clock=lambda: SIGNED_AT).referring(conn)


async def test_the_application_role_can_tell_when_to_refer(pool: asyncpg.Pool) -> None:
    """The processes run their pools as app_writer, which has no right on
    public.schema_migrations: when to refer is read through 0043's view."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE app_writer")
        assert await SignatureChains(clock=lambda: SIGNED_AT).referring(conn)
