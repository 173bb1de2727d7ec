"""Postgres plumbing: one pool per process and per-service SQL migrations."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

# What a database that is down, restarting or unreachable raises. InternalClientError belongs
# here: after a query timed out on a dying connection, asyncpg reports the next use with it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# What pool.acquire() yields; queries work the same on a bare connection.
Conn = asyncpg.Connection | PoolConnectionProxy

# Held while migrating, so two processes starting together do not both apply a migration.
_MIGRATION_LOCK_KEY = 0x646F6361  # "doca"


# How the pools' sessions plan: every statement once per connection, not once per execution.
# asyncpg prepares each statement, and under the default plan_cache_mode (auto) Postgres plans
# it again at every execution (a custom plan) unless the generic plan's estimate beats the
# custom ones'; for the delivery path's large statements (an acknowledgement group's lock and
# writes, the push claim's lock, Submit's lookups, the relay's pass) it never did, and planning
# was a quarter of Postgres's CPU per document (2.1-2.8 ms of 9.5-10 at 40 docs/s;
# docs/perf/README.md, "Postgres's CPU per document"). Generic plans need index probes to be
# priced as what they are on a working set held in memory: at the default random_page_cost (4,
# a disk's seek) a generic plan made while a table is young (a few pages) joins the statement's
# arrays to it by a hash over a sequential scan, and keeps that plan as the table grows until
# its statistics change (1,700 rows read per acknowledgement group in the bench). 1.1 prices a
# page read from cache; the hot statements' generic plans are checked against walks, young and
# analyzed (tests/integration/test_statement_plans.py). Set per session, so that every
# deployment's server plans them so, whatever its own configuration.
PLANNER_SETTINGS: dict[str, str] = {
    "plan_cache_mode": "force_generic_plan",
    "random_page_cost": "1.1",
}


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, role: str | None = None
) -> asyncpg.Pool:
    """A pool whose sessions run as `role` (SET ROLE for the whole session, surviving the pool's
    reset between borrowers), so a process holds only the privileges its job needs, and plan
    as PLANNER_SETTINGS says."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        server_settings={**PLANNER_SETTINGS, **({"role": role} if role else {})},
        reset=_keep_session,
    )
    assert pool is not None  # asyncpg returns None only when awaited wrongly
    return pool


