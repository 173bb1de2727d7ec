"""A migration that runs outside a transaction (postgres.NO_TRANSACTION) is sent one statement at
a time: CREATE INDEX CONCURRENTLY fails in a multi-statement string, which Postgres runs as one
transaction."""

from __future__ import annotations

from pathlib import Path

import services.exchange
from services.common import postgres

MIGRATIONS = Path(services.exchange.__file__).parent / "migrations"


def test_each_statement_apart_a_line_ending_in_a_semicolon_ends_one() -> None:
    sql = """-- migration: no transaction
-- why
ALTER TABLE t ADD COLUMN c text;

-- only a comment;
DROP INDEX CONCURRENTLY IF EXISTS i;
CREATE INDEX CONCURRENTLY i
    ON t (c) WHERE c = 'a;b';
"""
    assert postgres.statements(sql) == [
        "-- migration: no transaction\n-- why\nALTER TABLE t ADD COLUMN c text",
        "DROP INDEX CONCURRENTLY IF EXISTS i",
        "CREATE INDEX CONCURRENTLY i\n    ON t (c) WHERE c = 'a;b'",
    ]


def test_every_concurrent_build_can_run_again() -> None:
    """An interrupted build leaves an invalid index that CREATE would trip on (or IF NOT EXISTS
    keep): each is dropped first."""
    for path in sorted(MIGRATIONS.glob("*.sql")):
        sql = path.read_text(encoding="utf-8")
        if not sql.startswith(postgres.NO_TRANSACTION):
            continue
        parts = postgres.statements(sql)
        for k, statement in enumerate(parts):
            code = " ".join(line for line in statement.splitlines() if not line.startswith("--"))
            if code.startswith("CREATE INDEX CONCURRENTLY"):
                name = code.split()[3]
                assert f"DROP INDEX CONCURRENTLY IF EXISTS exchange.{name}" in parts[k - 1], path


def test_a_dollar_quoted_body_is_one_statement() -> None:
    """A DO block that commits each batch of a backfill ends its own lines with semicolons."""
    sql = """-- migration: no transaction
ALTER TABLE t ADD COLUMN c text;
DO $$
BEGIN
    LOOP
        UPDATE t SET c = 'a';
        COMMIT;
        EXIT;
    END LOOP;
END
$$;
CREATE INDEX CONCURRENTLY i ON t (c);
"""
    assert postgres.statements(sql)[1:] == [
        "DO $$\nBEGIN\n    LOOP\n        UPDATE t SET c = 'a';\n        COMMIT;\n        EXIT;\n"
        "    END LOOP;\nEND\n$$",
        "CREATE INDEX CONCURRENTLY i ON t (c)",
    ]
