"""The outbox relay over a real Postgres and RabbitMQ, and the push claims of what it published: the
relay does not lock the copies it has just published, so a claim commits while the relay's
transaction is still open (the broker hands the message over before the relay has its confirm);
the claim records the copy queued at the relay's time, which the message carries, then pushed.
Copies no claim took are marked queued later by the relay, at the time of their publish, unless
another transaction holds them; a copy already queued does not hold the relay back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres, rabbit
from services.exchange.adapters.postgres import PostgresDocumentStore, PostgresOutbox
from services.exchange.adapters.rabbit import OutboundMessage, RabbitInbox, RabbitPublisher
from services.exchange.domain.model import Receipt, Route
from services.exchange.service_layer.ports import NewSubmission, PushItem
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


async def ledger_events(pool: asyncpg.Pool, receipt: Receipt) -> list[tuple[str, str, object]]:
    rows = await pool.fetch(
        """
        SELECT data->>'delivery' AS delivery, data->>'event' AS event, occurred_at
        FROM ledger.pending WHERE doc_uuid = $1 AND entry_type = 'delivery' ORDER BY id
        """,
        uuid.UUID(receipt.document_uuid),
    )
    return [(r["delivery"], r["event"], r["occurred_at"]) for r in rows]


@contextlib.asynccontextmanager
async def broker(
    services: SuiteServices, name: str
) -> AsyncIterator[tuple[RabbitPublisher, RabbitInbox]]:
    """A publisher and an inbox over a connection of their own, closed at the end."""
    connection = await rabbit.connect(services.amqp_url, name=name)
    publisher, inbox = RabbitPublisher(connection), RabbitInbox(connection)
    try:
        yield publisher, inbox
    finally:
        await publisher.close()
        await inbox.close()
        await connection.close()


async def take_each(inbox: RabbitInbox, recipients: Sequence[str]) -> None:
    """Takes and acknowledges the one message each recipient's queue holds."""
    for code in recipients:
        async with inbox.consume(code) as stream:
            async with asyncio.timeout(15):
                (got,) = await stream.batch(10)
            await got.message.ack()


