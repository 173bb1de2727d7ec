"""Every service's database migrations, in the order their grants need."""

from __future__ import annotations

from pathlib import Path

from services.common import postgres

SERVICES_DIR = Path(__file__).resolve().parent.parent
# Migration order matters: the ledger grants the application role its rights on the other schemas.
_MIGRATIONS = (("directory", "directory"), ("exchange", "exchange"), ("ledger", "ledger"))


async def migrate(database_url: str) -> list[str]:
    """Applies every service's migrations; returns the names applied now."""
    applied: list[str] = []
    pool = await postgres.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            for service, folder in _MIGRATIONS:
                names = await postgres.apply_migrations(
                    conn, service, SERVICES_DIR / folder / "migrations"
                )
                applied.extend(f"{service}/{name}" for name in names)
    finally:
        await pool.close()
    return applied
