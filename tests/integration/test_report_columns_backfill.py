"""Migration 0038's backfills: the copies and statuses stored before it get what the overdue and
stalled reports read them by (the due date, the first answer, the first registration), across
the batches each backfill commits, and running them again changes nothing; the copies a process
of the previous version stores after it get their due date from the due-date job."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.exchange.adapters.postgres_reports import PostgresReportStore
from services.exchange.service_layer.copy_due_dates import DueDateRepair
from tests.infra import SuiteServices
from tests.migrations_before import EXCHANGE, migrate_before

pytestmark = pytest.mark.integration

BACKFILLED = "0038_reports_open_copies.sql"

# 2,500 documents, each with one copy acknowledged; every third due on 3 December. Statuses as
# the previous version stored them (nothing on the copy): every 01 first, then a 03 an hour
# after (but on every fifth), and a 06 a day after on those due, but every seventh copy rejected
# (02) instead: 2,500 01s push the 06s past the first batch of 5,000 statuses.
BEFORE = """
INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
    business_type, header, submitted_at)
SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'D' || i, 'A001', 'c' || i,
    'f' || i, 0,
    jsonb_build_object('due_date', CASE WHEN i % 3 = 0 THEN '2026-12-03' END),
    timestamptz '2026-12-01' + i * interval '1 minute'
FROM generate_series(1, 2500) i;
INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient, recipient, state,
    accepted_at, acknowledged_at)
SELECT ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid,
    ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 0, 'A002', 'A002',
    'acknowledged', timestamptz '2026-12-01' + i * interval '1 minute',
    timestamptz '2026-12-01' + i * interval '1 minute'
FROM generate_series(1, 2500) i;
INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at, recorded_at,
    reported_by)
SELECT id, code || id, code, acknowledged_at + after, acknowledged_at + after, recipient
FROM (VALUES ('01', interval '0'), ('03', interval '1 hour'), ('02', interval '2 hours'),
             ('06', interval '1 day')) c (code, after)
CROSS JOIN LATERAL (
    SELECT d.*, substr(d.id::text, 25)::int AS i FROM exchange.delivery d ORDER BY d.id
) d
WHERE CASE c.code WHEN '01' THEN true
    WHEN '02' THEN d.i % 7 = 0
    WHEN '03' THEN d.i % 7 <> 0 AND d.i % 5 <> 0
    ELSE d.i % 7 <> 0 AND d.i % 5 <> 0 AND d.i % 3 = 0 END;
"""

KEPT = """
SELECT count(*) FILTER (WHERE due_date IS DISTINCT FROM
        CASE WHEN i % 3 = 0 THEN date '2026-12-03' END) AS wrong_due,
    count(*) FILTER (WHERE registered_at IS DISTINCT FROM CASE
        WHEN i % 7 = 0 THEN accepted_at + interval '2 hours'
        WHEN i % 5 <> 0 THEN accepted_at + interval '1 hour' END) AS wrong_registered,
    count(*) FILTER (WHERE answered_at IS DISTINCT FROM CASE
        WHEN i % 7 = 0 THEN accepted_at + interval '2 hours'
        WHEN i % 5 <> 0 AND i % 3 = 0 THEN accepted_at + interval '1 day' END) AS wrong_answered,
    count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
    sum(version::text::bigint) AS versions
FROM (SELECT d.*, d.xmin AS version, substr(d.id::text, 25)::int AS i
      FROM exchange.delivery d) d
"""


async def test_the_copies_stored_before_get_their_due_date_answer_and_registration(
    services: SuiteServices, tmp_path: Path
) -> None:
    url = await postgres.recreate_database(services.database_url, "docaxis_report_backfill")
    conn = await asyncpg.connect(url)
    try:
        await migrate_before(conn, BACKFILLED, tmp_path)
        await conn.execute(BEFORE)
        # It first (the later ones after it).
        assert (await postgres.apply_migrations(conn, "exchange", EXCHANGE))[:1] == [BACKFILLED]
        kept = await conn.fetchrow(KEPT)
        assert kept is not None
        assert (kept["wrong_due"], kept["wrong_registered"], kept["wrong_answered"]) == (0, 0, 0)
        assert kept["answered"] == 357 + 571  # the 02s, and the 06s
        # Again, as an interrupted migration runs again: no copy written.
        for statement in postgres.statements((EXCHANGE / BACKFILLED).read_text("utf-8")):
            await conn.execute(statement)
        again = await conn.fetchrow(KEPT)
        assert again is not None
        assert again["versions"] == kept["versions"]
    finally:
        await conn.close()


# Six documents with a copy each, stored by a process of the previous version after the
# migration (no due date kept with the copy), every other one due four days before it; one of
# them (D5) stored a day and more after the migration (past the upgrade's window).
AFTER = """
INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
    business_type, header, submitted_at)
SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'D' || i, 'A001', 'c' || i,
    'f' || i, 0, jsonb_build_object('due_date',
        CASE WHEN i % 2 = 1 THEN to_char($1::timestamptz - interval '4 days', 'YYYY-MM-DD') END),
    $1::timestamptz + i * interval '1 minute'
FROM generate_series(1, 6) i;
INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient, recipient, state,
    accepted_at)
SELECT ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid,
    ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 0, 'A002', 'A002', 'queued',
    $1::timestamptz + CASE WHEN i = 5 THEN interval '25 hours' ELSE i * interval '1 minute' END
FROM generate_series(1, 6) i;
"""


async def test_copies_stored_without_their_due_date_after_the_migration_get_it_within_a_day(
    services: SuiteServices,
) -> None:
    """The copies a process of the previous version stored during the upgrade become overdue
    once the due-date job has walked them (a batch at a time, from where the walk is kept); one
    stored past the window is not walked, and the walk then stops."""
    url = await postgres.recreate_database(services.database_url, "docaxis_copy_due_dates")
    await migrate(url)
    conn = await asyncpg.connect(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=1)
    try:
        store = PostgresReportStore(pool)
        began = await conn.fetchval("SELECT began_at FROM exchange.copy_due_date_walk")
        for statement in postgres.statements(AFTER):
            await conn.execute(statement, began)
        later = began + dt.timedelta(days=2)

        async def overdue() -> list[str]:
            return [c.document_id for c in await store.overdue(None, later, 100)]

        assert await overdue() == []
        repair = DueDateRepair(store, batch=2, clock=lambda: later)
        assert [await repair.run() for _ in range(2)] == [1, 1]
        # Another process (or this one restarted) goes on from where the walk is.
        other = DueDateRepair(store, batch=2, clock=lambda: later)
        assert [await other.run() for _ in range(2)] == [0, 0]
        assert await overdue() == ["D1", "D3"]
        assert await conn.fetchval(
            "SELECT walked_to = began_at + interval '1 day' FROM exchange.copy_due_date_walk"
        )
    finally:
        await pool.close()
        await conn.close()
