"""Reading Postgres plans in tests that assert a statement's plan shape (EXPLAIN FORMAT JSON):
plans that depend on the statistics of young tables have gone wrong here before, and a plan's
shape is what such a test can check without timing anything."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

from services.common.postgres import Conn


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, the root first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def whole_index_scan(node: dict[str, Any], leading: dict[str, str]) -> str | None:
    """What `node` is, when it scans an index on a condition that leaves the index's first column
    free (`leading`: index name -> first column): such a scan reads the whole index and reports
    only the rows that match."""
    index = node.get("Index Name", "")
    condition = node.get("Index Cond", "")
    if condition and index in leading and not re.search(rf"\b{leading[index]}\b", condition):
        return f"{node['Node Type']} {index}: the whole index, for {condition}"
    return None


def rows_read(node: dict[str, Any]) -> float:
    """The rows a scan node read of its table: those it returned and those it filtered out, in
    every loop (0 for a node that reads no table)."""
    if "Relation Name" not in node:
        return 0
    per_loop = node["Actual Rows"] + sum(
        node.get(k, 0) for k in ("Rows Removed by Filter", "Rows Removed by Index Recheck")
    )
    return float(per_loop * node["Actual Loops"])


async def literals(conn: Conn, types: Sequence[str], arguments: Sequence[object]) -> list[str]:
    """`arguments` as SQL literals of `types` (a prepared statement's parameter types), for an
    EXECUTE that EXPLAIN can take (it takes no bound parameters)."""
    return [
        f"{await conn.fetchval(f'SELECT quote_nullable($1::{t}::text)', value)}::{t}"
        for t, value in zip(types, arguments, strict=True)
    ]


async def explain_prepared(
    conn: asyncpg.Connection,
    name: str,
    arguments: Sequence[object],
    *,
    plan_mode: str | None = None,
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the prepared statement `name` on its plan as cached (or as `plan_mode`
    plans it), rolled back."""
    types = await conn.fetchval(
        "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", name
    )
    values = await literals(conn, types, arguments)
    transaction = conn.transaction()
    await transaction.start()
    try:
        if plan_mode is not None:
            await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
        explained = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({', '.join(values)})"
        )
    finally:
        await transaction.rollback()
    return dict(json.loads(explained)[0]["Plan"])


async def leading_columns(conn: asyncpg.Connection) -> dict[str, str]:
    """Index name -> its first column, for the indexes of the service schemas."""
    return {
        r["relname"]: r["attname"]
        for r in await conn.fetch(
            "SELECT c.relname, a.attname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE c.relnamespace::regnamespace::text IN ('exchange', 'ledger', 'directory')"
        )
    }
