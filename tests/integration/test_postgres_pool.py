"""The connection pool every service uses: a released connection goes back without a reset
round trip (the delivery path releases about eight per document), and what a borrower leaves
unfinished still does not reach the next one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common import postgres

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # One connection: every borrower gets the same session.
    created = await postgres.create_pool(database_url, min_size=1, max_size=1)
    yield created
    await created.close()


async def test_a_released_connection_is_not_sent_a_reset(pool: asyncpg.Pool) -> None:
    """Releasing sends nothing to Postgres (asyncpg's default would send `pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`): the next borrower's query is the first one logged."""
    sent: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda logged: sent.append(logged.query))
        await conn.execute("SELECT 1")
    async with pool.acquire() as conn:
        await conn.execute("SELECT 2")
    assert sent == ["SELECT 1", "SELECT 2"]


async def test_a_transaction_left_open_is_rolled_back_before_the_next_borrower(
    pool: asyncpg.Pool,
) -> None:
    """A borrower that returns its connection mid-transaction (its task cancelled between two
    statements) leaves nothing behind: its writes and its transaction-scoped locks are gone."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS public.pool_probe (n int)")
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("INSERT INTO public.pool_probe VALUES (1)")
        await conn.execute("SELECT pg_advisory_xact_lock(4242)")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM public.pool_probe") == 0
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(4242)") is True
        assert not conn.is_in_transaction()
        await conn.execute("DROP TABLE public.pool_probe")
