"""Moving mail that waits for a closed agency (see service_layer/reroute.py), in Postgres."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from services.exchange.adapters.postgres import (
    OUTBOX_CHANNEL,
    stage_delivery_messages,
    stage_ledger_events,
)
from services.exchange.adapters.postgres_copies import lock_copies, save_copies
from services.exchange.adapters.postgres_lifecycle import stage_notice_messages
from services.exchange.domain import delivery
from services.exchange.domain.delivery import Copy, LedgerEvent

# Both halves use the partial indexes delivery_pending and notice_pending. In code order, so
# that a sweep does the same thing whatever order Postgres finds the codes in.
_WAITING_SQL = """
SELECT recipient AS agency FROM exchange.delivery
WHERE state IN ('accepted', 'queued', 'pushed')
UNION
SELECT agency FROM exchange.notice WHERE acknowledged_at IS NULL
ORDER BY agency
"""

# The copies of every closed code that moves to $2, at most one per document: of a document
# addressed to two of them, the one the sender listed first moves (the other is dead-lettered
# by the caller), and none when $2 already has a copy. They are locked in id order, as every
# other writer of delivery rows locks them (deadlocks), and the next hop is the successor's
# ($4: the peer hub that serves it, NULL when this hub does).
_MOVE_COPIES_SQL = """
WITH candidate AS (
    SELECT DISTINCT ON (d.document_uuid) d.id FROM exchange.delivery d
    WHERE d.recipient = ANY($1::text[]) AND d.state IN ('accepted', 'queued', 'pushed')
        AND NOT EXISTS (
            SELECT 1 FROM exchange.delivery o
            WHERE o.document_uuid = d.document_uuid AND o.recipient = $2
        )
    ORDER BY d.document_uuid, d.position
), movable AS (
    SELECT d.id, d.recipient AS old FROM exchange.delivery d
    JOIN candidate ON candidate.id = d.id
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE exchange.delivery d
SET recipient = $2, via_hub = $4, state = 'queued', queued_at = $3, push_count = 0,
    pushed_at = NULL, last_failure_reason = NULL, last_failure_detail = NULL
FROM movable, exchange.document doc
WHERE d.id = movable.id AND doc.uuid = d.document_uuid
RETURNING d.id, d.document_uuid, d.accepted_at, movable.old, doc.document_id, doc.sender
"""

# Notices are queued to the successor in the order they were written.
_MOVE_NOTICES_SQL = """
WITH movable AS (
    SELECT id, agency AS old FROM exchange.notice
    WHERE agency = ANY($1::text[]) AND acknowledged_at IS NULL
    ORDER BY id
    FOR UPDATE
), moved AS (
    UPDATE exchange.notice n SET agency = $2
    FROM movable WHERE n.id = movable.id
    RETURNING n.id, n.created_at, movable.old
)
SELECT id, old FROM moved ORDER BY created_at, id
"""

_WAITING_COPIES_SQL = """
SELECT id FROM exchange.delivery
WHERE recipient = $1 AND state IN ('accepted', 'queued', 'pushed')
"""


class PostgresRerouteStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def waiting_agencies(self) -> list[str]:
        return [row["agency"] for row in await self._pool.fetch(_WAITING_SQL)]

    async def reroute(
        self, olds: Sequence[str], new: str, hub: str | None, now: dt.datetime
    ) -> dict[str, tuple[int, int]]:
        async with self._pool.acquire() as conn, conn.transaction():
            copies = sorted(
                await conn.fetch(_MOVE_COPIES_SQL, list(olds), new, now, hub),
                key=lambda row: (row["accepted_at"], row["id"]),
            )
            # Queued at the successor (or its hub) in the order they were accepted here.
            await stage_delivery_messages(
                conn, [(str(row["document_uuid"]), new, str(row["id"])) for row in copies]
            )
            await stage_ledger_events(
                conn,
                [
                    LedgerEvent(
                        entry_type="routing",
                        doc_uuid=str(row["document_uuid"]),
                        document_id=row["document_id"],
                        occurred_at=now,
                        from_agency=row["sender"],
                        to_agency=new,
                        data={
                            "delivery": str(row["id"]),
                            "event": "rerouted",
                            "closed_recipient": row["old"],
                            **({"hub": hub} if hub else {}),
                        },
                    )
                    for row in copies
                ],
            )
            notices = await conn.fetch(_MOVE_NOTICES_SQL, list(olds), new)
            # To the successor's next hop when another hub serves it, as its copies: the route
            # of the notice's copy or document is the old agency's, and the successor's queue
            # here has no reader.
            await stage_notice_messages(conn, new, [str(row["id"]) for row in notices], hub=hub)
            if copies or notices:
                await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        moved = dict.fromkeys(olds, (0, 0))
        for row in copies:
            c, n = moved[row["old"]]
            moved[row["old"]] = (c + 1, n)
        for row in notices:
            c, n = moved[row["old"]]
            moved[row["old"]] = (c, n + 1)
        return moved

    async def dead_letter_waiting(self, agency: str, reason: str, now: dt.datetime) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            keys = [row["id"] for row in await conn.fetch(_WAITING_COPIES_SQL, agency)]
            changed: dict[uuid.UUID, Copy] = {}
            events: list[LedgerEvent] = []
            for row in (await lock_copies(conn, keys)).values():
                decided = delivery.dead_letter(row.ref, row.copy, reason, now)
                if decided is not None and row.ref.recipient == agency:
                    changed[row.key] = decided.copy
                    events.extend(decided.events)
            await save_copies(conn, changed)
            await stage_ledger_events(conn, events)
        return len(changed)