@contextlib.asynccontextmanager
async def planned_for_values(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A connection of `pool`, in a transaction whose statements are planned for the values they
    are given at every execution, not generically as PLANNER_SETTINGS has the pools plan. For a
    statement whose filters are each optional (`$n IS NULL OR …`: the console's search), only a
    plan that sees which ones are given can use the index of the one given; its generic plan
    reads every document (tests/integration/test_adapter_plans.py). So too for a range whose
    width decides the plan (the monthly figures: an hour or a year), which a generic plan prices
    at a default. One round trip more, paid by operators' searches and reports only."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield conn


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Nothing to reset when a pooled connection is released, beyond what asyncpg always does
    (an open transaction rolled back, the Python-side listeners dropped).

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: a round trip to Postgres each time, about eight per document on the
    delivery path, for session state our pooled connections never hold. Everything
    session-scoped is done on connections of its own: LISTEN (postgres_notifications, the CRL
    listener), session advisory locks (leadership; migrations unlock theirs), and the role is a
    startup setting, not a SET. Pooled code only takes transaction-scoped locks and settings.
    """


# Roles are cluster-wide, and the migration lock is not: it is an advisory lock, which Postgres
# scopes to one database. Two databases of one cluster migrating at once (two hubs beside each
# other, `make run HUBS=2`) both find a role missing and both create it; the second CREATE ROLE
# waits for the first and fails with a unique violation on pg_authid. Its transaction rolls back
# whole, so the file is applied again, and then finds the role.
_ROLE_RACE_ATTEMPTS = 3


def _lost_role_race(error: asyncpg.PostgresError) -> bool:
    return isinstance(error, asyncpg.DuplicateObjectError) or (
        isinstance(error, asyncpg.UniqueViolationError)
        and getattr(error, "constraint_name", None) == "pg_authid_rolname_index"
    )


# A migration whose first line is this runs outside a transaction, one statement at a time (a
# `;` at the end of a line ends one, even in a comment, but not in a dollar-quoted body: a DO
# block that commits each batch of a backfill is one statement): for CREATE INDEX CONCURRENTLY,
# which cannot run in one, and is how an index is added to a large table that takes writes (a
# plain CREATE INDEX blocks its writes, and an ALTER TABLE in the same transaction its reads too,
# while it reads the whole table). It is recorded applied after its last statement, so each
# statement must be safe to run again: an interrupted CONCURRENTLY build leaves an invalid index,
# hence DROP INDEX CONCURRENTLY IF EXISTS before each CREATE INDEX CONCURRENTLY.
NO_TRANSACTION = "-- migration: no transaction"


_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")


def statements(sql: str) -> list[str]:
    """The statements of a migration that runs outside a transaction, in order."""
    found: list[str] = []
    current: list[str] = []
    quoted: str | None = None  # the tag of the dollar-quoted body the line is in, if any
    for line in sql.splitlines(keepends=True):
        for tag in _DOLLAR_QUOTE.findall(line):
            if quoted is None:
                quoted = tag
            elif tag == quoted:
                quoted = None
        ended = re.search(r";[ \t]*$", line.rstrip("\r\n")) if quoted is None else None
        current.append(line[: ended.start()] if ended else line)
        if ended:
            found.append("".join(current))
            current = []
    found.append("".join(current))
    return [s.strip() for s in found if _has_code(s)]


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


async def _apply_one(conn: Conn, service: str, name: str, sql: str, digest: str) -> None:
    if sql.startswith(NO_TRANSACTION):
        for statement in statements(sql):
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO public.schema_migrations (service, name, sha256) VALUES ($1, $2, $3)",
            service,
            name,
            digest,
        )
        return
    for attempt in range(1, _ROLE_RACE_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO public.schema_migrations (service, name, sha256) "
                    "VALUES ($1, $2, $3)",
                    service,
                    name,
                    digest,
                )
            return
        except asyncpg.PostgresError as error:
            if attempt == _ROLE_RACE_ATTEMPTS or not _lost_role_race(error):
                raise
            log.info("migration_retried", service=service, migration=name, error=str(error))


async def apply_migrations(conn: Conn, service: str, folder: Path) -> list[str]:
    """Applies `folder/*.sql` in name order, each once, recording them in schema_migrations
    (each in a transaction, unless it starts with NO_TRANSACTION).

    An applied file whose content changed is an error: migrations are append-only.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS public.schema_migrations (
                service    text        NOT NULL,
                name       text        NOT NULL,
                sha256     text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (service, name)
            )
            """
        )
        done = {
            row["name"]: row["sha256"]
            for row in await conn.fetch(
                "SELECT name, sha256 FROM public.schema_migrations WHERE service = $1", service
            )
        }
        for path in sorted(folder.glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != digest:
                    raise RuntimeError(
                        f"migration {service}/{path.name} changed after it was applied"
                    )
                continue
            await _apply_one(conn, service, path.name, sql, digest)
            log.info("migration_applied", service=service, migration=path.name)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
    return applied


async def ping(pool: asyncpg.Pool, timeout_s: float = 2.0) -> bool:
    """True when the database answers a trivial query within the timeout."""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
    except TRANSIENT_ERRORS:
        return False
    return True


async def recreate_database(server_dsn: str, name: str) -> str:
    """Drops and creates database `name` on the server of `server_dsn`; returns its DSN (the
    same hosts and parameters: a primary and standby's `target_session_attrs=read-write` stays).
    For tests and benchmarks: each gets a clean, isolated database on a shared server."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return database_dsn(server_dsn, name)


def database_dsn(server_dsn: str, name: str) -> str:
    """`server_dsn` naming database `name` instead of its own."""
    return urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
