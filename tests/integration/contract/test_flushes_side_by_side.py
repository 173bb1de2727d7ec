"""Push claims and acknowledgements are group-committed two flushes at once (SIDE_BY_SIDE): a
copy's claim or acknowledgement goes to Postgres while another caller's transaction is still
running (here held on a row lock), instead of waiting for that transaction to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
import pytest

from services.directory.domain.codes import code_problem
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import Acknowledgement, PushItem
from tests.fakes import FakeDirectoryLookup
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration

T = TypeVar("T")
# Long enough for a loaded machine; the copy behind a held transaction would wait forever.
WAIT_S = 20.0


def handlers(pool: asyncpg.Pool) -> tuple[ExchangeHandlers, LifecycleHandlers]:
    exchange = ExchangeHandlers(PostgresDocumentStore(pool), FakeDirectoryLookup(), code_problem)
    return exchange, LifecycleHandlers(exchange, PostgresLifecycleStore(pool))


async def two_copies(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    sent = await send(PostgresDocumentStore(pool), a_submission(unique("S"), [unique("R")]))
    more = await send(PostgresDocumentStore(pool), a_submission(unique("S"), [unique("R")]))
    return [
        (route.delivery_id, route.effective_recipient)
        for receipt in (sent.receipt, more.receipt)
        for route in receipt.routes
    ]


@asynccontextmanager
async def held(pool: asyncpg.Pool, delivery_id: str) -> AsyncIterator[None]:
    """The copy's row locked by a transaction of the test's own until the block ends."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM exchange.delivery WHERE id = $1 FOR UPDATE", uuid.UUID(delivery_id)
        )
        yield


async def blocked_on_a_lock(pool: asyncpg.Pool, task: asyncio.Task[T]) -> None:
    """Until a session waits for a row lock on exchange.delivery (the task's flush)."""
    async with asyncio.timeout(WAIT_S):
        while not await pool.fetchval(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%exchange.delivery%'
                AND datname = current_database()
            """
        ):
            assert not task.done(), task
            await asyncio.sleep(0.02)


async def within(work: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await work


async def test_an_acknowledgement_is_committed_while_another_flush_waits(
    pool: asyncpg.Pool,
) -> None:
    _, lifecycle = handlers(pool)
    (first, first_recipient), (second, second_recipient) = await two_copies(pool)
    async with held(pool, first):
        waiting = asyncio.create_task(lifecycle.acknowledge(first_recipient, first))
        await blocked_on_a_lock(pool, waiting)
        done = await within(lifecycle.acknowledge(second_recipient, second))
        assert isinstance(done, Acknowledgement)
        assert not done.already_acknowledged
        assert not waiting.done()
    assert isinstance(await within(waiting), Acknowledgement)
    states = await pool.fetch(
        "SELECT state FROM exchange.delivery WHERE id = ANY($1::uuid[])",
        [uuid.UUID(first), uuid.UUID(second)],
    )
    assert [row["state"] for row in states] == ["acknowledged"] * 2


async def test_a_push_is_claimed_while_another_claim_waits(pool: asyncpg.Pool) -> None:
    exchange, _ = handlers(pool)
    (first, first_recipient), (second, second_recipient) = await two_copies(pool)
    async with held(pool, first):
        waiting = asyncio.create_task(exchange.begin_push(first, first_recipient))
        await blocked_on_a_lock(pool, waiting)
        claimed = await within(exchange.begin_push(second, second_recipient))
        assert isinstance(claimed, PushItem)
        assert claimed.delivery_id == second
        assert not waiting.done()
    pushed = await within(waiting)
    assert isinstance(pushed, PushItem)
    assert pushed.delivery_id == first
