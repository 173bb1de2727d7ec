"""The lifecycle's storage in Postgres: statuses, notices, recalls and the pull-mode listing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from docaxis.exchange.v1 import events_pb2

from services.common.errors import DomainError
from services.common.postgres import Conn
from services.exchange.adapters.postgres import (
    OUTBOX_CHANNEL,
    load_manifests,
    stage_ledger_events,
)
from services.exchange.adapters.postgres_acknowledgements import (
    AcknowledgementWrites,
    StatusNotice,
    coalesced_sql,
    write_acknowledgements,
)
from services.exchange.adapters.postgres_copies import (
    LOCK_FORWARDED_SQL,
    LockedCopy,
    lock_copies,
    lock_document_copies,
    locked_copy,
    save_copies,
)
from services.exchange.adapters.postgres_statements import Parameters
from services.exchange.adapters.rabbit import NOTICE_MESSAGE_TYPE
from services.exchange.adapters.receipt_chains import HubChain, ReceiptChains, stored_receipt
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain import delivery
from services.exchange.domain.delivery import Copy, LedgerEvent
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.notices import (
    DEFAULT_NOTICE_LIMITS,
    NewNotice,
    NoticeFate,
    NoticeLimits,
    Waiting,
    fates,
)
from services.exchange.domain.statuses import (
    ANSWERING,
    REGISTERING,
    RecallState,
    StaffInfo,
    StatusCode,
    StatusEntry,
    StatusReport,
    admit,
    ordered,
)
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    DocumentLink,
    ItemKind,
    NoticeItem,
    PageCursor,
    PendingEntry,
    RecallNoticeItem,
    RecallOutcome,
    ReceiptIssuer,
    StatusNoticeItem,
    StatusOutcome,
)
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord


def _entry(row: asyncpg.Record) -> StatusEntry:
    """A status row; every query that reads one names these columns itself (constant SQL)."""
    staff = json.loads(row["staff"])
    return StatusEntry(
        report=StatusReport(
            status_id=row["status_id"],
            code=StatusCode(row["code"]),
            occurred_at=row["occurred_at"],
            description=row["description"],
            staff=StaffInfo(**staff),
        ),
        reported_by=row["reported_by"],
        recorded_at=row["recorded_at"],
    )


def _staff_json(staff: StaffInfo) -> str:
    return json.dumps(
        {
            "department": staff.department,
            "staff": staff.staff,
            "email": staff.email,
            "mobile": staff.mobile,
        },
        ensure_ascii=False,
    )


# A status, and on its copy the time of its first answer or registration when it is one
# (statuses.ANSWERING, REGISTERING: what the overdue and stalled reports read the open copies by,
# postgres_reports). The earliest is kept: reports arrive out of order. A status of neither kind
# writes no copy (the UPDATE's WHERE is false before any row is read).
INSERT_STATUS_SQL = """
WITH status AS (
    INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at,
        recorded_at, description, staff, reported_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
    RETURNING id
),
copy AS (
    UPDATE exchange.delivery
    SET answered_at = CASE WHEN $9 THEN least(answered_at, $4) ELSE answered_at END,
        registered_at = CASE WHEN $10 THEN least(registered_at, $4) ELSE registered_at END
    WHERE id = $1 AND ($9 OR $10)
)
SELECT id FROM status
"""


async def insert_status(conn: Conn, delivery_id: uuid.UUID, entry: StatusEntry) -> int:
    report = entry.report
    row_id: int = await conn.fetchval(
        INSERT_STATUS_SQL,
        delivery_id,
        report.status_id,
        report.code.value,
        report.occurred_at,
        entry.recorded_at,
        report.description,
        _staff_json(report.staff),
        entry.reported_by,
        report.code in ANSWERING,
        report.code in REGISTERING,
    )
    return row_id


async def _insert_notice(
    conn: Conn,
    *,
    notice_id: uuid.UUID | None = None,
    agency: str,
    kind: ItemKind,
    delivery_id: uuid.UUID,
    status_row: int | None,
    now: dt.datetime,
) -> str:
    """A notice and its outbox row, in the caller's transaction (hop_kept: stage_notices writes
    its hop; a process of a version before 0039 stages notices that read false, which the
    notice-hops job walks)."""
    notice_id = notice_id or uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at,
            hop_kept)
        VALUES ($1, $2, $3, $4, $5, $6, true)
        """,
        notice_id,
        agency,
        kind.value,
        delivery_id,
        status_row,
        now,
    )
    await stage_notice_messages(conn, agency, [str(notice_id)])
    return str(notice_id)


async def stage_notice_messages(
    conn: Conn, agency: str, notice_ids: Sequence[str], *, hub: str | None = None
) -> None:
    """Outbox rows that queue each notice to `agency`, in the caller's transaction; the caller
    NOTIFYs OUTBOX_CHANNEL so that the relay wakes at commit. `hub`: the peer hub that serves
    `agency`, when another hub does (a notice moved to a closed agency's successor there)."""
    await stage_notices(conn, [(agency, notice_id) for notice_id in notice_ids], hub=hub)


