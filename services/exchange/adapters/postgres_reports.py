"""Deadline and statistics reports over the exchange's tables (Vietnam time, UTC+7)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from services.common import postgres
from services.exchange.service_layer.report_ports import (
    AgencyMonth,
    OverdueCopy,
    StalledCopy,
    StalledStep,
)

# Vietnam has no daylight saving: a fixed offset, without relying on the server's tz database.
# Planned for the values given (postgres.planned_for_values): an empty $3 is every agency, and the
# window may be an hour or a year. The pools' generic plan could take neither into account: it
# priced the window at the planner's default for a range of parameters (0.5 %) and read the whole
# window's copies and documents by their times to keep one agency's (6,498 rows where a custom
# plan reads that agency's 364; tests/integration/test_adapter_plans.py). A document's recalled
# copies and a copy's 02 are probed one by one (OFFSET 0: never hashed): the planner read every
# copy ever recorded to hash the recalled ones (young statistics), and every status to hash the
# 02s (current ones), for an hour's report too.
_MONTHLY_SQL = """
WITH copies AS (
    SELECT d.recipient AS agency, d.accepted_at, d.state,
        (doc.header ->> 'due_date')::date AS due_date,
        (SELECT min(s.occurred_at) FROM exchange.delivery_status s
         WHERE s.delivery_id = d.id AND s.code = '01') AS arrived_at,
        (SELECT min(s.occurred_at) FROM exchange.delivery_status s
         WHERE s.delivery_id = d.id AND s.code = '03') AS registered_at,
        (SELECT min(s.occurred_at) FROM exchange.delivery_status s
         WHERE s.delivery_id = d.id AND s.code = '06') AS completed_at,
        EXISTS (SELECT 1 FROM exchange.delivery_status s
                WHERE s.delivery_id = d.id AND s.code = '02' OFFSET 0) AS rejected
    FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
    WHERE d.accepted_at >= $1 AND d.accepted_at < $2
        AND (cardinality($3::text[]) = 0 OR d.recipient = ANY($3::text[]))
),
received AS (
    SELECT agency,
        count(*) AS received,
        count(*) FILTER (WHERE rejected) AS rejected,
        count(*) FILTER (WHERE completed_at IS NOT NULL) AS completed,
        count(*) FILTER (WHERE due_date IS NOT NULL AND NOT rejected AND state <> 'withdrawn')
            AS with_due_date,
        count(*) FILTER (
            WHERE due_date IS NOT NULL AND NOT rejected AND state <> 'withdrawn'
            AND completed_at < ((due_date + 1)::timestamp - interval '7 hours') AT TIME ZONE 'UTC'
        ) AS completed_on_time,
        count(*) FILTER (
            WHERE ((arrived_at AT TIME ZONE 'UTC') + interval '7 hours')::date
                = ((accepted_at AT TIME ZONE 'UTC') + interval '7 hours')::date
        ) AS arrived_same_day,
        count(*) FILTER (
            WHERE ((registered_at AT TIME ZONE 'UTC') + interval '7 hours')::date
                = ((arrived_at AT TIME ZONE 'UTC') + interval '7 hours')::date
        ) AS registered_same_day
    FROM copies GROUP BY agency
),
sent AS (
    SELECT doc.sender AS agency, count(*) AS sent,
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM exchange.delivery d
            WHERE d.document_uuid = doc.uuid AND d.recall_state IN ('agreed', 'withdrawn')
            OFFSET 0
        ) AND NOT EXISTS (
            -- Copies withdrawn because an update or replacement superseded them.
            SELECT 1 FROM exchange.document later
            WHERE later.business_type IN (2, 3) AND later.sender = doc.sender
                AND later.header -> 'response_for' ? doc.document_id
        )) AS recalled
    FROM exchange.document doc
    WHERE doc.submitted_at >= $1 AND doc.submitted_at < $2
        AND (cardinality($3::text[]) = 0 OR doc.sender = ANY($3::text[]))
    GROUP BY doc.sender
)
SELECT coalesce(r.agency, s.agency) AS agency,
    coalesce(s.sent, 0) AS sent, coalesce(s.recalled, 0) AS recalled,
    coalesce(r.received, 0) AS received, coalesce(r.rejected, 0) AS rejected,
    coalesce(r.completed, 0) AS completed, coalesce(r.with_due_date, 0) AS with_due_date,
    coalesce(r.completed_on_time, 0) AS completed_on_time,
    coalesce(r.arrived_same_day, 0) AS arrived_same_day,
    coalesce(r.registered_same_day, 0) AS registered_same_day
