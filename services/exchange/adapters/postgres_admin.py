"""The administrators' queries and the audited resend of dead letters, over the exchange's
tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from services.common import postgres, tracing
from services.exchange.adapters.postgres import (
    OUTBOX_CHANNEL,
    stage_delivery_messages,
    stage_ledger_events,
    trace_from_json,
)
from services.exchange.adapters.postgres_copies import (
    forget_failure,
    lock_copies,
    save_copies,
    stored_failure,
)
from services.exchange.adapters.postgres_statements import Parameters
from services.exchange.adapters.receipt_chains import ReceiptChains
from services.exchange.domain import delivery
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.statuses import StatusCode
from services.exchange.service_layer.admin_ports import (
    Administrator,
    Arrival,
    CopySummary,
    DeadLetterCopy,
    DocumentHops,
    DocumentQuery,
    DocumentSummary,
    FoundDocument,
    HandOver,
    Resend,
    StatusBack,
)
from services.exchange.service_layer.lifecycle_ports import PageCursor

# What _summary reads, as every query here names the document `doc`.
_SUMMARY_COLUMNS = """doc.uuid, doc.document_id, doc.header ->> 'code_number' AS code_number,
    doc.header ->> 'code_notation' AS code_notation, doc.header ->> 'subject' AS subject,
    doc.sender, doc.submitted_at, doc.business_type"""

# A copy's latest status is the last of statuses.ordered: by the reporter's timestamp, then by
# code (the enum's rank is the codes' own order, 01 … 16), then by when it was recorded.
_LATEST_STATUS = """(SELECT s.code FROM exchange.delivery_status s WHERE s.delivery_id = d.id
     ORDER BY s.occurred_at DESC, s.code DESC, s.recorded_at DESC LIMIT 1)"""

# Every filter is optional ($n IS NULL); the planner sees the values (custom plans: run in
# postgres.planned_for_values), so the indexes of migration 0007 serve whichever are given. The
# copy filters are checked document by document, newest first (OFFSET 0: never hashed): the
# planner hashed every copy of a state, walking delivery_inbox whole, even for one sender's
# documents (2,896-3,322 rows read for a page of A007's; every latest status, 6,622 rows, for
# the 01s; tests/integration/test_adapter_plans.py). A recipient's documents are those of its
# copies ({of_recipient}: a semi join at the WHERE's top level, where the planner can start from
# them; under an OR it was a filter on a walk of every document, 3,015 rows for 15).
_SEARCH_SQL = f"""
SELECT {_SUMMARY_COLUMNS}
FROM exchange.document doc
WHERE ($1::text IS NULL OR doc.document_id = $1)
    AND ($2::text IS NULL OR doc.header ->> 'code_number' = $2)
    AND ($3::text IS NULL OR doc.header ->> 'code_notation' = $3)
    AND ($4::text IS NULL OR doc.sender = $4)
    AND ($5::timestamptz IS NULL OR doc.submitted_at >= $5)
    AND ($6::timestamptz IS NULL OR doc.submitted_at < $6)
    AND (($7::text IS NULL AND $8::text IS NULL{{no_state}}) OR EXISTS (
        SELECT 1 FROM exchange.delivery d
        WHERE d.document_uuid = doc.uuid
            AND ($7::text IS NULL OR d.recipient = $7 OR d.requested_recipient = $7)
            AND ($9::text IS NULL OR d.state = $9)
            AND ($8::text IS NULL OR $8 = {_LATEST_STATUS})
        OFFSET 0
    ))
    {{of_recipient}}
    {{of_state}}
    AND ($10::timestamptz IS NULL OR (doc.submitted_at, doc.uuid) < ($10, $11::uuid))
