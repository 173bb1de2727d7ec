"""Postgres NOTIFY heard on a dedicated connection: LISTEN must outlive the pool's
transaction-scoped borrowing, so each subscription holds a connection of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg


class PostgresSubscription:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self._lost.set())

    @property
    def lost(self) -> asyncio.Event:
        if self._conn.is_closed():
            self._lost.set()
        return self._lost

    async def close(self) -> None:
        if not self._conn.is_closed():
            await self._conn.close()


class PostgresNotifications:
    """The notifications of one channel (e.g. the outbox's, NOTIFYed at commit)."""

    def __init__(self, database_url: str, channel: str) -> None:
        self._database_url = database_url
        self._channel = channel

    async def subscribe(self, on_payload: Callable[[str], None]) -> PostgresSubscription:
        conn: asyncpg.Connection = await asyncpg.connect(self._database_url)
        subscription = PostgresSubscription(conn)
        try:
            await conn.add_listener(
                self._channel, lambda _conn, _pid, _channel, payload: on_payload(str(payload))
            )
        except BaseException:
            await subscription.close()
            raise
        return subscription