FROM received r FULL JOIN sent s ON s.agency = r.agency
ORDER BY 1
"""

# The copies a report is about: of every agency ($1 NULL) or one agency's, received or sent
# (its copies and its documents'). They come from the copies the report looks for, kept open on
# the copy (migration 0038): not answered (overdue: delivery_answer_due) or not registered
# (stalled: delivery_registration), or answered / registered after the report's time (an older
# report's); each with its document, probed. The reports read every copy with a due date, or
# every acknowledged copy, with its document and statuses (the hub's history): an agency's read
# its copies and documents ever, every agency's the whole hub. Read so, an agency's report reads
# the hub's open copies and keeps its own; its statement's plan is every agency's. Whether a
# status answered the copy by the report's time is still probed (OFFSET 0: never hashed, as
# before): a copy whose status a process of the previous version recorded during a rolling
# upgrade has no time kept, and stays a candidate that the probe drops.
_AGENCY = "($1::text IS NULL OR d.recipient = $1 OR doc.sender = $1)"

# $1: the agency (NULL: every agency), $2: the report's time, $3: how many. A copy's 02 or 06 is
# probed copy by copy (OFFSET 0): as an anti join, on young statistics, the planner read
# one_status_event whole, every copy's statuses, to hash the 02s and 06s (the same in
# _STALLED_SQL for the 02s and 03s).
_OVERDUE_SQL = f"""
SELECT d.id, d.document_uuid, doc.document_id, doc.header ->> 'subject' AS subject, doc.sender,
    d.recipient, d.due_date, d.accepted_at
FROM (
    SELECT id, document_uuid, recipient, due_date, accepted_at FROM exchange.delivery
    WHERE due_date IS NOT NULL AND state NOT IN ('withdrawn', 'failed') AND answered_at IS NULL
    UNION ALL
    SELECT id, document_uuid, recipient, due_date, accepted_at FROM exchange.delivery
    WHERE due_date IS NOT NULL AND state NOT IN ('withdrawn', 'failed') AND answered_at > $2
) d
JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE {_AGENCY}
    AND d.accepted_at <= $2
    AND (d.due_date + 1)::timestamp - interval '7 hours' <= $2 AT TIME ZONE 'UTC'
    AND NOT EXISTS (
        SELECT 1 FROM exchange.delivery_status s
        WHERE s.delivery_id = d.id AND s.code IN ('02', '06') AND s.occurred_at <= $2
        OFFSET 0
    )
