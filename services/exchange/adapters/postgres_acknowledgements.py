"""The writes of an acknowledgement group's transaction as ONE statement: after the copies' lock
(which reads what the notice decision needs), what the rules decided (the copies with their
transport receipts, the 01s, the status notices with their outbox rows, the notices they
coalesce, the ledger events and the NOTIFYs) goes in one round trip, where each was a statement
of its own and a round trip one after the other (eight in all), each waiting for the event loop
on a busy process. Data-modifying WITH clauses run to completion whatever the main query reads;
the foreign keys between them (a notice's 01, a coalesced notice's successor) are checked at the
statement's end, and none of them sees the rows another inserts, so each is given what it needs
(the 01s' row ids come from their clause's RETURNING)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from docaxis.exchange.v1 import events_pb2

from services.common.postgres import Conn
from services.exchange.adapters.postgres_copies import save_sql
from services.exchange.adapters.postgres_statements import Parameters, ledger_events_sql
from services.exchange.adapters.rabbit import NOTICE_MESSAGE_TYPE
from services.exchange.domain.delivery import Copy, LedgerEvent
from services.exchange.domain.statuses import StatusEntry


@dataclass(frozen=True, slots=True)
class StatusNotice:
    """A status notice to store: its id, the agency it is for, and its copy (whose 01 of this
    statement it carries, or whose notice it coalesces)."""

    notice_id: uuid.UUID
    agency: str
    delivery_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class AcknowledgementWrites:
    """What one acknowledgement group's transaction writes, as decided."""

    # The copies as decided, and the transport receipts to store with them.
    copies: Mapping[uuid.UUID, Copy]
    receipts: Mapping[uuid.UUID, bytes]
    # The 01s of first acknowledgements (one per copy at most).
    arrivals: Sequence[tuple[uuid.UUID, StatusEntry]]
    # Each 01's notice, unless suppressed; those that coalesce the copy's unhanded notices.
    notices: Sequence[StatusNotice]
    coalescing: Sequence[StatusNotice]
    now: dt.datetime
    events: Sequence[LedgerEvent]
    # (channel, payload) of every NOTIFY, in order (delivered at commit).
    notifications: Sequence[tuple[str, str]]

    @property
    def empty(self) -> bool:
        return not (self.copies or self.receipts or self.events or self.notifications)


async def write_acknowledgements(conn: Conn, writes: AcknowledgementWrites) -> None:
    """Every write of `writes`, in the caller's transaction, as one statement."""
    if writes.empty:
        return
    p = Parameters()
    saved = save_sql(p, writes.copies, writes.receipts)
    arrivals = _arrivals_sql(p, writes.arrivals)
    hops = _hops_sql(p, writes.notices)
    notices = _notices_sql(p, writes.now)
    messages = _messages_sql(p, writes.notices)
    coalesced = coalesced_sql(p, writes.coalescing, writes.now)
    events = ledger_events_sql(p, writes.events)
    channels = p([channel for channel, _ in writes.notifications], "text[]")
    payloads = p([payload for _, payload in writes.notifications], "text[]")
    await conn.execute(
        f"""
        WITH saved AS ({saved}),
        arrivals AS ({arrivals} RETURNING id, delivery_id),
        hops AS ({hops}),
        notices AS ({notices} RETURNING id),
        messages AS ({messages}),
        coalesced AS ({coalesced}),
        events AS ({events})
        SELECT pg_notify(u.channel, u.payload)
        FROM unnest({channels}, {payloads}) WITH ORDINALITY AS u(channel, payload, n)
        ORDER BY u.n
        """,  # noqa: S608 - placeholders and constants only
        *p.values,
    )


def _arrivals_sql(p: Parameters, arrivals: Sequence[tuple[uuid.UUID, StatusEntry]]) -> str:
    return f"""
        INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at,
            recorded_at, description, staff, reported_by)
        SELECT u.delivery_id, u.status_id, u.code, u.occurred_at, u.recorded_at, '', '{{}}',
            u.reported_by
        FROM unnest({p([key for key, _ in arrivals], "uuid[]")},
            {p([entry.report.status_id for _, entry in arrivals], "text[]")},
            {p([entry.code.value for _, entry in arrivals], "text[]")},
            {p([entry.occurred_at for _, entry in arrivals], "timestamptz[]")},
            {p([entry.recorded_at for _, entry in arrivals], "timestamptz[]")},
            {p([entry.reported_by for _, entry in arrivals], "text[]")})
            AS u(delivery_id, status_id, code, occurred_at, recorded_at, reported_by)"""  # noqa: S608 - placeholders and constants only


