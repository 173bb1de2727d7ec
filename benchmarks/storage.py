"""What the delivery path writes to Postgres: the WAL position around a step, and the stored
transport receipts' size (a receipt a copy, so a term of every document's bytes)."""

from __future__ import annotations

import asyncpg


async def wal_position(database_url: str) -> int:
    """The server's current WAL insert position, in bytes from its start: the difference of
    two is what every database of the server wrote between them (the bench's is the only one
    written to during a step)."""
    conn = await asyncpg.connect(database_url)
    try:
        # pg_lsn's difference is a numeric (asyncpg: a Decimal).
        return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()


async def receipt_bytes(database_url: str) -> float:
    """The mean size of the copies' stored transport receipts, in bytes (0 without any)."""
    conn = await asyncpg.connect(database_url)
    try:
        mean = await conn.fetchval(
            "SELECT avg(octet_length(transport_receipt)) FROM exchange.delivery"
            " WHERE transport_receipt IS NOT NULL"
        )
        return 0.0 if mean is None else round(float(mean), 1)
    finally:
        await conn.close()