ORDER BY doc.submitted_at DESC, doc.uuid DESC
LIMIT $12
"""  # noqa: S608 - constant fragments
# The copies requested of the recipient that went to another (a successor after a merger) are
# in delivery_requested_elsewhere, whose predicate the second branch names; those that went to
# it are the first branch's (migration 0040).
_OF_RECIPIENT = """AND doc.uuid IN (
        SELECT document_uuid FROM exchange.delivery WHERE recipient = $7
        UNION ALL
        SELECT document_uuid FROM exchange.delivery
        WHERE requested_recipient = $7 AND requested_recipient <> recipient
    )"""
# A state of the copies that a partial index holds apart (delivery_pending, the live copies;
# delivery_dead_lettered; delivery_ended, the failed and the withdrawn): its documents are those
# of its copies ({of_state}), which the planner can start from when they are few, instead of
# walking every document newest first until a page has one (2,099-4,198 rows for the 30 copies
# accepted of the test's 3,300). The partial index's predicate is named, and the state itself in
# a form no index takes: delivery_inbox, whose state is its second column, was walked whole
# beside it (a BitmapAnd). The acknowledged are most copies: a walk finds a page at once
# (docs/perf/README.md, "The reads left unbounded").
_OF_LIVE_STATE = """AND doc.uuid IN (SELECT document_uuid FROM exchange.delivery
        WHERE state IN ('accepted', 'queued', 'pushed') AND state || '' = $9)"""
_OF_DEAD_LETTERS = """AND doc.uuid IN (SELECT document_uuid FROM exchange.delivery
        WHERE state = 'dead_lettered' AND state || '' = $9)"""
_OF_ENDED = """AND doc.uuid IN (SELECT document_uuid FROM exchange.delivery
        WHERE state IN ('failed', 'withdrawn') AND state || '' = $9)"""
_OF_STATE: dict[DeliveryState | None, str] = {
    DeliveryState.ACCEPTED: _OF_LIVE_STATE,
    DeliveryState.QUEUED: _OF_LIVE_STATE,
    DeliveryState.PUSHED: _OF_LIVE_STATE,
    DeliveryState.DEAD_LETTERED: _OF_DEAD_LETTERS,
    DeliveryState.FAILED: _OF_ENDED,
    DeliveryState.WITHDRAWN: _OF_ENDED,
}


def _search_sql(query: DocumentQuery) -> str:
    of_state = _OF_STATE.get(query.state, "")
    return _SEARCH_SQL.format(
        of_recipient="" if query.recipient is None else _OF_RECIPIENT,
        of_state=of_state,
        # The copies' EXISTS is for the state too unless {of_state} has it.
        no_state="" if of_state else " AND $9::text IS NULL",
    )


_COPIES_SQL = f"""
SELECT d.document_uuid, d.id, d.requested_recipient, d.recipient, d.state,
    {_LATEST_STATUS} AS latest_status
FROM exchange.delivery d
WHERE d.document_uuid = ANY($1::uuid[])
ORDER BY d.document_uuid, d.position
"""  # noqa: S608 - constant fragments


# The dead letters newest first, with the filters given only: under the pools' generic plans
# (postgres.PLANNER_SETTINGS) a `$n IS NULL OR …` filter or cursor is no index condition, and
# every page read every dead letter through delivery_dead_lettered to sort them (612 rows of the
# test's 306 dead letters for a page of 20; tests/integration/test_adapter_plans.py). An agency
# is the copy's recipient or its document's sender (stored with the dead letter): a page of each
# from its index (delivery_dead_letters_received, _sent; a copy an agency sent itself in the
# first only), merged; under one OR no index had both, and its pages read the hub's dead letters
# newest first until they held its own.
_DEAD_LETTER_COLUMNS = """d.id, d.requested_recipient, d.recipient, d.dead_letter_reason,
        d.dead_lettered_at, d.push_count, d.document_uuid, d.last_failure_reason,
        d.last_failure_detail"""


def _dead_letters_sql(
    p: Parameters, agency: str | None, after: PageCursor | None, limit: int, peer: str | None
) -> str:
    conditions = ["d.state = 'dead_lettered'"]
    if after is not None:
        at, item = p(after.created_at, "timestamptz"), p(uuid.UUID(after.item_id), "uuid")
        conditions.append(f"(d.dead_lettered_at, d.id) < ({at}, {item})")
    if peer is not None:
        conditions.append(f"d.via_hub = {p(peer, 'text')}")
    page = p(limit, "integer")
    if agency is None:
        source, where = "exchange.delivery d", " AND ".join(conditions)
    else:
        code = p(agency, "text")
        received = " AND ".join([*conditions, f"d.recipient = {code}"])
        sent = " AND ".join(
            [*conditions, f"d.dead_letter_sender = {code}", f"d.recipient <> {code}"]
        )
        source = f"""(
    (SELECT {_DEAD_LETTER_COLUMNS} FROM exchange.delivery d WHERE {received}
     ORDER BY d.dead_lettered_at DESC, d.id DESC LIMIT {page})
    UNION ALL
    (SELECT {_DEAD_LETTER_COLUMNS} FROM exchange.delivery d WHERE {sent}
     ORDER BY d.dead_lettered_at DESC, d.id DESC LIMIT {page})
) d"""  # noqa: S608 - placeholders and constant fragments only
        where = "TRUE"
    return f"""
