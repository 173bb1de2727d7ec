"""announce_settled: the ids an acknowledging transaction settled (every worker acks the broker
messages its streams hold for them) and the relay's wake-up, all in one statement, delivered at
commit only."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import OUTBOX_CHANNEL
from services.exchange.adapters.postgres_lifecycle import ACKNOWLEDGED_CHANNEL, announce_settled

pytestmark = pytest.mark.integration

MARKER = "test_settled_marker"


async def test_ids_in_chunks_and_the_relay_woken_at_commit_only(pool: asyncpg.Pool) -> None:
    """450 ids arrive as three payloads in order (200, 200, 50), the relay's channel once; a
    rolled-back transaction's notifications never arrive (one listening session hears in commit
    order, so a marker sent last tells that everything before it has arrived)."""
    heard: list[tuple[str, str]] = []
    marker = asyncio.Event()
    listener = await pool.acquire()
    try:

        def hear(_conn: object, _pid: int, channel: str, payload: object) -> None:
            heard.append((channel, str(payload)))
            if channel == MARKER:
                marker.set()

        for channel in (ACKNOWLEDGED_CHANNEL, OUTBOX_CHANNEL, MARKER):
            await listener.add_listener(channel, hear)
        ids = [str(uuid.uuid4()) for _ in range(450)]
        async with pool.acquire() as conn:

            async def rolled_back() -> None:
                async with conn.transaction():
                    await announce_settled(conn, [str(uuid.uuid4())], wake_relay=True)
                    raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError):
                await rolled_back()
            async with conn.transaction():
                await announce_settled(conn, ids, wake_relay=True)
            async with conn.transaction():
                await announce_settled(conn, [])  # nothing at all
            await conn.execute(f"NOTIFY {MARKER}")
        await asyncio.wait_for(marker.wait(), timeout=10)
    finally:
        for channel in (ACKNOWLEDGED_CHANNEL, OUTBOX_CHANNEL, MARKER):
            await listener.remove_listener(channel, hear)
        await pool.release(listener)
    assert heard == [
        (ACKNOWLEDGED_CHANNEL, ",".join(ids[:200])),
        (ACKNOWLEDGED_CHANNEL, ",".join(ids[200:400])),
        (ACKNOWLEDGED_CHANNEL, ",".join(ids[400:])),
        (OUTBOX_CHANNEL, ""),
        (MARKER, ""),
    ]
