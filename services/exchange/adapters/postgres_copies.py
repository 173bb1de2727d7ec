"""Loading copies (exchange.delivery rows) under their row locks and storing what the rules of
services/exchange/domain/delivery.py decided, for every store that changes a copy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from services.common.postgres import Conn
from services.exchange.domain.delivery import Copy, CopyRef, HandoverFailure
from services.exchange.domain.model import DeliveryState
from services.exchange.domain.statuses import RecallState

# Every copy is locked in id order, as every writer of delivery rows locks them (an UPDATE takes
# its row locks in scan order, and two orders can deadlock). now() is the transaction's time.
# Not the copy's last failed hand-over: see STORED_FAILURES_SQL.
_LOCK_SQL = """
SELECT d.id, d.document_uuid, d.position, d.recipient, d.requested_recipient, d.state, d.push_count,
    d.queued_at, d.pushed_at, d.acknowledged_at, d.dead_lettered_at, d.dead_letter_reason,
    d.recall_state, d.transport_receipt IS NOT NULL AS has_receipt, doc.document_id, doc.sender,
    now() AS now{published}
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE d.id = ANY($1::uuid[])
ORDER BY d.id
FOR UPDATE OF d
"""
# The relay's time of publish of a copy not yet recorded queued: its outbox row's, once the
# relay has committed it (read, not locked: the relay's pass does not wait for the claim, nor
# the claim for the pass).
_PUBLISHED = """,
    CASE WHEN d.queued_at IS NULL THEN (
        SELECT min(o.published_at) FROM exchange.outbox o
        WHERE o.delivery_id = d.id AND o.published_at IS NOT NULL
    ) END AS published_at"""
_LOCK_PLAIN_SQL = _LOCK_SQL.format(published="")
_LOCK_FREE_SQL = _LOCK_PLAIN_SQL.rstrip() + " SKIP LOCKED\n"
LOCK_PUBLISHED_SQL = _LOCK_SQL.format(published=_PUBLISHED)
# With whether each copy's document came from another hub (federation), for a statement that
# reads more beside the lock (locked_copy reads its rows).
LOCK_FORWARDED_SQL = _LOCK_SQL.format(published=",\n    doc.from_hub IS NOT NULL AS forwarded")


@dataclass(frozen=True, slots=True)
class LockedCopy:
    """A copy as stored, with whose copy of what it is, locked until the transaction ends."""

    key: uuid.UUID
    ref: CopyRef
    # Without its last failed hand-over (Copy.last_failure None) unless with_failures gave it.
    copy: Copy
    requested_recipient: str
    document_key: uuid.UUID
    # The copy's place among its document's recipients.
    position: int
    # The transaction's now(): the time of every change the transaction makes.
    now: dt.datetime
    # The hub's transport receipt was issued.
    has_receipt: bool
    # When the relay published the copy, if it has and the copy is not yet recorded queued
    # (lock_copies with_published only; None otherwise).
    published_at: dt.datetime | None = None


def locked_copy(row: asyncpg.Record) -> LockedCopy:
    """A row of the lock's statement, as a LockedCopy."""
    return LockedCopy(
        key=row["id"],
        ref=CopyRef(
            delivery_id=str(row["id"]),
            document_uuid=str(row["document_uuid"]),
            document_id=row["document_id"],
            sender=row["sender"],
            recipient=row["recipient"],
        ),
        copy=Copy(
            state=DeliveryState(row["state"]),
            push_count=row["push_count"],
            queued_at=row["queued_at"],
            pushed_at=row["pushed_at"],
            acknowledged_at=row["acknowledged_at"],
            dead_lettered_at=row["dead_lettered_at"],
            dead_letter_reason=row["dead_letter_reason"] or "",
            recall=RecallState(row["recall_state"]) if row["recall_state"] else None,
        ),
        requested_recipient=row["requested_recipient"],
        document_key=row["document_uuid"],
        position=row["position"],
        now=row["now"],
        has_receipt=row["has_receipt"],
        published_at=row.get("published_at"),
    )