def _hops_sql(p: Parameters, notices: Sequence[StatusNotice]) -> str:
    """Each notice with its hop, as stage_notices routes it (an acknowledgement's 01 goes to the
    sender, or back along the hop its document came by), and its document's trace: read once,
    for the notice (its via_hub, which ListPeers counts) and its outbox row."""
    return f"""
        SELECT u.id, u.agency, u.delivery_id, doc.traceparent,
            CASE WHEN u.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END AS via_hub
        FROM unnest({p([n.notice_id for n in notices], "uuid[]")},
            {p([n.agency for n in notices], "text[]")},
            {p([n.delivery_id for n in notices], "uuid[]")}) AS u(id, agency, delivery_id)
        JOIN exchange.delivery d ON d.id = u.delivery_id
        JOIN exchange.document doc ON doc.uuid = d.document_uuid"""  # noqa: S608 - placeholders and constants only


def _notices_sql(p: Parameters, now: dt.datetime) -> str:
    """Each notice with the 01 its copy got in this statement (the arrivals clause's row)."""
    return f"""
        INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at,
            via_hub, hop_kept)
        SELECT h.id, h.agency, 'status', h.delivery_id, a.id, {p(now, "timestamptz")}, h.via_hub,
            true
        FROM hops h JOIN arrivals a ON a.delivery_id = h.delivery_id"""  # noqa: S608 - placeholders and constants only


def _messages_sql(p: Parameters, notices: Sequence[StatusNotice]) -> str:
    """The notices' outbox rows as stage_notices writes them, ids in the list's order, only for
    the notices stored."""
    return f"""
        INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload, traceparent)
        SELECT coalesce('hub.' || h.via_hub, h.agency), h.id::text,
            {p(NOTICE_MESSAGE_TYPE, "text")}, u.payload, h.traceparent
        FROM unnest({p([n.notice_id for n in notices], "uuid[]")},
            {p([_queued(n) for n in notices], "bytea[]")}) WITH ORDINALITY AS u(id, payload, k)
        JOIN notices n ON n.id = u.id
        JOIN hops h ON h.id = u.id
        ORDER BY u.k"""  # noqa: S608 - placeholders and constants only


def _queued(notice: StatusNotice) -> bytes:
    return events_pb2.NoticeQueued(
        notice_id=str(notice.notice_id), agency=notice.agency
    ).SerializeToString()


def coalesced_sql(p: Parameters, coalescing: Sequence[StatusNotice], now: dt.datetime) -> str:
    """The copies' status notices not handed over yet, settled into the new ones (which this
    statement's snapshot does not hold, so they are never among them). Each new notice probes
    notice_unhanded for its own copy: the lateral subquery is not flattened (its row lock), so
    the planner cannot walk the whole index from the notice side and match each row against
    the new notices, as it did on a young table's statistics (never analyzed: the unhanded
    taken for one row), every call, whatever waits for every agency (8-10 ms for 12,000,
    docs/perf/README.md). The lock rechecks the
    conditions on a notice a concurrent push has changed, as the UPDATE's own did."""
    return f"""
        UPDATE exchange.notice o SET acknowledged_at = {p(now, "timestamptz")},
            coalesced_into = u.id
        FROM unnest({p([c.notice_id for c in coalescing], "uuid[]")},
            {p([c.agency for c in coalescing], "text[]")},
            {p([c.delivery_id for c in coalescing], "uuid[]")}) AS u(id, agency, delivery_id)
        CROSS JOIN LATERAL (
            SELECT n.id FROM exchange.notice n
            WHERE n.agency = u.agency AND n.delivery_id = u.delivery_id AND n.id <> u.id
                AND n.kind = 'status' AND n.acknowledged_at IS NULL AND n.pushed_at IS NULL
            FOR UPDATE
        ) c
        WHERE o.id = c.id"""  # noqa: S608 - placeholders and constants only
