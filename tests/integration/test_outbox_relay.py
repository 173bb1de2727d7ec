"""The outbox relay over a real Postgres and RabbitMQ: a copy another transaction holds (its push's
claim, its acknowledgement) does not hold the relay back. The copies of a batch it can lock are
marked queued at once; the others are published once all the same, and marked queued, at the
time of their publish, by a later batch once free, each with its `queued` ledger event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres, rabbit
from services.exchange.adapters.postgres import PostgresDocumentStore, PostgresOutbox
from services.exchange.adapters.rabbit import OutboundMessage, RabbitInbox, RabbitPublisher
from services.exchange.domain.model import Receipt, Route
from services.exchange.service_layer.ports import NewSubmission
from tests.conftest import unique_code
from tests.infra import SuiteServices
from tests.integration.contract.test_document_store_contract import (
    ACCEPTED_AT,
    a_submission,
    events_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def relay_pool(services: SuiteServices) -> AsyncIterator[asyncpg.Pool]:
    """A database of this module's own: the relay takes every row of the outbox."""
    url = await postgres.recreate_database(services.database_url, "docaxis_relay")
    await migrate(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def a_document(pool: asyncpg.Pool, recipients: Sequence[str]) -> Receipt:
    """A document to `recipients`, stored as Submit stores it: a copy and an outbox row each."""
    submission = a_submission(unique_code(), recipients)
    receipt = Receipt(
        str(uuid.uuid4()),
        submission.header.document_id,
        submission.consignment_id,
        ACCEPTED_AT,
        tuple(Route(code, code, str(uuid.uuid4())) for code in recipients),
    )
    item = NewSubmission(submission, receipt, "f" * 64, events_for(receipt, unique_code()))
    assert await PostgresDocumentStore(pool).store_submissions([item]) == [None]
    return receipt


async def copies(pool: asyncpg.Pool, receipt: Receipt) -> list[tuple[str, object]]:
    rows = await pool.fetch(
        "SELECT state, queued_at FROM exchange.delivery WHERE document_uuid = $1 ORDER BY position",
        uuid.UUID(receipt.document_uuid),
    )
    return [(r["state"], r["queued_at"]) for r in rows]


async def queued_events(pool: asyncpg.Pool, receipt: Receipt) -> list[tuple[str, object]]:
    rows = await pool.fetch(
        """
        SELECT data->>'delivery' AS delivery, occurred_at FROM ledger.pending
        WHERE doc_uuid = $1 AND entry_type = 'delivery' AND data->>'event' = 'queued' ORDER BY id
        """,
        uuid.UUID(receipt.document_uuid),
    )
    return [(r["delivery"], r["occurred_at"]) for r in rows]


async def test_a_copy_held_by_another_transaction_does_not_hold_the_relay_back(
    relay_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """Three copies; a claim holds the second one's row. The relay's batch publishes all three
    and commits without waiting for the claim (before, it waited until the claim ended): the
    first and third are queued, the second's row stays, published. Once the claim has ended,
    the next batch marks it queued at the time of its publish, without publishing it again; a
    `queued` ledger event per copy, the outbox empty."""
    recipients = [unique_code() for _ in range(3)]
    receipt = await a_document(relay_pool, recipients)
    held = uuid.UUID(receipt.routes[1].delivery_id)
    connection = await rabbit.connect(services.amqp_url, name="test-relay")
    inbox = RabbitInbox(connection)
    publisher = RabbitPublisher(connection)
    outbox = PostgresOutbox(relay_pool)
    published: list[OutboundMessage] = []

    async def publish(messages: Sequence[OutboundMessage]) -> None:
        published.extend(messages)
        await publisher.publish_batch(messages)

    try:
        async with relay_pool.acquire() as claim:
            transaction = claim.transaction()
            await transaction.start()
            try:
                # A push's claim of the second copy, still running.
                await claim.execute(
                    "SELECT 1 FROM exchange.delivery WHERE id = $1 FOR UPDATE", held
                )
                async with asyncio.timeout(30):
                    assert await outbox.relay_batch(1000, publish) == 3
                assert [m.message_id for m in published] == [r.delivery_id for r in receipt.routes]
                first = await copies(relay_pool, receipt)
                assert [state for state, _ in first] == ["queued", "accepted", "queued"]
                assert first[1][1] is None
                assert first[0][1] == first[2][1] is not None
                left = await relay_pool.fetch(
                    "SELECT delivery_id, published_at FROM exchange.outbox"
                )
                assert [(r["delivery_id"], r["published_at"]) for r in left] == [
                    (held, first[0][1])
                ]
                # The claim pushes the copy.
                await claim.execute(
                    "UPDATE exchange.delivery SET state = 'pushed', push_count = 1,"
                    " pushed_at = now() WHERE id = $1",
                    held,
                )
            finally:
                await transaction.commit()
        published.clear()
        async with asyncio.timeout(30):
            assert await outbox.relay_batch(1000, publish) == 1
        assert published == []
        at = first[0][1]
        assert await copies(relay_pool, receipt) == [("queued", at), ("pushed", at), ("queued", at)]
        assert await relay_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
        assert sorted(await queued_events(relay_pool, receipt)) == sorted(
            (r.delivery_id, at) for r in receipt.routes
        )
        assert await outbox.relay_batch(1000, publish) == 0
        # Each copy's message was published once, to its recipient's inbox.
        for route in receipt.routes:
            async with inbox.consume(route.effective_recipient) as stream:
                async with asyncio.timeout(15):
                    got = await stream.batch(10)
                assert [m.delivery_id for m in got] == [route.delivery_id]
                await got[0].message.ack()
    finally:
        await publisher.close()
        await inbox.close()
        await connection.close()