async def test_a_claim_commits_while_the_relay_waits_for_its_confirms(
    relay_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """The relay's transaction stays open after the broker has the message (the test holds its
    publish, as the broker's confirm would); the recipient's stream gets the message, with the
    relay's time, and its claim commits meanwhile (before, it waited for the relay's lock on the
    copy until the relay committed): queued at the relay's time, then pushed, one event each.
    The relay then commits without marking it again, and deletes the row at its next pass."""
    recipient = unique_code()
    receipt = await a_document(relay_pool, [recipient])
    route = receipt.routes[0]
    connection = await rabbit.connect(services.amqp_url, name="test-relay-claim")
    inbox = RabbitInbox(connection)
    publisher = RabbitPublisher(connection)
    outbox = PostgresOutbox(relay_pool, settle_after_s=0)
    store = PostgresDocumentStore(relay_pool)
    confirmed = asyncio.Event()
    release = asyncio.Event()

    async def publish(messages: Sequence[OutboundMessage]) -> None:
        await publisher.publish_batch(messages)
        confirmed.set()
        await release.wait()  # the relay's transaction open, as before the broker's confirm

    try:
        async with inbox.consume(recipient) as stream:
            relaying = asyncio.create_task(outbox.relay_batch(1000, publish))
            async with asyncio.timeout(30):
                await confirmed.wait()
                (message,) = await stream.batch(10)
            assert message.delivery_id == route.delivery_id
            assert message.published_at is not None
            async with asyncio.timeout(30):
                (claimed,) = await store.begin_pushes(
                    [(route.delivery_id, recipient)],
                    published={route.delivery_id: message.published_at},
                )
            assert isinstance(claimed, PushItem)
            assert not relaying.done()
            release.set()
            async with asyncio.timeout(30):
                assert await relaying == 2  # published, then its row deleted (queued by the claim)
            await message.message.ack()
        row = await relay_pool.fetchrow(
            "SELECT state, queued_at, pushed_at FROM exchange.delivery WHERE id = $1",
            uuid.UUID(route.delivery_id),
        )
        assert row is not None
        assert (row["state"], row["queued_at"]) == ("pushed", message.published_at)
        events = await ledger_events(relay_pool, receipt)
        assert [(d, e) for d, e, _ in events] == [
            (route.delivery_id, "queued"),
            (route.delivery_id, "pushed"),
        ]
        assert events[0][2] == message.published_at
        assert await relay_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
    finally:
        release.set()
        await publisher.close()
        await inbox.close()
        await connection.close()


async def test_copies_no_claim_took_are_marked_queued_later_unless_held(
    relay_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """Three copies published and not claimed; another transaction holds the second one's row.
    The relay's pass over published rows marks the first and third queued at the time of their
    publish without waiting for the second, whose row stays; once free, the next pass marks it.
    A `queued` event per copy, each message published once, the outbox empty."""
    recipients = [unique_code() for _ in range(3)]
    receipt = await a_document(relay_pool, recipients)
    held = uuid.UUID(receipt.routes[1].delivery_id)
    connection = await rabbit.connect(services.amqp_url, name="test-relay")
    inbox = RabbitInbox(connection)
    publisher = RabbitPublisher(connection)
    outbox = PostgresOutbox(relay_pool, settle_after_s=0)
    published: list[OutboundMessage] = []

    async def publish(messages: Sequence[OutboundMessage]) -> None:
        published.extend(messages)
        await publisher.publish_batch(messages)

    try:
        async with relay_pool.acquire() as other, other.transaction():
            await other.execute("SELECT 1 FROM exchange.delivery WHERE id = $1 FOR UPDATE", held)
            async with asyncio.timeout(30):
                assert await outbox.relay_batch(1000, publish) == 3 + 2
            assert [m.message_id for m in published] == [r.delivery_id for r in receipt.routes]
            at = published[0].published_at
            assert at is not None
            assert await copies(relay_pool, receipt) == [
                ("queued", at),
                ("accepted", None),
                ("queued", at),
            ]
            left = await relay_pool.fetch("SELECT delivery_id, published_at FROM exchange.outbox")
            assert [(r["delivery_id"], r["published_at"]) for r in left] == [(held, at)]
        published.clear()
        async with asyncio.timeout(30):
            assert await outbox.relay_batch(1000, publish) == 1
        assert published == []
        assert await copies(relay_pool, receipt) == [("queued", at)] * 3
        assert await relay_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
        assert sorted((d, e, t) for d, e, t in await ledger_events(relay_pool, receipt)) == sorted(
            (r.delivery_id, "queued", at) for r in receipt.routes
        )
        assert await outbox.relay_batch(1000, publish) == 0
        for route in receipt.routes:
            async with inbox.consume(route.effective_recipient) as stream:
                async with asyncio.timeout(15):
                    got = await stream.batch(10)
                assert [m.delivery_id for m in got] == [route.delivery_id]
                assert got[0].published_at == at
                await got[0].message.ack()
    finally:
        await publisher.close()
        await inbox.close()
        await connection.close()


async def test_a_copy_already_queued_does_not_hold_the_relay_back(
    relay_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """A copy its claim recorded queued, held by another transaction (its acknowledgement):
    the relay's pass deletes its row without locking the copy."""
    recipient = unique_code()
    receipt = await a_document(relay_pool, [recipient])
    key = uuid.UUID(receipt.routes[0].delivery_id)
    connection = await rabbit.connect(services.amqp_url, name="test-relay-queued")
    publisher = RabbitPublisher(connection)
    inbox = RabbitInbox(connection)
    outbox = PostgresOutbox(relay_pool, settle_after_s=0)
    try:
        await relay_pool.execute(
            "UPDATE exchange.delivery SET state = 'pushed', queued_at = now(), push_count = 1,"
            " pushed_at = now() WHERE id = $1",
            key,
        )
        async with relay_pool.acquire() as other, other.transaction():
            await other.execute("SELECT 1 FROM exchange.delivery WHERE id = $1 FOR UPDATE", key)
            async with asyncio.timeout(30):
                assert await outbox.relay_batch(1000, publisher.publish_batch) == 2
            assert await relay_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
        async with inbox.consume(recipient) as stream:
            async with asyncio.timeout(15):
                (got,) = await stream.batch(10)
            await got.message.ack()
    finally:
        await publisher.close()
        await inbox.close()
        await connection.close()


async def test_a_fetched_copy_is_queued_at_its_publish_without_the_relays_pass(
    relay_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """A pull-mode recipient fetches its copy after the relay published it, before the relay's
    pass over published rows (here never due): the fetch's claim, which has no message to say
    when the copy was published, records it queued at the time of its outbox row's publish,
    then pushed, one event each, and Track shows it so at once (before, it stayed accepted
    until the pass and was pushed before queued). The pass then deletes the row."""
    recipient = unique_code()
    receipt = await a_document(relay_pool, [recipient])
    route = receipt.routes[0]
    store = PostgresDocumentStore(relay_pool)
    async with broker(services, "test-relay-fetch") as (publisher, inbox):
        async with asyncio.timeout(30):
            held_back = PostgresOutbox(relay_pool, settle_after_s=3600)
            assert await held_back.relay_batch(1000, publisher.publish_batch) == 1
        at = await relay_pool.fetchval("SELECT published_at FROM exchange.outbox")
        assert at is not None
        track = await store.track(document_uuid=receipt.document_uuid, document_id=None)
        assert track is not None
        assert [(r.state, r.queued_at) for r in track.recipients] == [("accepted", None)]
        async with asyncio.timeout(30):
            (fetched,) = await store.begin_pushes([(route.delivery_id, recipient)])
        assert isinstance(fetched, PushItem)
        track = await store.track(document_uuid=receipt.document_uuid, document_id=None)
        assert track is not None
        assert [(r.state, r.queued_at) for r in track.recipients] == [("pushed", at)]
        events = await ledger_events(relay_pool, receipt)
        assert [(d, e) for d, e, _ in events] == [
            (route.delivery_id, "queued"),
            (route.delivery_id, "pushed"),
        ]
        assert events[0][2] == at
        async with asyncio.timeout(30):
            passing = PostgresOutbox(relay_pool, settle_after_s=0)
            assert await passing.relay_batch(1000, publisher.publish_batch) == 1
        assert await relay_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
        assert len(await queued_events(relay_pool, receipt)) == 1
        await take_each(inbox, [recipient])