async def stage_notices(
    conn: Conn, notices: Sequence[tuple[str, str]], *, hub: str | None = None
) -> None:
    """Outbox rows that queue each (agency, notice id), in one round trip, in the trace of the
    notice's document (a status 01 reaches the sender in the trace its Submit began); to the
    peer hub `hub` when given."""
    if not notices:
        return
    await conn.execute(
        """
        WITH hops AS (
            SELECT u.agency, u.notice_id, u.payload, u.k, doc.traceparent,
                -- Federation: a recall for a copy another hub delivers, or a status for a
                -- sender another hub serves, goes back along the hop the copy took or the
                -- document came by (or to the hub that serves the agency, $4, when the caller
                -- knows it).
                coalesce(
                    $4::text, CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END
                ) AS via_hub
            FROM unnest($1::text[], $2::text[], $5::bytea[]) WITH ORDINALITY
                AS u(agency, notice_id, payload, k)
            LEFT JOIN exchange.notice n ON n.id = u.notice_id::uuid
            LEFT JOIN exchange.delivery d ON d.id = n.delivery_id
            LEFT JOIN exchange.document doc ON doc.uuid = d.document_uuid
        ),
        -- The notice keeps its hop (ListPeers counts what waits for each peer by it): written
        -- for a notice to a peer, or one moved from a peer's agency; never for one to an
        -- agency of this hub that stays so.
        routed AS (
            UPDATE exchange.notice n SET via_hub = h.via_hub FROM hops h
            WHERE n.id = h.notice_id::uuid AND n.via_hub IS DISTINCT FROM h.via_hub
        )
        INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload, traceparent)
        SELECT coalesce('hub.' || via_hub, agency), notice_id, $3, payload, traceparent
        FROM hops
        ORDER BY k
        """,
        [agency for agency, _ in notices],
        [notice_id for _, notice_id in notices],
        NOTICE_MESSAGE_TYPE,
        hub,
        [
            events_pb2.NoticeQueued(notice_id=notice_id, agency=agency).SerializeToString()
            for agency, notice_id in notices
        ],
    )


def _link(row: asyncpg.Record) -> DocumentLink:
    return DocumentLink(
        document_uuid=str(row["uuid"]),
        document_id=row["document_id"],
        sender=row["sender"],
        business_type=BusinessType(row["business_type"]),
        submitted_at=row["submitted_at"],
    )


# Told at commit of every item acknowledged (ids, comma-separated): each worker process acks the
# broker message its own streams hold for it, whichever process took the acknowledgement.
ACKNOWLEDGED_CHANNEL = "exchange_acknowledged"
# NOTIFY payloads stay under Postgres's 8,000 bytes: 36-character ids and their commas.
_IDS_PER_NOTIFY = 200


async def announce_settled(
    conn: Conn, item_ids: Sequence[str], *, wake_relay: bool = False
) -> None:
    """NOTIFY ACKNOWLEDGED_CHANNEL of `item_ids`, and OUTBOX_CHANNEL too with `wake_relay` (the
    transaction staged outbox rows), delivered when the caller's transaction commits: one
    statement for every notification (a circular's 3,000 ids are fifteen)."""
    notifications = settled_notifications(item_ids, wake_relay=wake_relay)
    if not notifications:
        return
    await conn.execute(
        "SELECT pg_notify(u.channel, u.payload) FROM unnest($1::text[], $2::text[]) "
        "WITH ORDINALITY AS u(channel, payload, n) ORDER BY u.n",
        [channel for channel, _ in notifications],
        [payload for _, payload in notifications],
    )


def settled_notifications(item_ids: Sequence[str], *, wake_relay: bool) -> list[tuple[str, str]]:
    """The (channel, payload) NOTIFYs announce_settled sends."""
    notifications = [
        (ACKNOWLEDGED_CHANNEL, ",".join(item_ids[start : start + _IDS_PER_NOTIFY]))
        for start in range(0, len(item_ids), _IDS_PER_NOTIFY)
    ]
    if wake_relay:
        notifications.append((OUTBOX_CHANNEL, ""))
    return notifications


async def _insert_status_notices(
    conn: Conn,
    notices: Sequence[tuple[uuid.UUID, str, uuid.UUID, int]],
    now: dt.datetime,
    hub: str | None = None,
) -> None:
    """Status notices (id, agency, delivery, status row) and their outbox rows (to the peer hub
    `hub` when given); their hops kept by stage_notices, as _insert_notice's."""
    if not notices:
        return
    await conn.execute(
        """
        INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at,
            hop_kept)
        SELECT u.id, u.agency, 'status', u.delivery_id, u.status_row, $5, true
        FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bigint[])
            AS u(id, agency, delivery_id, status_row)
        """,
        [n[0] for n in notices],
        [n[1] for n in notices],
        [n[2] for n in notices],
        [n[3] for n in notices],
        now,
    )
    await stage_notices(
        conn, [(agency, str(notice_id)) for notice_id, agency, _, _ in notices], hub=hub
    )


