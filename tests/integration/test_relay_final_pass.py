"""The outbox relay's final pass at a clean stop, over a real Postgres and RabbitMQ: copies
published within the pass's grace before the stop (no claim took them: their recipients pull)
are recorded queued at the time of their publish, with their `queued` ledger events, before the
process exits rather than at its next start; the ledger writer, stopped after the relay,
sequences those events, and the log verifies. The pass waits for a copy another worker's
transaction still holds."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from docaxis_client.client import AgencyClient
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.common.postgres_notifications import PostgresListener
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.service_layer.handlers import DirectoryHandlers
from services.exchange.adapters.postgres import OUTBOX_CHANNEL, PostgresOutbox
from services.exchange.entrypoints.relay import OutboxRelay
from services.ledger.adapters.postgres import PostgresLedgerReader
from services.ledger.audit.verify import audit_export
from services.ledger.export import export_ledger
from services.settings import DEFAULT_LEDGER_ORIGIN
from tests.conftest import Register, make_header, served, settings_for, unique_code
from tests.infra import SuiteServices
from tests.integration.test_outbox_relay import (
    a_document,
    broker,
    copies,
    ledger_events,
    take_each,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stop_database(services: SuiteServices) -> str:
    """A database of this module's own: its axis is the only relay and ledger writer there."""
    url = await postgres.recreate_database(services.database_url, "docaxis_relay_stop")
    await migrate(url)
    return url


