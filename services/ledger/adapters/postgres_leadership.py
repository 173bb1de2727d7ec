"""The writer's leadership as a Postgres advisory lock held on a dedicated connection: a second
instance waits until the first one's connection goes away, then takes over from the state in
the database."""

from __future__ import annotations

import contextlib

import asyncpg

from services.common.postgres import TRANSIENT_ERRORS
from services.ledger.adapters.postgres import WRITER_LOCK_KEY

# A failing close ends the hold all the same: the lock dies with its session.
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)


class PostgresLeaderTerm:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def lost(self) -> bool:
        return self._conn.is_closed()

    async def release(self) -> None:
        if not self._conn.is_closed():
            # Closing the session releases the advisory lock.
            with contextlib.suppress(*_CLOSE_ERRORS):
                await self._conn.close(timeout=2)


class PostgresLeadership:
    def __init__(self, database_url: str, *, role: str | None) -> None:
        self._database_url = database_url
        self._role = role

    async def try_lead(self) -> PostgresLeaderTerm | None:
        conn = await asyncpg.connect(
            self._database_url, server_settings={"role": self._role} if self._role else None
        )
        term = PostgresLeaderTerm(conn)
        try:
            held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY)
        except BaseException:
            await term.release()
            raise
        if held:
            return term
        await term.release()
        return None
