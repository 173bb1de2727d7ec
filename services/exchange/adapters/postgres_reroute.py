"""Moving mail that waits for a closed agency (see service_layer/reroute.py), in Postgres."""

from __future__ import annotations

import datetime as dt
import uuid

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

# Both halves use the partial indexes delivery_pending and notice_pending.
_WAITING_SQL = """
SELECT recipient AS agency FROM exchange.delivery
WHERE state IN ('accepted', 'queued', 'pushed')
UNION
SELECT agency FROM exchange.notice WHERE acknowledged_at IS NULL
"""

# The copies move in id order, as every other writer of delivery rows locks them (deadlocks).
_MOVE_COPIES_SQL = """
WITH movable AS (
    SELECT d.id FROM exchange.delivery d
    WHERE d.recipient = $1 AND d.state IN ('accepted', 'queued', 'pushed')
        AND NOT EXISTS (
            SELECT 1 FROM exchange.delivery o
            WHERE o.document_uuid = d.document_uuid AND o.recipient = $2
        )
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE exchange.delivery d
SET recipient = $2, state = 'queued', queued_at = $3, push_count = 0, pushed_at = NULL
FROM movable, exchange.document doc
WHERE d.id = movable.id AND doc.uuid = d.document_uuid
RETURNING d.id, d.document_uuid, doc.document_id, doc.sender
"""

_MOVE_NOTICES_SQL = """
UPDATE exchange.notice SET agency = $2
WHERE agency = $1 AND acknowledged_at IS NULL
RETURNING id
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

    async def reroute(self, old: str, new: str, now: dt.datetime) -> tuple[int, int]:
        async with self._pool.acquire() as conn, conn.transaction():
            copies = await conn.fetch(_MOVE_COPIES_SQL, old, new, now)
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
                            "closed_recipient": old,
                        },
                    )
                    for row in copies
                ],
            )
            notices = [str(row["id"]) for row in await conn.fetch(_MOVE_NOTICES_SQL, old, new)]
            await stage_notice_messages(conn, new, notices)
            if copies or notices:
                await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return len(copies), len(notices)

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