SELECT d.id, d.requested_recipient, d.recipient, d.dead_letter_reason, d.dead_lettered_at,
    d.push_count, d.last_failure_reason, d.last_failure_detail, {_SUMMARY_COLUMNS}
FROM {source} JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE {where}
ORDER BY d.dead_lettered_at DESC, d.id DESC
LIMIT {page}
"""  # noqa: S608 - placeholders and constant fragments only


_RESENDS_SQL = """
SELECT delivery_id, resent_at, administrator_subject, administrator_serial, reason,
    dead_lettered_at, dead_letter_reason, push_count
FROM exchange.delivery_resend WHERE delivery_id = ANY($1::uuid[])
ORDER BY resent_at, id
"""


def _summary(row: asyncpg.Record) -> DocumentSummary:
    return DocumentSummary(
        document_uuid=str(row["uuid"]),
        document_id=row["document_id"],
        code_number=row["code_number"],
        code_notation=row["code_notation"],
        subject=row["subject"],
        sender=row["sender"],
        submitted_at=row["submitted_at"],
        business_type=BusinessType(row["business_type"]),
    )


def _resend(row: asyncpg.Record) -> Resend:
    return Resend(
        delivery_id=str(row["delivery_id"]),
        resent_at=row["resent_at"],
        administrator=Administrator(row["administrator_subject"], row["administrator_serial"]),
        reason=row["reason"],
        dead_lettered_at=row["dead_lettered_at"],
        dead_letter_reason=row["dead_letter_reason"],
        push_count=row["push_count"],
    )


# Statuses that came back from the next hub for copies handed over to it (13 is the sender's own
# recall request, which goes the other way).
_STATUSES_BACK_SQL = """
SELECT d.id, d.recipient, s.code, s.occurred_at, s.recorded_at AS at
FROM exchange.delivery_status s JOIN exchange.delivery d ON d.id = s.delivery_id
WHERE s.delivery_id = ANY($1::uuid[]) AND s.code <> '13'
ORDER BY s.occurred_at, s.id
"""

# The recipient's statuses going back to the previous hub: notices to the sender of a copy that
# came from a peer (a coalesced notice is handed back with the one it was folded into).
_STATUSES_HANDED_BACK_SQL = """
SELECT d.id, d.recipient, s.code, s.occurred_at,
    coalesce(n.acknowledged_at, folded.acknowledged_at) AS at