async def _issue_receipts(
    conn: Conn,
    copies: Sequence[tuple[LockedCopy, Copy]],
    receipts: ReceiptIssuer,
    kept: StoredDocuments,
    chains: ReceiptChains,
) -> tuple[dict[uuid.UUID, bytes], list[HubChain]]:
    """The hub's transport receipts of acknowledged copies that have none yet, by copy, as
    stored (without their chain), for save_copies to store with the acknowledgement (one UPDATE
    of each row, not two); and their chains not known stored, stored in the caller's
    transaction (for ReceiptChains.stored once it commits)."""
    if not copies:
        return {}, []
    documents = await load_manifests(conn, list({row.document_key for row, _ in copies}), kept)
    issued: dict[uuid.UUID, bytes] = {}
    signed_with: list[HubChain] = []
    for row, copy in copies:
        header, attachments = documents[row.document_key]
        receipt = receipts(
            DeliveryRecord(
                delivery_id=row.ref.delivery_id,
                document_uuid=row.ref.document_uuid,
                sender=row.ref.sender,
                recipient=row.ref.recipient,
                header=header,
                attachments=attachments,
                acknowledged_at=copy.acknowledged_at,
                transport_receipt=None,
                state=copy.state,
            )
        )
        if receipt is not None:
            chain, issued[row.key] = stored_receipt(receipt)
            signed_with.append(chain)
    unstored = chains.unstored(signed_with)
    await chains.store(conn, unstored)
    return issued, unstored


async def queue_status_notices(
    conn: Conn,
    notices: Sequence[tuple[NewNotice, int]],
    now: dt.datetime,
    limits: NoticeLimits,
    *,
    hub: str | None = None,
) -> list[tuple[str, NoticeFate]]:
    """Decides (decide_status_notices) and stores the status notices of new statuses, each
    given with its status row: the notices and their outbox rows, and the settling of the ones
    they coalesce. Returns each one's notice id ("" when suppressed) and fate.
    `hub`: the peer hub that serves the agencies notified (their notices go there)."""
    if not notices:
        return []
    new = [notice for notice, _ in notices]
    decided = await decide_status_notices(conn, new, limits, hub=hub)
    await _insert_status_notices(
        conn,
        [
            (notice_id, notice.agency, uuid.UUID(notice.delivery_id), status_row)
            for (notice, status_row), (notice_id, _) in zip(notices, decided, strict=True)
            if notice_id is not None
        ],
        now,
        hub,
    )
    coalescing = coalescing_notices(new, decided)
    if coalescing:
        p = Parameters()
        await conn.execute(coalesced_sql(p, coalescing, now), *p.values)
    return [(str(notice_id) if notice_id else "", fate) for notice_id, fate in decided]


# What the notice decision reads, in one round trip: each agency's unacknowledged notices, the
# status notices of the same copies not yet handed over (coalescing), and which copies' statuses
# go on to another hub (stage_notices: never held). The unhanded ones are probed per new notice
# by (agency, copy): a LATERAL subquery with a LIMIT is never flattened into a join. As a semi
# join (`(agency, delivery_id) IN (unnest ...)`), on a notice table never analyzed, the planner
# took the unhanded notices for about one row and walked notice_unhanded whole, every agency's,
# matching each against the new notices: 5.7-8.4 ms a decision with 3,200 waiting, in both plan
# modes, where the probes take 0.25-0.36 ms (docs/perf/README.md, "Young statistics").
NOTICE_DECISION_SQL = """
SELECT 'count' AS kind, agency, NULL::uuid AS delivery_id, count(*) AS count
FROM exchange.notice
WHERE agency = ANY($1::text[]) AND acknowledged_at IS NULL GROUP BY agency
UNION ALL
SELECT 'unhanded', u.agency, u.delivery_id, 0
FROM unnest($2::text[], $3::uuid[]) AS u (agency, delivery_id)
CROSS JOIN LATERAL (
    SELECT FROM exchange.notice n
    WHERE n.agency = u.agency AND n.delivery_id = u.delivery_id
        AND n.acknowledged_at IS NULL AND n.pushed_at IS NULL AND n.kind = 'status'
    LIMIT 1
) AS unhanded
UNION ALL
SELECT 'forwarded', NULL, d.id, 0 FROM exchange.delivery d
JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE d.id = ANY($4::uuid[]) AND (doc.from_hub IS NOT NULL OR $5::text IS NOT NULL)
"""


# An acknowledgement group's copies, locked as lock_copies locks them (in id order), with what
# the notice decision of their first acknowledgements reads (NOTICE_DECISION_SQL's three reads,
# for every copy locked): one round trip where the lock and the decision's read were two, one
# after the other, in every acknowledgement group. Per copy, its sender's notices waiting (one
# count per sender, probed by agency, in a CTE of its own: as a joined LATERAL aggregate the
# custom plan counted once per copy, walking a sender's waiting notices as many times as the
# group had copies of it), its
# status notice not handed over yet (a LATERAL subquery with a LIMIT: a probe per copy; as an
# EXISTS in the select list the planner hashed notice_unhanded whole, every agency's, on young
# statistics and current ones) and whether its document came from another hub. The counts are
# of the statement's snapshot, which may precede the lock's wait: a transaction committed
# meanwhile that holds one of these copies acknowledged it (then it is no first acknowledgement
# here) or changed it without a notice; the bound holds to within the concurrent writers, as
# decide_status_notices' does.
ACKNOWLEDGEMENT_LOCK_SQL = f"""
WITH locked AS MATERIALIZED ({LOCK_FORWARDED_SQL}),
waiting AS MATERIALIZED (
    SELECT s.sender, c.waiting FROM (SELECT DISTINCT sender FROM locked) s
    CROSS JOIN LATERAL (
        SELECT count(*) AS waiting FROM exchange.notice n
        WHERE n.agency = s.sender AND n.acknowledged_at IS NULL
    ) c
)
SELECT l.*, w.waiting, u.unhanded IS NOT NULL AS unhanded
FROM locked l
JOIN waiting w ON w.sender = l.sender
LEFT JOIN LATERAL (
    SELECT true AS unhanded FROM exchange.notice n
    WHERE n.agency = l.sender AND n.delivery_id = l.id
        AND n.acknowledged_at IS NULL AND n.pushed_at IS NULL AND n.kind = 'status'
    LIMIT 1
) u ON true
ORDER BY l.id
"""  # noqa: S608 - constants only


