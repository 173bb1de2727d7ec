"""Two databases of one Postgres cluster migrating at once (two hubs beside each other, as
`make run HUBS=2` starts them): roles are cluster-wide while the migration lock is per database,
so both may create the same role; the one that loses applies its migration again instead of
failing its hub's start."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.common import postgres
from tests.infra import SuiteServices

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_databases(services: SuiteServices) -> AsyncIterator[tuple[str, str]]:
    names = ("docaxis_race_a", "docaxis_race_b")
    urls = [await postgres.recreate_database(services.database_url, name) for name in names]
    yield urls[0], urls[1]
    admin = await asyncpg.connect(services.database_url)
    try:
        for name in names:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def role(services: SuiteServices, two_databases: tuple[str, str]) -> AsyncIterator[str]:
    """A role of this test's own, dropped with its grants in both databases."""
    name = f"race_role_{secrets.token_hex(4)}"
    yield name
    for url in two_databases:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP OWNED BY {name}")
        except asyncpg.UndefinedObjectError:
            pass  # the role was never created
        finally:
            await conn.close()
    admin = await asyncpg.connect(services.database_url)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
    finally:
        await admin.close()


def _migrations(folder: Path, role: str) -> Path:
    """One migration creating `role` if missing, the way the ledger's 0002 does, with a pause
    between the check and the creation so that two databases both find it missing."""
    folder.mkdir()
    (folder / "0001_role.sql").write_text(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                PERFORM pg_sleep(0.5);
                CREATE ROLE {role} NOLOGIN;
            END IF;
        END $$;
        CREATE TABLE owned_by_role (id int);
        GRANT SELECT ON owned_by_role TO {role};
        """,  # noqa: S608 (the role's name is this test's own token)
        encoding="utf-8",
    )
    return folder


async def _migrate(url: str, folder: Path) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await postgres.apply_migrations(conn, "race", folder)
    finally:
        await conn.close()


async def test_two_databases_creating_one_role_at_once_both_migrate(
    two_databases: tuple[str, str], role: str, tmp_path: Path
) -> None:
    folder = _migrations(tmp_path / "migrations", role)
    applied = await asyncio.gather(*(_migrate(url, folder) for url in two_databases))
    assert applied == [["0001_role.sql"], ["0001_role.sql"]]
    for url in two_databases:
        conn = await asyncpg.connect(url)
        try:
            granted = await conn.fetchval(
                "SELECT has_table_privilege($1, 'owned_by_role', 'SELECT')", role
            )
        finally:
            await conn.close()
        assert granted is True


async def test_a_migration_failing_otherwise_is_not_applied_again(
    two_databases: tuple[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_twice.sql").write_text(
        "CREATE TABLE twice (id int); CREATE TABLE twice (id int);", encoding="utf-8"
    )
    with pytest.raises(asyncpg.DuplicateTableError):
        await _migrate(two_databases[0], folder)
    conn = await asyncpg.connect(two_databases[0])
    try:
        recorded = await conn.fetchval("SELECT count(*) FROM public.schema_migrations")
    finally:
        await conn.close()
    assert recorded == 0
