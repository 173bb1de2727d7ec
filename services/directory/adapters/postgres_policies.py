"""Signature policies in Postgres, each change ledgered in its transaction."""

from __future__ import annotations

import asyncpg

from services.directory.adapters.postgres import stage_directory_event
from services.directory.domain.signature_policy import (
    ANY_DOCUMENT_TYPE,
    SignatureForm,
    SignaturePolicy,
)

_COLUMNS = (
    "agency_code, document_type, person_forms, organization_forms, allow_legacy_algorithms, "
    "transport_attested, updated_by, updated_at"
)


def _policy(row: asyncpg.Record) -> SignaturePolicy:
    return SignaturePolicy(
        agency_code=row["agency_code"],
        document_type=row["document_type"],
        person_forms=frozenset(SignatureForm(form) for form in row["person_forms"]),
        organization_forms=frozenset(SignatureForm(form) for form in row["organization_forms"]),
        allow_legacy_algorithms=row["allow_legacy_algorithms"],
        transport_attested=row["transport_attested"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


class PostgresSignaturePolicies:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, agency_code: str, document_type: int) -> SignaturePolicy | None:
        # The type's own row sorts first; the agency's every-type row is the fallback.
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM directory.signature_policy "  # noqa: S608 - constant columns
            "WHERE agency_code = $1 AND document_type = ANY($2::integer[]) "
            "ORDER BY document_type DESC LIMIT 1",
            agency_code,
            sorted({document_type, ANY_DOCUMENT_TYPE}),
        )
        return None if row is None else _policy(row)

    async def save(self, policy: SignaturePolicy) -> SignaturePolicy:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                INSERT INTO directory.signature_policy ({_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                ON CONFLICT (agency_code, document_type) DO UPDATE SET
                    person_forms = EXCLUDED.person_forms,
                    organization_forms = EXCLUDED.organization_forms,
                    allow_legacy_algorithms = EXCLUDED.allow_legacy_algorithms,
                    transport_attested = EXCLUDED.transport_attested,
                    updated_by = EXCLUDED.updated_by,
                    updated_at = EXCLUDED.updated_at
                RETURNING {_COLUMNS}
                """,  # noqa: S608 - a constant column list
                policy.agency_code,
                policy.document_type,
                sorted(policy.person_forms),
                sorted(policy.organization_forms),
                policy.allow_legacy_algorithms,
                policy.transport_attested,
                policy.updated_by,
            )
            assert row is not None  # INSERT … RETURNING always returns the row
            stored = _policy(row)
            await stage_directory_event(conn, stored.ledger_data())
        return stored
