"""Postgres NOTIFY heard on a dedicated connection: LISTEN must outlive the pool's
transaction-scoped borrowing.

One connection per process (`PostgresListener`) carries every channel the process listens on
(the outbox relay's, the settlements', directory changes, the CRL watcher's): Postgres signals
every backend that listens on anything at each NOTIFY, whatever the channel, and each wakes to
read the queue, so four listening connections per process cost four wake-ups per NOTIFY where
one does (docs/perf/README.md, "The call's fixed costs, again"). Each subscriber still sees its
own subscription end when that connection drops (`lost`), and subscribes again: the first to do
so opens the next connection, the others join it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

# What asyncpg calls with each notification: (connection, sender's pid, channel, payload).
_Callback = Callable[[Any, int, str, object], None]


class PostgresListener:
    """The process's listening connection, opened on the first subscription and closed with
    the last one (or once lost, replaced on the next subscription)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._subscribed = 0
        # LISTEN, UNLISTEN, connecting and closing one at a time: an asyncpg connection runs
        # one operation at a time.
        self._busy = asyncio.Lock()

    def channel(self, name: str) -> PostgresNotifications:
        return PostgresNotifications(self, name)

    @property
    def server_pid(self) -> int | None:
        """The listening connection's backend (pg_stat_activity.pid), while it is open."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn.get_server_pid()

    async def subscribe(
        self, channel: str, on_payload: Callable[[str], None]
    ) -> PostgresSubscription:
        def callback(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            on_payload(str(payload))

        async with self._busy:
            conn = self._conn
            if conn is None or conn.is_closed() or self._lost.is_set():
                conn = await self._connect()
            # asyncpg LISTENs on the channel's first callback only.
            await conn.add_listener(channel, callback)
            self._subscribed += 1
        return PostgresSubscription(self, conn, self._lost, channel, callback)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self._database_url)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._conn, self._lost, self._subscribed = conn, lost, 0
        return conn

    async def close(self) -> None:
        """Closes the connection, whoever still listens (the process is stopping)."""
        async with self._busy:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                await conn.close()

    async def unsubscribe(
        self, conn: asyncpg.Connection, channel: str, callback: _Callback
    ) -> None:
        async with self._busy:
            if conn is not self._conn or conn.is_closed():
                return  # a connection already lost (and maybe replaced): nothing listens there
            self._subscribed -= 1
            if self._subscribed == 0:
                self._conn = None
                await conn.close()
            else:
                await conn.remove_listener(channel, callback)  # UNLISTEN after the last one


class PostgresSubscription:
    def __init__(
        self,
        listener: PostgresListener,
        conn: asyncpg.Connection,
        lost: asyncio.Event,
        channel: str,
        callback: _Callback,
    ) -> None:
        self._listener = listener
        self._conn = conn
        self._lost = lost
        self._channel = channel
        self._callback = callback
        self._closed = False

    @property
    def lost(self) -> asyncio.Event:
        """Set once the connection dropped: nothing more is heard; subscribe again."""
        if self._conn.is_closed():
            self._lost.set()
        return self._lost

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._listener.unsubscribe(self._conn, self._channel, self._callback)


class PostgresNotifications:
    """The notifications of one channel (e.g. the outbox's, NOTIFYed at commit), heard on the
    process's listening connection."""

    def __init__(self, listener: PostgresListener, channel: str) -> None:
        self._listener = listener
        self._channel = channel

    async def subscribe(self, on_payload: Callable[[str], None]) -> PostgresSubscription:
        return await self._listener.subscribe(self._channel, on_payload)
