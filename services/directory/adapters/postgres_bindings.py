"""Certificate bindings in Postgres, each change ledgered in its transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from services.directory.adapters.postgres import stage_directory_event
from services.directory.domain.certificate_binding import CertificateBinding, CertificateRole

_COLUMNS = "spki_sha256, agency_code, role, subject, issuer, serial, not_after, bound_by, bound_at"

# The bindings of keys ($2, Submit's signature checks), of an agency ($1), of an agency's keys, or
# all: one arm for each, those not asked for cut off by a one-time filter. With each filter an
# `IS NULL OR` in one WHERE, the generic plan could only read the table whole (0.33 ms for 2,000
# bindings where the probe takes 0.02; docs/perf/README.md, "Young statistics, the rest").
FIND_SQL = f"""
SELECT {_COLUMNS} FROM directory.certificate_binding
WHERE spki_sha256 = ANY($2::text[]) AND ($1::text IS NULL OR agency_code = $1)
UNION ALL
SELECT {_COLUMNS} FROM directory.certificate_binding WHERE $2::text[] IS NULL AND agency_code = $1
UNION ALL
SELECT {_COLUMNS} FROM directory.certificate_binding WHERE $2::text[] IS NULL AND $1::text IS NULL
ORDER BY agency_code, spki_sha256
"""  # noqa: S608 - constant columns


def _binding(row: asyncpg.Record) -> CertificateBinding:
    return CertificateBinding(
        spki_sha256=row["spki_sha256"],
        agency_code=row["agency_code"],
        role=CertificateRole(row["role"]),
        subject=row["subject"],
        issuer=row["issuer"],
        serial=row["serial"],
        not_after=row["not_after"],
        bound_by=row["bound_by"],
        bound_at=row["bound_at"],
    )


class PostgresCertificateBindings:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(
        self, *, agency_code: str | None, spki_sha256: Sequence[str] | None
    ) -> list[CertificateBinding]:
        rows = await self._pool.fetch(
            FIND_SQL,
            agency_code,
            None if spki_sha256 is None else list(spki_sha256),
        )
        return [_binding(row) for row in rows]

    async def bind(self, binding: CertificateBinding) -> tuple[CertificateBinding, bool]:
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM directory.certificate_binding "  # noqa: S608
                "WHERE spki_sha256 = $1 FOR UPDATE",
                binding.spki_sha256,
            )
            if before is not None and _binding(before).same_decision(binding):
                return _binding(before), False
            row = await conn.fetchrow(
                f"""
                INSERT INTO directory.certificate_binding ({_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
                ON CONFLICT (spki_sha256) DO UPDATE SET
                    agency_code = EXCLUDED.agency_code,
                    role = EXCLUDED.role,
                    subject = EXCLUDED.subject,
                    issuer = EXCLUDED.issuer,
                    serial = EXCLUDED.serial,
                    not_after = EXCLUDED.not_after,
                    bound_by = EXCLUDED.bound_by,
                    bound_at = EXCLUDED.bound_at
                RETURNING {_COLUMNS}
                """,  # noqa: S608 - a constant column list
                binding.spki_sha256,
                binding.agency_code,
                binding.role.value,
                binding.subject,
                binding.issuer,
                binding.serial,
                binding.not_after,
                binding.bound_by,
            )
            assert row is not None  # INSERT … RETURNING always returns the row
            stored = _binding(row)
            await stage_directory_event(conn, stored.ledger_data("certificate_bound"))
        return stored, True

    async def unbind(self, spki_sha256: str, actor: str) -> CertificateBinding | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"DELETE FROM directory.certificate_binding WHERE spki_sha256 = $1 "  # noqa: S608
                f"RETURNING {_COLUMNS}",
                spki_sha256,
            )
            if row is None:
                return None
            removed = dataclasses.replace(_binding(row), bound_by=actor)
            await stage_directory_event(conn, removed.ledger_data("certificate_unbound"))
        return removed
