"""The directory's generation (migrations/0007_change_generation.sql): bumped by every change to
agencies, hub routes and signature policies, and NOTIFYed on CHANGED_CHANNEL at its commit."""

from __future__ import annotations

import asyncpg

CHANGED_CHANNEL = "directory_changed"


class PostgresDirectoryGeneration:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def current(self) -> int:
        return int(await self._pool.fetchval("SELECT n FROM directory.generation"))
