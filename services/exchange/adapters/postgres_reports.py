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

# The copies a report is about: every agency's, or one agency's, received or sent. An agency's
# are its copies (delivery_inbox) and its documents' (document_sender_submitted), each probed
# by its index: as one join with `$1 IS NULL OR d.recipient = $1 OR doc.sender = $1`, no index
# has both sides of the OR, and in both plan modes an agency's report read every copy of the
# hub and its document (6,300 rows in tests/integration/test_adapter_plans.py, where A007's are
# a few hundred). A document's copies are probed document by document (OFFSET 0 keeps the
# report's conditions out of the probe): the generic plan priced `accepted_at <= $2` at a third
# of the copies and joined the sender's documents to every copy accepted before the report's time
# (3,778 rows read). A copy an agency sent itself is its recipient's branch only.
_COPY_COLUMNS = """d.id, d.document_uuid, d.recipient, d.state, d.accepted_at, doc.document_id,
        doc.sender, doc.header"""
_EVERY_AGENCYS_COPIES = f"""
    SELECT {_COPY_COLUMNS}
    FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid"""  # noqa: S608 - constants only
_AN_AGENCYS_COPIES = f"""
    SELECT {_COPY_COLUMNS}
    FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
    WHERE d.recipient = $1
    UNION ALL
    SELECT {_COPY_COLUMNS}
    FROM exchange.document doc
    CROSS JOIN LATERAL (
        SELECT id, document_uuid, recipient, state, accepted_at FROM exchange.delivery
        WHERE document_uuid = doc.uuid AND recipient <> $1 OFFSET 0
    ) d
    WHERE doc.sender = $1"""  # noqa: S608 - constants only

# {copies}: one of the above; {as_of}, {limit}: their placeholders (after the agency's, if any).
# A copy's 02 or 06 is probed copy by copy (OFFSET 0): as an anti join, on young statistics, the
# planner read one_status_event whole, every copy's statuses, to hash the 02s and 06s (the same
# in _STALLED_SQL for the 02s and 03s).
_OVERDUE_SQL = """
SELECT c.id, c.document_uuid, c.document_id, c.header ->> 'subject' AS subject, c.sender,
    c.recipient, (c.header ->> 'due_date')::date AS due_date, c.accepted_at
FROM ({copies}) c
WHERE c.header ->> 'due_date' IS NOT NULL
    AND c.accepted_at <= {as_of}
    AND c.state NOT IN ('withdrawn', 'failed')
    AND ((c.header ->> 'due_date')::date + 1)::timestamp - interval '7 hours'
        <= {as_of} AT TIME ZONE 'UTC'
    AND NOT EXISTS (
        SELECT 1 FROM exchange.delivery_status s
        WHERE s.delivery_id = c.id AND s.code IN ('02', '06') AND s.occurred_at <= {as_of}
        OFFSET 0
    )
ORDER BY due_date, c.document_id, c.recipient
LIMIT {limit}
"""
_OVERDUE_OF_EVERY_AGENCY_SQL = _OVERDUE_SQL.format(
    copies=_EVERY_AGENCYS_COPIES, as_of="$1", limit="$2"
)
_OVERDUE_OF_AN_AGENCY_SQL = _OVERDUE_SQL.format(copies=_AN_AGENCYS_COPIES, as_of="$2", limit="$3")


# Vietnam time is UTC+7 with no daylight saving, as in the queries above. A copy is waiting for
# its 01 (state accepted/queued/pushed: 01 is recorded when the DMS acknowledges) or, once
# acknowledged, for its 03 (or 02). The registration deadline is the end of the Vietnam day of the
# 01, moved from Saturday or Sunday to the end of the following Monday. {copies}, {as_of},
# {grace}, {limit}: as in _OVERDUE_SQL.
_STALLED_SQL = """
WITH scope AS (
    SELECT c.id, c.document_uuid, c.document_id, c.header ->> 'subject' AS subject,
        c.sender, c.recipient, c.state, c.accepted_at
    FROM ({copies}) c
    WHERE c.accepted_at <= {as_of}
        AND c.state IN ('accepted', 'queued', 'pushed', 'acknowledged')
),
arrived AS (
    SELECT s.*, first.occurred_at AS arrived_at,
        ((first.occurred_at AT TIME ZONE 'UTC') + interval '7 hours')::date AS arrival_day
    FROM scope s
    CROSS JOIN LATERAL (
        SELECT min(a.occurred_at) AS occurred_at FROM exchange.delivery_status a
        WHERE a.delivery_id = s.id AND a.code = '01' AND a.occurred_at <= {as_of}
    ) first
    WHERE s.state = 'acknowledged' AND first.occurred_at IS NOT NULL
        AND NOT EXISTS (
            SELECT 1 FROM exchange.delivery_status r
            WHERE r.delivery_id = s.id AND r.code IN ('02', '03') AND r.occurred_at <= {as_of}
            OFFSET 0
        )
),
stalled AS (
    SELECT id, document_uuid, document_id, subject, sender, recipient, 'not_arrived' AS step,
        accepted_at AS waiting_since, accepted_at + {grace}::interval AS overdue_from
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
WHERE overdue_from <= {as_of}
ORDER BY overdue_from, document_id, recipient
LIMIT {limit}
"""
_STALLED_OF_EVERY_AGENCY_SQL = _STALLED_SQL.format(
    copies=_EVERY_AGENCYS_COPIES, as_of="$1", grace="$2", limit="$3"
)
_STALLED_OF_AN_AGENCY_SQL = _STALLED_SQL.format(
    copies=_AN_AGENCYS_COPIES, as_of="$2", grace="$3", limit="$4"
)


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


class PostgresReportStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def monthly(
        self, start: dt.datetime, end: dt.datetime, agencies: Sequence[str]
    ) -> list[AgencyMonth]:
        async with postgres.planned_for_values(self._pool) as conn:
            rows = await conn.fetch(_MONTHLY_SQL, start, end, list(agencies))
        return [AgencyMonth(**dict(row)) for row in rows]

    async def overdue(
        self, agency: str | None, as_of: dt.datetime, limit: int
    ) -> list[OverdueCopy]:
        if agency is None:
            rows = await self._pool.fetch(_OVERDUE_OF_EVERY_AGENCY_SQL, as_of, limit)
        else:
            rows = await self._pool.fetch(_OVERDUE_OF_AN_AGENCY_SQL, agency, as_of, limit)
        return [
            OverdueCopy(**_reported(r), due_date=r["due_date"], accepted_at=r["accepted_at"])
            for r in rows
        ]

    async def stalled(
        self, agency: str | None, as_of: dt.datetime, arrival_grace: dt.timedelta, limit: int
    ) -> list[StalledCopy]:
        if agency is None:
            rows = await self._pool.fetch(_STALLED_OF_EVERY_AGENCY_SQL, as_of, arrival_grace, limit)
        else:
            rows = await self._pool.fetch(
                _STALLED_OF_AN_AGENCY_SQL, agency, as_of, arrival_grace, limit
            )
        return [
            StalledCopy(
                **_reported(r),
                step=StalledStep(r["step"]),
                waiting_since=r["waiting_since"],
                overdue_from=r["overdue_from"],
            )
            for r in rows
        ]