FROM exchange.notice n
JOIN exchange.delivery d ON d.id = n.delivery_id
JOIN exchange.delivery_status s ON s.id = n.status_row
LEFT JOIN exchange.notice folded ON folded.id = n.coalesced_into
WHERE n.delivery_id = ANY($1::uuid[]) AND n.kind = 'status' AND n.agency <> d.recipient
ORDER BY s.occurred_at, s.id
"""


def _statuses_back(rows: Sequence[asyncpg.Record]) -> dict[str, list[StatusBack]]:
    found: dict[str, list[StatusBack]] = {}
    for r in rows:
        found.setdefault(str(r["id"]), []).append(
            StatusBack(r["recipient"], StatusCode(r["code"]), r["occurred_at"], r["at"])
        )
    return found


class PostgresAdminStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # The hop receipts it shows, stored without their chain (adapters/receipt_chains.py).
        self._chains = ReceiptChains()

    async def search(
        self, query: DocumentQuery, after: PageCursor | None, limit: int
    ) -> list[FoundDocument]:
        async with postgres.planned_for_values(self._pool) as conn:
            documents = await conn.fetch(
                _search_sql(query),
                query.document_id,
                query.code_number,
                query.code_notation,
                query.sender,
                query.submitted_from,
                query.submitted_before,
                query.recipient,
                query.latest_status.value if query.latest_status else None,
                query.state.value if query.state else None,
                after.created_at if after else None,
                uuid.UUID(after.item_id) if after else None,
                limit,
            )
            if not documents:
                return []
            copies = await conn.fetch(_COPIES_SQL, [row["uuid"] for row in documents])
        by_document: dict[str, list[CopySummary]] = {}
        for row in copies:
            by_document.setdefault(str(row["document_uuid"]), []).append(
                CopySummary(
                    delivery_id=str(row["id"]),
                    requested_recipient=row["requested_recipient"],
                    effective_recipient=row["recipient"],
                    state=DeliveryState(row["state"]),
                    latest_status=StatusCode(row["latest_status"])
                    if row["latest_status"]
                    else None,
                )
            )
        return [
            FoundDocument(_summary(row), tuple(by_document.get(str(row["uuid"]), ())))
            for row in documents
        ]

    async def dead_letters(
        self, agency: str | None, after: PageCursor | None, limit: int, *, peer: str | None = None
    ) -> list[DeadLetterCopy]:
        p = Parameters()
        rows = await self._pool.fetch(_dead_letters_sql(p, agency, after, limit, peer), *p.values)
        return [
            DeadLetterCopy(
                delivery_id=str(row["id"]),
                document=_summary(row),
                requested_recipient=row["requested_recipient"],
                effective_recipient=row["recipient"],
                reason=row["dead_letter_reason"],
                dead_lettered_at=row["dead_lettered_at"],
                push_count=row["push_count"],
                cause=delivery.dead_letter_cause(row["dead_letter_reason"], stored_failure(row)),
            )
            for row in rows
        ]

    async def resend(
        self, delivery_id: str, administrator: Administrator, reason: str, now: dt.datetime
    ) -> Resend | None:
        key = uuid.UUID(delivery_id)
        async with self._pool.acquire() as conn, conn.transaction():
            # The row lock orders this against a concurrent resend or push of the same copy.
            row = (await lock_copies(conn, [key])).get(key)
            if row is None:
                return None
            decided = delivery.resend(
                row.ref,
                row.copy,
                administrator_serial=administrator.serial,
                administrator_subject=administrator.subject,
                reason=reason,
                now=now,
            )
            assert row.copy.dead_lettered_at is not None  # a dead letter has its time
            resend = Resend(
                delivery_id=delivery_id,
                resent_at=now,
                administrator=administrator,
                reason=reason,
                dead_lettered_at=row.copy.dead_lettered_at,
                dead_letter_reason=row.copy.dead_letter_reason,
                push_count=row.copy.push_count,
            )
            await save_copies(conn, {key: decided.copy})
            # The lock does not read the copy's last failed hand-over (it is NULL but after a
            # failed hand-over to a peer: postgres_copies.STORED_FAILURES_SQL); the statement
            # that forgets it changes nothing where there is none.
            if decided.copy.last_failure is None:
                await forget_failure(conn, key)
            await conn.execute(
                """
                INSERT INTO exchange.delivery_resend (delivery_id, resent_at,
                    administrator_subject, administrator_serial, reason, dead_lettered_at,
                    dead_letter_reason, push_count)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """,
                key,
                now,
                administrator.subject,
                administrator.serial,
                reason,
                resend.dead_lettered_at,
                resend.dead_letter_reason,
                resend.push_count,
            )
            # Back on the queued path: the relay publishes this outbox row.
            await stage_delivery_messages(
                conn, [(row.ref.document_uuid, row.ref.recipient, delivery_id)]
            )
            await stage_ledger_events(conn, decided.events)
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return resend

    async def trace_id(self, document_uuid: str) -> str:
        traceparent = await self._pool.fetchval(
            "SELECT traceparent FROM exchange.document WHERE uuid = $1", uuid.UUID(document_uuid)
        )
        return tracing.trace_id_of(traceparent)

    async def hops(self, document_uuid: str) -> DocumentHops | None:
        key = uuid.UUID(document_uuid)
        async with self._pool.acquire() as conn:
            document = await conn.fetchrow(
                "SELECT coalesce(origin_uuid, uuid) AS origin, trace::text AS trace "
                "FROM exchange.document WHERE uuid = $1",
                key,
            )
            outgoing = await conn.fetch(
                "SELECT id, recipient, via_hub, state, acknowledged_at, hop_receipt, "
                "last_failure_reason, last_failure_detail "
                "FROM exchange.delivery WHERE document_uuid = $1 AND via_hub IS NOT NULL "
                "ORDER BY position",
                key,
            )
            incoming = await conn.fetch(
                "SELECT f.delivery_id, f.recipient, f.from_hub, f.accepted_at, f.hop_receipt "
                "FROM exchange.forwarded_copy f JOIN exchange.delivery d ON d.id = f.delivery_id "
                "WHERE d.document_uuid = $1 ORDER BY d.position",
                key,
            )
            if document is None or not (outgoing or incoming):
                return None
            came_back = _statuses_back(
                await conn.fetch(_STATUSES_BACK_SQL, [r["id"] for r in outgoing])
            )
            handed_back = _statuses_back(
                await conn.fetch(_STATUSES_HANDED_BACK_SQL, [r["delivery_id"] for r in incoming])
            )
            # As received (outgoing) or handed out (incoming): the bytes the ledger hashed.
            signed = [await self._chains.served(conn, r["hop_receipt"]) for r in incoming]
            received = [await self._chains.served(conn, r["hop_receipt"] or b"") for r in outgoing]
        return DocumentHops(
            origin_document_uuid=str(document["origin"]),
            trace=trace_from_json(document["trace"]),
            arrivals=tuple(
                Arrival(
                    delivery_id=str(r["delivery_id"]),
                    recipient=r["recipient"],
                    from_hub=r["from_hub"],
                    accepted_at=r["accepted_at"],
                    receipt=receipt,
                    statuses_back=tuple(handed_back.get(str(r["delivery_id"]), ())),
                )
                for r, receipt in zip(incoming, signed, strict=True)
            ),
            hand_overs=tuple(
                HandOver(
                    delivery_id=str(r["id"]),
                    recipient=r["recipient"],
                    next_hub=r["via_hub"],
                    state=DeliveryState(r["state"]),
                    # Acknowledged here once the next hub stored it (with its receipt).
                    handed_over_at=r["acknowledged_at"] if r["hop_receipt"] else None,
                    receipt=receipt,
                    statuses_back=tuple(came_back.get(str(r["id"]), ())),
                    # Once handed over, an earlier failure is history.
                    last_failure=None if r["hop_receipt"] else stored_failure(r),
                )
                for r, receipt in zip(outgoing, received, strict=True)
            ),
        )

    async def resends(self, delivery_ids: Sequence[str]) -> list[Resend]:
        rows = await self._pool.fetch(_RESENDS_SQL, [uuid.UUID(d) for d in delivery_ids])
        return [_resend(row) for row in rows]