@dataclass(frozen=True, slots=True)
class NoticeReads:
    """What the notice decision reads: the notices waiting for each agency (Waiting), and the
    copies (delivery ids) whose notices go on to another hub."""

    waiting: Mapping[str, Waiting]
    forwarded: frozenset[str]


async def lock_for_acknowledgement(
    conn: Conn, keys: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, LockedCopy], NoticeReads]:
    """The copies among `keys` that exist, locked, by id (as lock_copies), and what the notice
    decision of any of them reads, its sender being the agency notified, in one round trip."""
    if not keys:
        return {}, NoticeReads({}, frozenset())
    rows = await conn.fetch(ACKNOWLEDGEMENT_LOCK_SQL, list(set(keys)))
    unhanded: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["sender"]] = row["waiting"]
        waiting = unhanded.setdefault(row["sender"], set())
        if row["unhanded"]:
            waiting.add(str(row["id"]))
    return {row["id"]: locked_copy(row) for row in rows}, NoticeReads(
        {agency: Waiting(count, frozenset(unhanded[agency])) for agency, count in counts.items()},
        frozenset(str(row["id"]) for row in rows if row["forwarded"]),
    )


async def decide_status_notices(
    conn: Conn, new: Sequence[NewNotice], limits: NoticeLimits, *, hub: str | None = None
) -> list[tuple[uuid.UUID | None, NoticeFate]]:
    """The fate (notices.fates) of each status notice of new statuses, with the id of its
    notice (None when suppressed), from what waits for the agencies (one read). Two
    transactions at once may each let one more through: the bound holds to within the
    concurrent writers. `hub`: the peer hub that serves the agencies notified."""
    if not new:
        return []
    agencies = sorted({n.agency for n in new})
    rows = await conn.fetch(
        NOTICE_DECISION_SQL,
        agencies,
        [n.agency for n in new],
        [uuid.UUID(n.delivery_id) for n in new],
        list({uuid.UUID(n.delivery_id) for n in new}),
        hub,
    )
    counts = {row["agency"]: row["count"] for row in rows if row["kind"] == "count"}
    unhanded = [row for row in rows if row["kind"] == "unhanded"]
    waiting = {
        agency: Waiting(
            counts.get(agency, 0),
            frozenset(str(r["delivery_id"]) for r in unhanded if r["agency"] == agency),
        )
        for agency in agencies
    }
    forwarded = frozenset(str(row["delivery_id"]) for row in rows if row["kind"] == "forwarded")
    return notice_fates(new, NoticeReads(waiting, forwarded), limits)


def notice_fates(
    new: Sequence[NewNotice], reads: NoticeReads, limits: NoticeLimits
) -> list[tuple[uuid.UUID | None, NoticeFate]]:
    """The fate (notices.fates) of each status notice of new statuses on what was read, with
    the id of its notice (None when suppressed)."""
    if not new:
        return []
    decided = fates(
        new,
        reads.waiting,
        bound=limits.bound,
        coalesce_after=limits.coalesce_after,
        forwarded=reads.forwarded,
    )
    return [(uuid.uuid4() if fate is not NoticeFate.SUPPRESSED else None, fate) for fate in decided]


def coalescing_notices(
    new: Sequence[NewNotice], decided: Sequence[tuple[uuid.UUID | None, NoticeFate]]
) -> list[StatusNotice]:
    """The new notices that coalesce their copy's notices not handed over yet."""
    return [
        StatusNotice(notice_id, notice.agency, uuid.UUID(notice.delivery_id))
        for notice, (notice_id, fate) in zip(new, decided, strict=True)
        if fate is NoticeFate.COALESCED and notice_id is not None
    ]


# Notices (ids) locked in id order, as every transaction that changes notices locks them: two
# streams claiming, or acknowledging, the same notices never deadlock.
NOTICE_LOCK_SQL = """
SELECT id, agency, acknowledged_at FROM exchange.notice WHERE id = ANY($1::uuid[])
ORDER BY id FOR UPDATE
"""
# Notices acknowledged (ids, locked: their first acknowledgements, at $2) and the NOTIFYs of every
# item the group settled (settled_notifications' channels $3 and payloads $4, delivered at
# commit, as announce_settled's) in one statement: the UPDATE, a data-modifying WITH clause, runs
# whatever the SELECT reads. They were two round trips one after the other in every group of a
# sender's stream acknowledging its notices (docs/perf/README.md, "The acknowledgement path per
# copy").
NOTICE_ACKNOWLEDGE_SQL = """
WITH acknowledged AS (
    UPDATE exchange.notice SET acknowledged_at = $2, pushed_at = coalesce(pushed_at, $2)
    WHERE id = ANY($1::uuid[])
)
SELECT pg_notify(u.channel, u.payload)
FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(channel, payload, n)
ORDER BY u.n
"""
# A push of notices (ids, locked, unacknowledged): counted, and handed over at the first. By id
# alone: with `acknowledged_at IS NULL` in the statement, notice_pending's predicate, on a notice
# table never analyzed the planner read every unacknowledged notice (of every agency) to find
# the few claimed: 0.9 ms for 3,200, growing to the bound per agency (docs/perf/README.md,
# "Young statistics"). The lock has read what the condition was for.
NOTICE_CLAIM_SQL = """
UPDATE exchange.notice SET push_count = push_count + 1, pushed_at = coalesce(pushed_at, now())
WHERE id = ANY($1::uuid[])
RETURNING id, agency, kind, delivery_id, status_row
"""