@pytest.fixture(scope="module")
async def stop_pool(stop_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await postgres.create_pool(stop_database, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def directory(stop_pool: asyncpg.Pool) -> DirectoryHandlers:
    """The suite's `register_agencies` registers into this module's database."""
    return DirectoryHandlers(PostgresAgencies(stop_pool))


async def published_times(pool: asyncpg.Pool, document_uuid: str) -> dict[str, object]:
    """The relay's time of publish of each copy of the document, by delivery id, once every
    copy's outbox row is published."""
    rows = await pool.fetch(
        """
        SELECT d.id, o.published_at FROM exchange.delivery d
        LEFT JOIN exchange.outbox o ON o.delivery_id = d.id
        WHERE d.document_uuid = $1
        """,
        uuid.UUID(document_uuid),
    )
    return {str(r["id"]): r["published_at"] for r in rows}


async def submitted_and_published(
    client: AgencyClient, pool: asyncpg.Pool, sender: str, recipients: list[str]
) -> tuple[str, dict[str, object]]:
    """Submits a document from `sender` to `recipients`: its uuid and the relay's time of
    publish of each copy (by delivery id), once the relay has published them all."""
    receipt = (await client.submit(f"c-{uuid.uuid4()}", make_header(sender, recipients))).receipt
    published = await eventually(
        lambda: published_times(pool, receipt.document_uuid),
        lambda times: len(times) == len(recipients) and all(times.values()),
    )
    return receipt.document_uuid, published


async def assert_recorded_and_sequenced(
    pool: asyncpg.Pool, document_uuid: str, published: dict[str, object]
) -> None:
    """Once docaxis has stopped: each copy queued at its time of publish (`published`, by
    delivery id), no outbox row left, nothing left staged for the ledger, and one `queued`
    entry per copy in the log."""
    states = await pool.fetch(
        "SELECT id, state, queued_at FROM exchange.delivery WHERE document_uuid = $1",
        uuid.UUID(document_uuid),
    )
    assert {str(r["id"]): (r["state"], r["queued_at"]) for r in states} == {
        delivery_id: ("queued", at) for delivery_id, at in published.items()
    }
    assert await pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM ledger.pending") == 0
    rows = await pool.fetch(
        "SELECT convert_from(body, 'UTF8') AS body FROM ledger.entry WHERE doc_id = $1",
        uuid.UUID(document_uuid),
    )
    data = [json.loads(r["body"]).get("data", {}) for r in rows]
    assert sorted(d["delivery"] for d in data if d.get("event") == "queued") == sorted(published)


async def test_a_clean_stop_records_the_copies_just_published_queued_and_sequences_them(
    stop_database: str,
    stop_pool: asyncpg.Pool,
    services: SuiteServices,
    ledger_key_file: Path,
    register_agencies: Register,
    tmp_path: Path,
) -> None:
    """docaxis stops (its stop event, as SIGTERM sets it) right after the relay published a
    document's three copies to recipients without a stream: once it has returned, each copy is
    queued at the relay's time of publish with one `queued` event, no outbox row is left, the
    events are in the log (nothing left staged) and an export of the log passes the audit.
    Before, they waited for the relay's next start."""
    sender, *recipients = await register_agencies(4)
    settings = settings_for(stop_database, services.amqp_url, ledger_key_file)
    async with served(settings) as address, AgencyClient(address, sender) as client:
        document, published = await submitted_and_published(client, stop_pool, sender, recipients)
    await assert_recorded_and_sequenced(stop_pool, document, published)
    reader = await postgres.create_pool(stop_database, min_size=1, max_size=1, role="ledger_reader")
    try:
        await export_ledger(PostgresLedgerReader(reader), DEFAULT_LEDGER_ORIGIN, tmp_path)
    finally:
        await reader.close()
    report = audit_export(tmp_path)
    assert report.divergence is None, report.to_json()


async def test_the_final_pass_waits_for_a_copy_another_worker_holds(
    stop_database: str, stop_pool: asyncpg.Pool, services: SuiteServices
) -> None:
    """The relay publishes three copies and is stopped before its pass's grace is over (here
    it never is); another worker's transaction holds the second copy. The final pass waits for
    it rather than skip it, and once it is free marks all three queued at the time of their
    publish, one `queued` event each, with no outbox row left."""
    recipients = [unique_code() for _ in range(3)]
    receipt = await a_document(stop_pool, recipients)
    held = uuid.UUID(receipt.routes[1].delivery_id)
    outbox = PostgresOutbox(stop_pool, settle_after_s=3600)
    stop = asyncio.Event()
    async with broker(services, "test-relay-final-pass") as (publisher, inbox):
        relay = OutboxRelay(
            PostgresListener(stop_database).channel(OUTBOX_CHANNEL),
            lambda limit: outbox.relay_batch(limit, publisher.publish_batch),
            finish=outbox.finish,
        )
        async with stop_pool.acquire() as other:
            transaction = other.transaction()
            await transaction.start()
            try:
                await other.execute(
                    "SELECT 1 FROM exchange.delivery WHERE id = $1 FOR UPDATE", held
                )
                running = asyncio.create_task(relay.run(stop))
                at = await eventually(
                    lambda: stop_pool.fetchval(
                        "SELECT max(published_at) FROM exchange.outbox WHERE delivery_id = $1",
                        held,
                    )
                )
                stop.set()
                # The final pass is waiting for the held copy's lock, and has marked nothing.
                await eventually(lambda: waiting_for_a_copy(stop_pool))
                assert not running.done()
                assert await copies(stop_pool, receipt) == [("accepted", None)] * 3
            finally:
                stop.set()
                await transaction.commit()
            async with asyncio.timeout(30):
                await running
        assert await copies(stop_pool, receipt) == [("queued", at)] * 3
        assert await stop_pool.fetchval("SELECT count(*) FROM exchange.outbox") == 0
        assert sorted(await ledger_events(stop_pool, receipt)) == sorted(
            (r.delivery_id, "queued", at) for r in receipt.routes
        )
        await take_each(inbox, recipients)


async def waiting_for_a_copy(pool: asyncpg.Pool) -> bool:
    """Some transaction waits for a row lock on exchange.delivery."""
    return bool(
        await pool.fetchval(
            """
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE NOT l.granted AND a.datname = current_database()
                AND a.query LIKE '%FROM exchange.delivery d%'
            """
        )
    )