def stored_failure(row: asyncpg.Record) -> HandoverFailure | None:
    """A row's last failed hand-over (exchange.delivery.last_failure_*), if it has one."""
    reason: str | None = row["last_failure_reason"]
    return None if reason is None else HandoverFailure(reason, row["last_failure_detail"] or "")


async def lock_copies(
    conn: Conn,
    keys: Sequence[uuid.UUID],
    *,
    skip_locked: bool = False,
    with_published: bool = False,
) -> dict[uuid.UUID, LockedCopy]:
    """The copies among `keys` that exist, locked, by id; with `skip_locked`, only those no
    other transaction holds (without waiting for any); `with_published`, with the relay's time
    of publish of those not yet recorded queued (LockedCopy.published_at)."""
    if not keys:
        return {}
    if skip_locked:
        sql = _LOCK_FREE_SQL
    else:
        sql = LOCK_PUBLISHED_SQL if with_published else _LOCK_PLAIN_SQL
    return {row["id"]: locked_copy(row) for row in await conn.fetch(sql, list(set(keys)))}


# The copies' last failed hand-overs, read only where a rule needs them: the push limit's dead
# letter names its copy's as its cause. They are NULL but after a failed hand-over to a peer hub,
# and the lock of every Submit, push and acknowledgement read them for that one verdict (two
# columns a row, 8 bytes a row on the wire when NULL). Read after the lock, of copies it holds.
STORED_FAILURES_SQL = """
SELECT id, last_failure_reason, last_failure_detail FROM exchange.delivery
WHERE id = ANY($1::uuid[]) AND last_failure_reason IS NOT NULL
"""


async def stored_failures(
    conn: Conn, keys: Collection[uuid.UUID]
) -> dict[uuid.UUID, HandoverFailure]:
    """The last failed hand-overs of the copies among `keys` that have one, by id."""
    rows = await conn.fetch(STORED_FAILURES_SQL, list(keys))
    return {row["id"]: failure for row in rows if (failure := stored_failure(row)) is not None}


def with_failures(
    locked: Mapping[uuid.UUID, LockedCopy], failures: Mapping[uuid.UUID, HandoverFailure]
) -> dict[uuid.UUID, LockedCopy]:
    """`locked`, each copy with its last failed hand-over among `failures`."""
    return {
        key: row
        if key not in failures
        else dataclasses.replace(
            row, copy=dataclasses.replace(row.copy, last_failure=failures[key])
        )
        for key, row in locked.items()
    }


async def lock_document_copies(conn: Conn, document_key: uuid.UUID) -> list[LockedCopy]:
    """Every copy of a document, locked (in id order), in the document's recipient order."""
    keys = await conn.fetch(
        "SELECT id FROM exchange.delivery WHERE document_uuid = $1", document_key
    )
    locked = await lock_copies(conn, [row["id"] for row in keys])
    return sorted(locked.values(), key=lambda row: row.position)


# Places a value as the next numbered parameter of a statement, with its SQL type; returns the
# placeholder (postgres._Parameters).
Place = Callable[[object, str], str]


