"""A database as a hub of an earlier version left it: every migration of the directory, and
those of the exchange named before one (the tests of a migration's backfill, or of what the
processes of the version before do during the upgrade)."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg

import services.directory
import services.exchange
from services.common import postgres

EXCHANGE = Path(services.exchange.__file__).parent / "migrations"
DIRECTORY = Path(services.directory.__file__).parent / "migrations"


async def migrate_before(conn: asyncpg.Connection, name: str, scratch: Path) -> None:
    """Applies the migrations before the exchange's `name` (copied into `scratch`, a new folder)."""
    before = scratch / "exchange"
    before.mkdir()
    for path in sorted(EXCHANGE.glob("*.sql")):
        if path.name < name:
            shutil.copy(path, before / path.name)
    await postgres.apply_migrations(conn, "directory", DIRECTORY)
    await postgres.apply_migrations(conn, "exchange", before)
