"""Hub routes and agencies pulled from peer hubs, in Postgres (the HubRoutes port)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.directory.adapters.postgres import _VERSION_LOCK, stage_directory_event
from services.directory.domain.model import Agency

# A pulled agency is stored when new, or when anything it says changed; never over an agency
# this hub serves itself (served_by IS NULL), whatever a peer claims about it. Its parent is
# kept only when this directory knows it (feeds order by version, not by hierarchy).
_UPSERT_PULLED = """
INSERT INTO directory.agency AS a (code, name, parent_code, kind, valid_from, valid_to,
    successor_codes, email, served_by)
VALUES ($1, $2, (SELECT code FROM directory.agency WHERE code = $3), $4, $5, $6, $7, $8, $9)
ON CONFLICT (code) DO UPDATE SET
    name = excluded.name, parent_code = excluded.parent_code, kind = excluded.kind,
    valid_from = excluded.valid_from, valid_to = excluded.valid_to,
    successor_codes = excluded.successor_codes, email = excluded.email,
    served_by = excluded.served_by,
    version = nextval('directory.agency_version'), updated_at = now()
WHERE a.served_by IS NOT NULL
  AND (a.name, a.parent_code, a.kind, a.valid_from, a.valid_to, a.successor_codes, a.email,
       a.served_by)
      IS DISTINCT FROM
      (excluded.name, excluded.parent_code, excluded.kind, excluded.valid_from, excluded.valid_to,
       excluded.successor_codes, excluded.email, excluded.served_by)
RETURNING code
"""


class PostgresHubRoutes:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def routes(self) -> dict[str, str]:
        rows = await self._pool.fetch("SELECT pattern, hub_code FROM directory.hub_route")
        return {row["pattern"]: row["hub_code"] for row in rows}

    async def set_route(self, pattern: str, hub_code: str | None, updated_by: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if hub_code is None:
                await conn.execute("DELETE FROM directory.hub_route WHERE pattern = $1", pattern)
            else:
                await conn.execute(
                    """
                    INSERT INTO directory.hub_route (pattern, hub_code, updated_by)
                    VALUES ($1, $2, $3)
                    ON CONFLICT (pattern) DO UPDATE SET hub_code = excluded.hub_code,
                        updated_by = excluded.updated_by, updated_at = now()
                    """,
                    pattern,
                    hub_code,
                    updated_by,
                )
            await stage_directory_event(
                conn,
                {"event": "hub_route", "pattern": pattern, "hub": hub_code or ""},
            )

    async def peer_since(self, hub_code: str) -> int:
        value = await self._pool.fetchval(
            "SELECT since_version FROM directory.peer_sync WHERE hub_code = $1", hub_code
        )
        return int(value or 0)

    async def apply_peer_page(
        self, hub_code: str, agencies: Sequence[Agency], next_since: int
    ) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_VERSION_LOCK)
            changed: list[str] = []
            for agency in agencies:
                code = await conn.fetchval(
                    _UPSERT_PULLED,
                    agency.code,
                    agency.name,
                    agency.parent_code,
                    agency.kind.value,
                    agency.valid_from,
                    agency.valid_to,
                    list(agency.successor_codes),
                    agency.email,
                    hub_code,
                )
                if code is not None:
                    changed.append(code)
            await conn.execute(
                """
                INSERT INTO directory.peer_sync (hub_code, since_version) VALUES ($1, $2)
                ON CONFLICT (hub_code) DO UPDATE SET since_version = excluded.since_version,
                    synced_at = now()
                """,
                hub_code,
                next_since,
            )
            if changed:
                await stage_directory_event(
                    conn, {"event": "pulled", "hub": hub_code, "codes": changed}
                )
        return len(changed)
