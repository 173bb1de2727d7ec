"""The agency store in Postgres."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from services.directory.domain.model import Agency, AgencyKind
from services.directory.service_layer.ports import AgencyExistsError

_COLUMNS = "code, name, parent_code, kind, valid_from, valid_to, successor_codes, email, version"


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
        row = await self._pool.fetchrow(
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
        return _agency(row)

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
