"""deploy/local/postgres.sh rejoin: after a failover the old primary comes back as the new
primary's synchronous standby, and the pair fails over again the other way."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.infra import PostgresPair

pytestmark = pytest.mark.integration


def _url(pair: PostgresPair, port_variable: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{pair.env[port_variable]}/docaxis"


async def _rows_and_recovery(url: str) -> tuple[list[int], bool]:
    conn = await asyncpg.connect(url)
    try:
        rows = [r["n"] for r in await conn.fetch("SELECT n FROM rejoin_probe ORDER BY n")]
        return rows, bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await conn.close()


async def _write(url: str, n: int) -> None:
    """A commit through the pair's URL (target_session_attrs=read-write: the primary)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS rejoin_probe (n int)")
        await conn.execute("INSERT INTO rejoin_probe VALUES ($1)", n)
    finally:
        await conn.close()


async def _sync_standbys(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
        )
        return [r["sync_state"] for r in rows]
    finally:
        await conn.close()


async def test_the_old_primary_rejoins_as_the_synchronous_standby_and_can_take_over_again(
    postgres_pair: PostgresPair,
) -> None:
    first, second = (
        _url(postgres_pair, "DOCAXIS_PG_PORT"),
        _url(postgres_pair, "DOCAXIS_PG_STANDBY_PORT"),
    )
    await _write(postgres_pair.url, 1)
    await asyncio.to_thread(postgres_pair.script, "kill")
    await asyncio.to_thread(postgres_pair.script, "promote")
    await _write(postgres_pair.url, 2)  # only the promoted second server has it

    assert await asyncio.to_thread(postgres_pair.script, "rejoin") == postgres_pair.url
    assert await _sync_standbys(second) == ["sync"]
    await _write(postgres_pair.url, 3)  # waits for the rejoined standby
    assert await _rows_and_recovery(first) == ([1, 2, 3], True)

    # The roles swapped: kill and promote now act on the second server and the first.
    await asyncio.to_thread(postgres_pair.script, "kill")
    await asyncio.to_thread(postgres_pair.script, "promote")
    await _write(postgres_pair.url, 4)
    assert await _rows_and_recovery(first) == ([1, 2, 3, 4], False)
    await asyncio.to_thread(postgres_pair.script, "rejoin")
    assert await _sync_standbys(first) == ["sync"]
    assert await _rows_and_recovery(second) == ([1, 2, 3, 4], True)