ORDER BY d.due_date, doc.document_id, d.recipient
LIMIT $3
"""  # noqa: S608 - constants only


# Vietnam time is UTC+7 with no daylight saving, as in the queries above. A copy is waiting for
# its 01 (state accepted/queued/pushed: 01 is recorded when the DMS acknowledges; the copies
# waiting, delivery_pending, bounded by the backlog: all of them, OFFSET 0 keeping the report's
# time from being a condition on the index that leaves its first column, the recipient, free) or,
# once acknowledged, for its 03 (or 02).
# The registration deadline is the end of the Vietnam day of the 01, moved from Saturday or
# Sunday to the end of the following Monday. $1: the agency, $2: the report's time, $3: the
# grace of a copy waiting for its 01, $4: how many.
_STALLED_SQL = f"""
WITH scope AS (
    SELECT d.id, d.document_uuid, doc.document_id, doc.header ->> 'subject' AS subject,
        doc.sender, d.recipient, d.state, d.accepted_at
    FROM (
        (SELECT id, document_uuid, recipient, state, accepted_at FROM exchange.delivery
         WHERE state IN ('accepted', 'queued', 'pushed') OFFSET 0)
        UNION ALL
        SELECT id, document_uuid, recipient, state, accepted_at FROM exchange.delivery
        WHERE state = 'acknowledged' AND registered_at IS NULL
        UNION ALL
        SELECT id, document_uuid, recipient, state, accepted_at FROM exchange.delivery
        WHERE state = 'acknowledged' AND registered_at > $2
    ) d
    JOIN exchange.document doc ON doc.uuid = d.document_uuid
    WHERE d.accepted_at <= $2 AND {_AGENCY}
),
arrived AS (
    SELECT s.*, first.occurred_at AS arrived_at,
        ((first.occurred_at AT TIME ZONE 'UTC') + interval '7 hours')::date AS arrival_day
    FROM scope s
    CROSS JOIN LATERAL (
        SELECT min(a.occurred_at) AS occurred_at FROM exchange.delivery_status a
        WHERE a.delivery_id = s.id AND a.code = '01' AND a.occurred_at <= $2
    ) first
    WHERE s.state = 'acknowledged' AND first.occurred_at IS NOT NULL
        AND NOT EXISTS (
            SELECT 1 FROM exchange.delivery_status r
            WHERE r.delivery_id = s.id AND r.code IN ('02', '03') AND r.occurred_at <= $2
            OFFSET 0
        )
),
stalled AS (
    SELECT id, document_uuid, document_id, subject, sender, recipient, 'not_arrived' AS step,
        accepted_at AS waiting_since, accepted_at + $3::interval AS overdue_from
    FROM scope
    WHERE state IN ('accepted', 'queued', 'pushed')
    UNION ALL
    SELECT id, document_uuid, document_id, subject, sender, recipient, 'not_registered',
        arrived_at,
        ((arrival_day + CASE extract(isodow FROM arrival_day) WHEN 6 THEN 3 WHEN 7 THEN 2
                                                               ELSE 1 END)::timestamp
            - interval '7 hours') AT TIME ZONE 'UTC'
    FROM arrived
)
SELECT * FROM stalled
WHERE overdue_from <= $2
ORDER BY overdue_from, document_id, recipient
LIMIT $4
"""  # noqa: S608 - constants only


def _reported(row: asyncpg.Record) -> dict[str, str]:
    """The ReportedCopy fields of an overdue or stalled row."""
    return {
        "delivery_id": str(row["id"]),
        "document_uuid": str(row["document_uuid"]),
        "document_id": row["document_id"],
        "subject": row["subject"],
        "sender": row["sender"],
        "recipient": row["recipient"],
    }


# A batch of the walk of the copies a process of the previous version may have stored without
# their due date (service_layer/copy_due_dates.py), from where it was (copy_due_date_walk, locked:
# two processes walk one batch after the other) to the earlier of $1 and the end of the upgrade's
# window ($2 after its start): the first $3 copies in the order of delivery_accepted, and every
# copy accepted at the same time as the last of them (a circular's copies share their time), with
# the due date of those without one whose document has one; the walk moves to the last of them
# (to the end, when there were fewer). Ordered by the index's only column: ordered by
# (accepted_at, id), the plan made on empty tables read the whole range and sorted it (1,616 rows
# for a batch of 20 in tests/integration/test_adapter_plans.py); the batch's range is probed
# from the edge found (OFFSET 0: as a join of the walk's row, the plan made on empty tables read
# 8,012). No row: no walk (done).
_DATE_COPIES_SQL = """
WITH walk AS MATERIALIZED (
    SELECT walked_to, least($1::timestamptz, began_at + $2::interval) AS until,
        began_at + $2::interval AS window_end
    FROM exchange.copy_due_date_walk
    FOR UPDATE
),
edge AS MATERIALIZED (
    SELECT count(*) AS found, max(f.accepted_at) AS upto
    FROM walk CROSS JOIN LATERAL (
        SELECT accepted_at FROM exchange.delivery
        WHERE accepted_at > walk.walked_to AND accepted_at < walk.until
        ORDER BY accepted_at LIMIT $3
    ) f
),
batch AS MATERIALIZED (
    SELECT d.id, d.document_uuid, d.due_date
    FROM walk CROSS JOIN edge CROSS JOIN LATERAL (
        SELECT id, document_uuid, due_date FROM exchange.delivery
        WHERE accepted_at > walk.walked_to AND accepted_at <= edge.upto
        OFFSET 0
    ) d
),
dated AS (
    UPDATE exchange.delivery d SET due_date = (doc.header ->> 'due_date')::date
    FROM batch b JOIN exchange.document doc ON doc.uuid = b.document_uuid
    WHERE d.id = b.id AND b.due_date IS NULL AND doc.header ->> 'due_date' IS NOT NULL
    RETURNING d.id
),
step AS (
    SELECT CASE WHEN edge.found < $3 THEN walk.until ELSE edge.upto END AS walked_to,
        walk.window_end
    FROM walk CROSS JOIN edge
),
moved AS (
    UPDATE exchange.copy_due_date_walk w SET walked_to = step.walked_to FROM step
    WHERE step.walked_to > w.walked_to
)
SELECT (SELECT count(*) FROM dated) AS dated, walked_to >= window_end AS done FROM step
"""


class PostgresReportStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def date_copies(
        self, before: dt.datetime, window: dt.timedelta, limit: int
    ) -> tuple[int, bool]:
        row = await self._pool.fetchrow(_DATE_COPIES_SQL, before, window, limit)
        if row is None:
            return 0, True
        return row["dated"], row["done"]

    async def monthly(
        self, start: dt.datetime, end: dt.datetime, agencies: Sequence[str]
    ) -> list[AgencyMonth]:
        async with postgres.planned_for_values(self._pool) as conn:
            rows = await conn.fetch(_MONTHLY_SQL, start, end, list(agencies))
        return [AgencyMonth(**dict(row)) for row in rows]

    async def overdue(
        self, agency: str | None, as_of: dt.datetime, limit: int
    ) -> list[OverdueCopy]:
        rows = await self._pool.fetch(_OVERDUE_SQL, agency, as_of, limit)
        return [
            OverdueCopy(**_reported(r), due_date=r["due_date"], accepted_at=r["accepted_at"])
            for r in rows
        ]

    async def stalled(
        self, agency: str | None, as_of: dt.datetime, arrival_grace: dt.timedelta, limit: int
    ) -> list[StalledCopy]:
        rows = await self._pool.fetch(_STALLED_SQL, agency, as_of, arrival_grace, limit)
        return [
            StalledCopy(
                **_reported(r),
                step=StalledStep(r["step"]),
                waiting_since=r["waiting_since"],
                overdue_from=r["overdue_from"],
            )
            for r in rows
        ]
