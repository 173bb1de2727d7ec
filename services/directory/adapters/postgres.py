"""The agency store in Postgres."""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from services.common.postgres import Conn
from services.directory.domain.model import Agency, AgencyKind
from services.directory.domain.reorganisation import Reorganisation
from services.directory.service_layer.ports import AgencyExistsError, StaleAgencyError

ACTOR = "directory"
# Every write that takes a version holds this lock until it commits: versions then become
# visible in order, so a delta-feed reader never skips one that commits late.
_VERSION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('directory.agency_version'))"

_COLUMNS = (
    "code, name, parent_code, kind, valid_from, valid_to, successor_codes, email, version, "
    "served_by"
)


def _agency(row: asyncpg.Record) -> Agency:
    return Agency(
        code=row["code"],
        name=row["name"],
        kind=AgencyKind(row["kind"]),
        valid_from=row["valid_from"],
        parent_code=row["parent_code"],
        valid_to=row["valid_to"],
        successor_codes=tuple(row["successor_codes"]),
        email=row["email"],
        version=row["version"],
        served_by=row["served_by"],
    )


class PostgresAgencies:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, code: str) -> Agency | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM directory.agency WHERE code = $1",  # noqa: S608 - a constant column list
            code,
        )
        return None if row is None else _agency(row)

    async def get_many(self, codes: Sequence[str]) -> dict[str, Agency]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM directory.agency WHERE code = ANY($1::text[])",  # noqa: S608
            list(codes),
        )
        return {row["code"]: _agency(row) for row in rows}

    async def add(self, agency: Agency) -> Agency:
        try:
            return await self._insert(agency)
        except asyncpg.UniqueViolationError as exc:
            raise AgencyExistsError(agency.code) from exc

    async def _insert(self, agency: Agency) -> Agency:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_VERSION_LOCK)
            row = await conn.fetchrow(
                f"""
                INSERT INTO directory.agency
                    (code, name, parent_code, kind, valid_from, valid_to, successor_codes, email)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                RETURNING {_COLUMNS}
                """,  # noqa: S608
                agency.code,
                agency.name,
                agency.parent_code,
                agency.kind.value,
                agency.valid_from,
                agency.valid_to,
                list(agency.successor_codes),
                agency.email,
            )
            assert row is not None
            stored = _agency(row)
            await stage_directory_event(
                conn,
                {"event": "registered", "code": stored.code, "version": stored.version},
            )
        return stored

    async def list(
        self, *, parent_code: str | None, open_on: dt.date | None, after_code: str, limit: int
    ) -> list[Agency]:
        conditions = ["code > $1"]
        args: list[Any] = [after_code]
        if parent_code is not None:
            args.append(parent_code)
            conditions.append(f"parent_code = ${len(args)}")
        if open_on is not None:
            args.append(open_on)
            conditions.append(f"(valid_to IS NULL OR valid_to >= ${len(args)})")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM directory.agency WHERE {' AND '.join(conditions)} "  # noqa: S608
            f"ORDER BY code LIMIT ${len(args)}",
            *args,
        )
        return [_agency(row) for row in rows]

    async def record_reorganisation(
        self, reorganisation: Reorganisation, closed: Sequence[Agency]
    ) -> tuple[Reorganisation, builtins.list[Agency]]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_VERSION_LOCK)
            updated: builtins.list[Agency] = []
            for agency in closed:
                row = await conn.fetchrow(
                    f"""
                    UPDATE directory.agency SET valid_to = $3, successor_codes = $4,
                        version = nextval('directory.agency_version'), updated_at = now()
                    WHERE code = $1 AND version = $2
                    RETURNING {_COLUMNS}
                    """,  # noqa: S608 - a constant column list
                    agency.code,
                    agency.version,
                    agency.valid_to,
                    list(agency.successor_codes),
                )
                if row is None:
                    raise StaleAgencyError(agency.code)  # the transaction rolls back
                updated.append(_agency(row))
            reorganisation_id: int = await conn.fetchval(
                """
                INSERT INTO directory.reorganisation (kind, effective_date, old_codes, new_codes,
                    note)
                VALUES ($1, $2, $3, $4, $5) RETURNING id
                """,
                reorganisation.kind.value,
                reorganisation.effective_date,
                list(reorganisation.old_codes),
                list(reorganisation.new_codes),
                reorganisation.note,
            )
            await stage_directory_event(
                conn,
                {
                    "event": "reorganised",
                    "reorganisation": reorganisation_id,
                    "kind": reorganisation.kind.value,
                    "effective_date": reorganisation.effective_date.isoformat(),
                    "old_codes": list(reorganisation.old_codes),
                    "new_codes": list(reorganisation.new_codes),
                    "versions": {a.code: a.version for a in updated},
                },
            )
        return dataclasses.replace(reorganisation, id=reorganisation_id), updated

    async def changes(self, since_version: int, limit: int) -> builtins.list[Agency]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM directory.agency WHERE version > $1 "  # noqa: S608
            "ORDER BY version LIMIT $2",
            since_version,
            limit,
        )
        return [_agency(row) for row in rows]

    async def latest_version(self) -> int:
        value = await self._pool.fetchval("SELECT coalesce(max(version), 0) FROM directory.agency")
        return int(value)


async def stage_directory_event(conn: Conn, data: Mapping[str, Any]) -> None:
    """A `directory` fact for the ledger, in the caller's transaction (no document: `doc` is
    absent from such entries)."""
    await conn.execute(
        """
        INSERT INTO ledger.pending (entry_type, actor, occurred_at, data)
        VALUES ('directory', $1, now(), $2::jsonb)
        """,
        ACTOR,
        json.dumps(dict(data), ensure_ascii=False, sort_keys=True),
    )