# Every status of a document's copies, probed copy by copy: the OFFSET 0 keeps the lateral
# subquery from being flattened into a join. As a join, on a status table never analyzed, the
# planner hashed the copies and read every status ever recorded (0.7 ms for 3,200, growing with
# the history) where the probes take 0.05 ms (docs/perf/README.md, "Young statistics").
LIFECYCLE_STATUSES_SQL = """
SELECT d.id AS delivery_id, s.status_id, s.code, s.occurred_at, s.recorded_at, s.description,
    s.staff, s.reported_by
FROM exchange.delivery d
CROSS JOIN LATERAL (
    SELECT status_id, code, occurred_at, recorded_at, description, staff::text AS staff,
        reported_by
    FROM exchange.delivery_status WHERE delivery_id = d.id OFFSET 0
) AS s
WHERE d.document_uuid = $1
"""


# A document's versions: those with its id, and the replacements that name it.
VERSIONS_SQL = """
SELECT uuid, document_id, sender, business_type, submitted_at
FROM exchange.document
WHERE document_id = $1 OR (business_type = 2 AND header -> 'response_for' ? $1)
ORDER BY submitted_at, uuid
"""

# Only the caller's own documents (sent, or a copy received and not withdrawn: see
# withdrawal.recipient_sight): a party of one document learns nothing of exchanges it was not part
# of. Administrators ($2 NULL) see all. The copy is probed per document by one_copy_per_recipient:
# the OFFSET 0 keeps the planner from hashing the EXISTS, which read every copy the caller ever
# received (delivery_inbox) to match a few documents, on young statistics in both plan modes and
# on analyzed ones in the generic plan (docs/perf/README.md, "Young statistics, the rest"). The
# row comparison adds nothing to the equalities but can be an index condition of
# one_copy_per_recipient only: a generic plan made on empty tables priced the recipient's index
# (delivery_inbox then; delivery_by_recipient since migration 0040) the same and kept it, then
# read every copy of the caller per document (docs/perf/README.md, "Postgres's CPU per
# document").
_LINK_SIGHT = """
    AND d.uuid <> $3
    AND ($2::text IS NULL OR d.sender = $2
         OR EXISTS (SELECT FROM exchange.delivery v
                    WHERE v.document_uuid = d.uuid AND v.recipient = $2
                        AND (v.document_uuid, v.recipient) <= (d.uuid, $2)
                        AND v.state <> 'withdrawn' OFFSET 0))
ORDER BY d.submitted_at, d.uuid
"""
# Track's links of a document: those it answers ($1, its response_for) and those answering it ($1,
# its id), other than itself ($3), as the caller ($2) may see them.
LINKS_ANSWERED_SQL = f"""
SELECT d.uuid, d.document_id, d.sender, d.business_type, d.submitted_at
FROM exchange.document d
WHERE d.document_id IN (SELECT jsonb_array_elements_text($1::jsonb)){_LINK_SIGHT}"""  # noqa: S608 - constants only
LINKS_REPLIES_SQL = f"""
SELECT d.uuid, d.document_id, d.sender, d.business_type, d.submitted_at
FROM exchange.document d
WHERE d.header -> 'response_for' ? $1{_LINK_SIGHT}"""  # noqa: S608 - constants only


# What an agency has to fetch (pull mode), a page in (created_at, id) order: its copies waiting
# and its notices unacknowledged, each kind's page taken from its index in that order
# (delivery_pending, notice_pending: the cursor an index condition, the LIMIT stops the scan),
# then joined and merged. As one ORDER BY over the union, with the cursor optional
# (`$2 IS NULL OR …`), every page read the agency's whole backlog, joined and sorted, in both
# plan modes: 12,696 rows for a page of an agency with 3,000 notices waiting
# (tests/integration/test_adapter_plans.py), a reconnecting agency's backlog read once per page.
_PENDING_SQL = """
SELECT kind, id, document_uuid, created_at, sender FROM (
    SELECT 'delivery' AS kind, d.id, d.document_uuid, d.accepted_at AS created_at, doc.sender
    FROM (
        SELECT id, document_uuid, accepted_at FROM exchange.delivery
        WHERE recipient = $1 AND state IN ('accepted', 'queued', 'pushed'){after_copy}
        ORDER BY accepted_at, id LIMIT {limit}
    ) d
    JOIN exchange.document doc ON doc.uuid = d.document_uuid
    UNION ALL
    SELECT n.kind, n.id, d.document_uuid, n.created_at, COALESCE(s.reported_by, doc.sender)
    FROM (
        SELECT id, kind, delivery_id, status_row, created_at FROM exchange.notice
        WHERE agency = $1 AND acknowledged_at IS NULL{after_notice}
        ORDER BY created_at, id LIMIT {limit}
    ) n
    JOIN exchange.delivery d ON d.id = n.delivery_id
    JOIN exchange.document doc ON doc.uuid = d.document_uuid
    LEFT JOIN exchange.delivery_status s ON s.id = n.status_row
) items
ORDER BY created_at, id
LIMIT {limit}
"""
_PENDING_FIRST_SQL = _PENDING_SQL.format(after_copy="", after_notice="", limit="$2")
_PENDING_NEXT_SQL = _PENDING_SQL.format(
    after_copy="\n            AND (accepted_at, id) > ($2::timestamptz, $3::uuid)",
    after_notice="\n            AND (created_at, id) > ($2::timestamptz, $3::uuid)",
    limit="$4",
)


class PostgresLifecycleStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        notices: NoticeLimits = DEFAULT_NOTICE_LIMITS,
        on_notices: Callable[[Sequence[NoticeFate]], None] = lambda _: None,
        kept: StoredDocuments | None = None,
    ) -> None:
        """`on_notices` is told the fate of every status notice, once committed (metrics);
        `kept`: the documents recently stored or read, shared with the document store."""
        self._pool = pool
        self._kept = kept if kept is not None else StoredDocuments()
        self._notices = notices
        self._on_notices = on_notices
        self._chains = ReceiptChains()

    async def record_status(
        self,
        delivery_id: str,
        entry: StatusEntry,
        *,
        recipient: str | None = None,
        notify: str | None = None,
        notify_hub: str | None = None,
    ) -> StatusOutcome | None:
        key = uuid.UUID(delivery_id)
        async with self._pool.acquire() as conn, conn.transaction():
            # The row lock serialises reports on one delivery: each is decided against the
            # history as committed by the ones before it.
            row = (await lock_copies(conn, [key])).get(key)
            if row is None or row.ref.recipient != (recipient or entry.reported_by):
                return None
            history = [
                _entry(r)
                for r in await conn.fetch(
                    """
                    SELECT s.status_id, s.code, s.occurred_at, s.recorded_at, s.description,
                        s.staff::text AS staff, s.reported_by
                    FROM exchange.delivery_status s WHERE s.delivery_id = $1
                    """,
                    key,
                )
            ]
            duplicate = admit(
                history,
                entry,
                received=row.copy.acknowledged_at is not None,
                withdrawn=row.copy.state is DeliveryState.WITHDRAWN,
                recall=row.copy.recall,
            )
            if duplicate is not None:
                return StatusOutcome(duplicate, already_recorded=True)
            status_row = await insert_status(conn, key, entry)
            answered = delivery.answer_recall(row.copy, entry.code)
            if answered != row.copy:
                await save_copies(conn, {key: answered})
                await conn.execute(
                    "UPDATE exchange.delivery SET recall_answered_at = $2 WHERE id = $1",
                    key,
                    entry.recorded_at,
                )
            ((notice_id, fate),) = await queue_status_notices(
                conn,
                [(NewNotice(notify or row.ref.sender, delivery_id), status_row)],
                entry.recorded_at,
                self._notices,
                hub=notify_hub,
            )
            await stage_ledger_events(conn, [delivery.status_event(row.ref, entry, notice_id)])
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        self._on_notices([fate])
        return StatusOutcome(entry, already_recorded=False)

    async def acknowledge_deliveries(
        self,
        claims: Sequence[tuple[str, str]],
        now: dt.datetime,
        receipts: ReceiptIssuer,
    ) -> list[Acknowledgement | DomainError | None]:
        keys = [uuid.UUID(delivery_id) for delivery_id, _ in claims]
        async with self._pool.acquire() as conn, conn.transaction():
            locked, reads = await lock_for_acknowledgement(conn, keys)
            group = delivery.acknowledge_group(
                [(key, recipient) for key, (_, recipient) in zip(keys, claims, strict=True)],
                {key: (row.ref, row.copy) for key, row in locked.items()},
                now,
            )
            current = {key: row.copy for key, row in locked.items()} | dict(group.copies)
            issued, chains = await _issue_receipts(
                conn,
                [
                    (row, current[row.key])
                    for row in locked.values()
                    if current[row.key].acknowledged_at is not None and not row.has_receipt
                ],
                receipts,
                self._kept,
                self._chains,
            )
            # The notice decision on what the lock read of the senders' waiting notices; every
            # write then goes in one statement.
            new = [NewNotice(ref.sender, ref.delivery_id) for _, ref, _ in group.arrivals]
            fated = notice_fates(new, reads, self._notices)
            await write_acknowledgements(
                conn,
                AcknowledgementWrites(
                    # A copy acknowledged before whose receipt is issued only now is saved as
                    # it is.
                    copies={**{key: current[key] for key in issued}, **group.copies},
                    receipts=issued,
                    arrivals=[(key, entry) for key, _, entry in group.arrivals],
                    notices=[
                        StatusNotice(notice_id, notice.agency, uuid.UUID(notice.delivery_id))
                        for notice, (notice_id, _) in zip(new, fated, strict=True)
                        if notice_id is not None
                    ],
                    coalescing=coalescing_notices(new, fated),
                    now=now,
                    events=[
                        *group.events,
                        *(
                            delivery.status_event(ref, entry, str(notice_id or ""))
                            for (_, ref, entry), (notice_id, _) in zip(
                                group.arrivals, fated, strict=True
                            )
                        ),
                    ],
                    notifications=settled_notifications(
                        group.settled([delivery_id for delivery_id, _ in claims]),
                        wake_relay=bool(fated),
                    ),
                ),
            )
        self._chains.stored(chains)
        self._on_notices([fate for _, fate in fated])
        return [
            answer
            if answer is None or isinstance(answer, DomainError)
            else Acknowledgement(answer.acknowledged_at, answer.already)
            for answer in group.answers
        ]

    async def acknowledge_notices(
        self, claims: Sequence[tuple[str, str]], now: dt.datetime
    ) -> list[Acknowledgement | None]:
        keys = [uuid.UUID(notice_id) for notice_id, _ in claims]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = {row["id"]: row for row in await conn.fetch(NOTICE_LOCK_SQL, list(set(keys)))}
            results: list[Acknowledgement | None] = []
            acknowledged: dict[uuid.UUID, dt.datetime] = {}
            for key, (_, agency) in zip(keys, claims, strict=True):
                row = rows.get(key)
                if row is None or row["agency"] != agency:
                    results.append(None)
                    continue
                first = row["acknowledged_at"] or acknowledged.get(key)
                if first is not None:
                    results.append(Acknowledgement(first, already_acknowledged=True))
                    continue
                acknowledged[key] = now
                results.append(Acknowledgement(now, already_acknowledged=False))
            notifications = settled_notifications(
                list(
                    dict.fromkeys(
                        notice_id
                        for (notice_id, _), result in zip(claims, results, strict=True)
                        if result is not None
                    )
                ),
                wake_relay=False,
            )
            await conn.execute(
                NOTICE_ACKNOWLEDGE_SQL,
                list(acknowledged),
                now,
                [channel for channel, _ in notifications],
                [payload for _, payload in notifications],
            )
        return results

    async def request_recall(
        self,
        document_uuid: str,
        sender: str,
        reason: str,
        recipients: Sequence[str],
        now: dt.datetime,
    ) -> list[RecallOutcome] | None:
        doc_key = uuid.UUID(document_uuid)
        outcomes: list[RecallOutcome] = []
        events: list[LedgerEvent] = []
        async with self._pool.acquire() as conn, conn.transaction():
            document = await conn.fetchrow(
                "SELECT document_id, sender, from_hub FROM exchange.document WHERE uuid = $1",
                doc_key,
            )
            if document is None or document["sender"] != sender:
                return None
            wanted = set(recipients)
            changed: dict[uuid.UUID, Copy] = {}
            answers: list[tuple[LockedCopy, StatusEntry]] = []
            for row in await lock_document_copies(conn, doc_key):
                if wanted and row.ref.recipient not in wanted:
                    continue
                notice_id = uuid.uuid4()
                decided = delivery.recall(
                    row.ref,
                    row.copy,
                    reason,
                    now,
                    notice_id=str(notice_id),
                    relayed=document["from_hub"] is not None,
                )
                outcomes.append(
                    RecallOutcome(
                        row.ref.recipient,
                        row.ref.delivery_id,
                        decided.recall,
                        already_requested=decided.already,
                    )
                )
                if decided.already:
                    continue
                changed[row.key] = decided.copy
                if decided.notify_recipient:
                    await _insert_notice(
                        conn,
                        notice_id=notice_id,
                        agency=row.ref.recipient,
                        kind=ItemKind.RECALL,
                        delivery_id=row.key,
                        status_row=None,
                        now=now,
                    )
                if decided.status is not None:
                    await insert_status(conn, row.key, decided.status)
                if decided.answer is not None:
                    answers.append((row, decided.answer))
                events.extend(decided.events)
            await save_copies(conn, changed)
            # The sender's hub waits for an answer: it goes back along the hops as a status.
            answered = [(row, await insert_status(conn, row.key, a)) for row, a in answers]
            notices = await queue_status_notices(
                conn,
                [(NewNotice(row.ref.sender, row.ref.delivery_id), r) for row, r in answered],
                now,
                self._notices,
            )
            events.extend(
                delivery.status_event(row.ref, entry, notice_id)
                for (row, entry), (notice_id, _) in zip(answers, notices, strict=True)
            )
            await conn.execute(
                """
                UPDATE exchange.delivery SET recall_reason = $2, recall_requested_at = $3
                WHERE id = ANY($1::uuid[])
                """,
                list(changed),
                reason,
                now,
            )
            await stage_ledger_events(conn, events)
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        self._on_notices([fate for _, fate in notices])
        return outcomes

    async def begin_notices(self, claims: Sequence[tuple[str, str]]) -> list[NoticeItem | None]:
        keys = [uuid.UUID(notice_id) for notice_id, _ in claims]
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = {(key, agency) for key, (_, agency) in zip(keys, claims, strict=True)}
            pushed = [
                row["id"]
                for row in await conn.fetch(NOTICE_LOCK_SQL, list(set(keys)))
                if row["acknowledged_at"] is None and (row["id"], row["agency"]) in claimed
            ]
            rows = (
                {row["id"]: row for row in await conn.fetch(NOTICE_CLAIM_SQL, pushed)}
                if pushed
                else {}
            )
            deliveries = {
                row["id"]: row
                for row in await conn.fetch(
                    """
                    SELECT d.id, d.document_uuid, d.recipient, d.recall_reason,
                        d.recall_requested_at, d.recall_state, doc.document_id, doc.sender
                    FROM exchange.delivery d
                        JOIN exchange.document doc ON doc.uuid = d.document_uuid
                    WHERE d.id = ANY($1::uuid[])
                    """,
                    list({row["delivery_id"] for row in rows.values()}),
                )
            }
            statuses = {
                row["id"]: _entry(row)
                for row in await conn.fetch(
                    """
                    SELECT s.id, s.status_id, s.code, s.occurred_at, s.recorded_at,
                        s.description, s.staff::text AS staff, s.reported_by
                    FROM exchange.delivery_status s WHERE s.id = ANY($1::bigint[])
                    """,
                    [row["status_row"] for row in rows.values() if row["status_row"] is not None],
                )
            }
        items: list[NoticeItem | None] = []
        for key, (notice_id, agency) in zip(keys, claims, strict=True):
            row = rows.get(key)
            if row is None or row["agency"] != agency:
                items.append(None)
                continue
            delivery_row = deliveries[row["delivery_id"]]  # notices reference deliveries
            if row["kind"] == ItemKind.RECALL.value:
                items.append(
                    RecallNoticeItem(
                        notice_id=notice_id,
                        document_uuid=str(delivery_row["document_uuid"]),
                        document_id=delivery_row["document_id"],
                        delivery_id=str(row["delivery_id"]),
                        sender=delivery_row["sender"],
                        reason=delivery_row["recall_reason"],
                        requested_at=delivery_row["recall_requested_at"],
                        withdrawn=delivery_row["recall_state"]
                        == RecallState.WITHDRAWN_BEFORE_RECEIPT,
                    )
                )
                continue
            items.append(
                StatusNoticeItem(
                    notice_id=notice_id,
                    document_uuid=str(delivery_row["document_uuid"]),
                    document_id=delivery_row["document_id"],
                    delivery_id=str(row["delivery_id"]),
                    recipient=delivery_row["recipient"],
                    # Status notices reference statuses.
                    entry=statuses[row["status_row"]],
                )
            )
        return items

    async def pending(
        self, agency: str, after: PageCursor | None, limit: int
    ) -> list[PendingEntry]:
        # Keyset paging on (created_at, id): acknowledgements made while paging remove rows
        # before the cursor or after it, never shift the ones still to come.
        if after is None:
            rows = await self._pool.fetch(_PENDING_FIRST_SQL, agency, limit)
        else:
            rows = await self._pool.fetch(
                _PENDING_NEXT_SQL, agency, after.created_at, uuid.UUID(after.item_id), limit
            )
        return [
            PendingEntry(
                ItemKind(r["kind"]),
                str(r["id"]),
                str(r["document_uuid"]),
                r["created_at"],
                r["sender"],
            )
            for r in rows
        ]

    async def lifecycles(self, document_uuid: str) -> dict[str, DeliveryLifecycle]:
        doc_key = uuid.UUID(document_uuid)
        async with self._pool.acquire() as conn:
            deliveries = await conn.fetch(
                """
                SELECT id, recall_state, recall_reason, recall_requested_at, recall_answered_at
                FROM exchange.delivery WHERE document_uuid = $1
                """,
                doc_key,
            )
            statuses = await conn.fetch(LIFECYCLE_STATUSES_SQL, doc_key)
        by_delivery: dict[str, list[StatusEntry]] = {}
        for row in statuses:
            by_delivery.setdefault(str(row["delivery_id"]), []).append(_entry(row))
        return {
            str(d["id"]): DeliveryLifecycle(
                delivery_id=str(d["id"]),
                statuses=tuple(ordered(by_delivery.get(str(d["id"]), []))),
                recall=RecallState(d["recall_state"]) if d["recall_state"] else None,
                recall_reason=d["recall_reason"],
                recall_requested_at=d["recall_requested_at"],
                recall_answered_at=d["recall_answered_at"],
            )
            for d in deliveries
        }

    async def links(
        self, document_uuid: str, agency: str | None
    ) -> tuple[list[DocumentLink], list[DocumentLink]]:
        async with self._pool.acquire() as conn:
            document = await conn.fetchrow(
                """
                SELECT document_id, header -> 'response_for' AS response_for
                FROM exchange.document WHERE uuid = $1
                """,
                uuid.UUID(document_uuid),
            )
            if document is None:
                return [], []
            # As the caller may see them (_LINK_SIGHT).
            answered = await conn.fetch(
                LINKS_ANSWERED_SQL,
                document["response_for"],
                agency,
                uuid.UUID(document_uuid),
            )
            replies = await conn.fetch(
                LINKS_REPLIES_SQL,
                document["document_id"],
                agency,
                uuid.UUID(document_uuid),
            )
        return [_link(r) for r in answered], [_link(r) for r in replies]

    async def versions(self, document_id: str) -> list[DocumentLink]:
        rows = await self._pool.fetch(VERSIONS_SQL, document_id)
        return [_link(r) for r in rows]