def save_sql(
    place: Place, copies: Mapping[uuid.UUID, Copy], receipts: Mapping[uuid.UUID, bytes] | None
) -> str:
    """The UPDATE that stores each copy's transport columns as decided, and the hub's transport
    receipt of those in `receipts` unless one is stored already: one statement, also as a
    data-modifying WITH clause of a larger one."""
    keys = list(copies)
    values = [copies[key] for key in keys]
    return f"""
        UPDATE exchange.delivery d SET state = u.state, push_count = u.push_count,
            queued_at = u.queued_at, pushed_at = u.pushed_at, acknowledged_at = u.acknowledged_at,
            dead_lettered_at = u.dead_lettered_at,
            dead_letter_reason = nullif(u.dead_letter_reason, ''), recall_state = u.recall_state,
            -- A dead letter keeps its document's sender, by which an agency's are paged
            -- (delivery_dead_letters_sent); the subquery runs for a copy dead-lettered only.
            dead_letter_sender = coalesce(d.dead_letter_sender, CASE
                WHEN u.state = 'dead_lettered' THEN (SELECT doc.sender FROM exchange.document doc
                    WHERE doc.uuid = d.document_uuid) END),
            -- The first receipt issued stands (an acknowledgement's retry signs another).
            transport_receipt = coalesce(d.transport_receipt, u.transport_receipt)
        FROM unnest({place(keys, "uuid[]")}, {place([c.state.value for c in values], "text[]")},
            {place([c.push_count for c in values], "int[]")},
            {place([c.queued_at for c in values], "timestamptz[]")},
            {place([c.pushed_at for c in values], "timestamptz[]")},
            {place([c.acknowledged_at for c in values], "timestamptz[]")},
            {place([c.dead_lettered_at for c in values], "timestamptz[]")},
            {place([c.dead_letter_reason for c in values], "text[]")},
            {place([c.recall.value if c.recall else None for c in values], "text[]")},
            {place([(receipts or {}).get(key) for key in keys], "bytea[]")})
            AS u(id, state, push_count, queued_at, pushed_at, acknowledged_at, dead_lettered_at,
                dead_letter_reason, recall_state, transport_receipt)
        WHERE d.id = u.id"""  # noqa: S608 - placeholders only


async def save_copies(
    conn: Conn,
    copies: Mapping[uuid.UUID, Copy],
    *,
    receipts: Mapping[uuid.UUID, bytes] | None = None,
) -> None:
    """Stores each copy's transport columns as decided (one round trip), and the hub's
    transport receipt of those in `receipts` unless one is stored already."""
    if not copies:
        return
    values: list[object] = []

    def place(value: object, sql_type: str) -> str:
        values.append(value)
        return f"${len(values)}::{sql_type}"

    await conn.execute(save_sql(place, copies, receipts), *values)


# The copies' last failed hand-overs, written only when a hand-over fails (never on the path of
# a hand-over that succeeds): locked in id order as every writer of delivery rows locks them,
# and only while they wait (a copy settled meanwhile keeps what it had). The state is checked
# on the locked rows, not in the lock's scan: there, under a generic plan, it led the planner to
# delivery_pending (whose predicate it is), read whole for the ids
# (tests/integration/test_statement_plans.py).
RECORD_FAILURES_SQL = """
WITH failed AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS f(id, reason, detail)
), locked AS (
    SELECT d.id, d.state FROM exchange.delivery d
    WHERE d.id = ANY($1::uuid[])
    ORDER BY d.id
    FOR UPDATE
)
UPDATE exchange.delivery d
SET last_failure_reason = failed.reason, last_failure_detail = failed.detail
FROM locked JOIN failed ON failed.id = locked.id
WHERE d.id = locked.id AND locked.state IN ('accepted', 'queued', 'pushed')
"""
# A resend's or a re-route's copy starts over without it.
_FORGET_FAILURE_SQL = """
UPDATE exchange.delivery SET last_failure_reason = NULL, last_failure_detail = NULL
WHERE id = $1 AND last_failure_reason IS NOT NULL
"""


async def record_failures(conn: Conn, failures: Mapping[uuid.UUID, HandoverFailure]) -> None:
    """Stores each copy's last failed hand-over (one round trip)."""
    if not failures:
        return
    keys = sorted(failures)
    await conn.execute(
        RECORD_FAILURES_SQL,
        keys,
        [failures[key].reason for key in keys],
        [failures[key].detail for key in keys],
    )


async def forget_failure(conn: Conn, key: uuid.UUID) -> None:
    """The copy no longer remembers a failed hand-over (the caller holds its row lock)."""
    await conn.execute(_FORGET_FAILURE_SQL, key)
