"""Federation's storage in Postgres (the FederationStore port): hops, accepted forwarded copies,
copies handed over to the next hub."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from services.common import tracing
from services.common.postgres import Conn
from services.exchange.adapters.postgres import (
    OUTBOX_CHANNEL,
    insert_submissions,
    stage_delivery_messages,
    stage_ledger_events,
    trace_from_json,
    trace_to_json,
)
from services.exchange.adapters.postgres_copies import lock_copies, record_failures, save_copies
from services.exchange.adapters.postgres_lifecycle import insert_status, queue_status_notices
from services.exchange.adapters.receipt_chains import ReceiptChains, received_receipt
from services.exchange.adapters.signature_chains import SignatureChain, SignatureChains
from services.exchange.domain import delivery
from services.exchange.domain.delivery import HandoverFailure, LedgerEvent
from services.exchange.domain.model import DeliveryState, Receipt, Submission
from services.exchange.domain.notices import DEFAULT_NOTICE_LIMITS, NewNotice, NoticeLimits
from services.exchange.domain.peering import Hop
from services.exchange.domain.verification import Verification
from services.exchange.service_layer.federation_ports import ForwardedIn, RetryRule
from services.exchange.service_layer.ports import NewSubmission

# One accepted copy per (origin document, recipient): concurrent hand-overs of the same copy (a
# retry racing the first attempt) wait for each other.
_KEY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('exchange.forwarded_copy:' || $1 || $2))"


class PostgresFederationStore:
    """Hop receipts, the peers' and this hub's own, are stored without their chain and served
    as the bytes received or handed out (adapters/receipt_chains.py)."""

    def __init__(
        self, pool: asyncpg.Pool, *, notices: NoticeLimits = DEFAULT_NOTICE_LIMITS
    ) -> None:
        """`notices`: the limits of the status notices it queues (a refused copy's 02)."""
        self._pool = pool
        self._notices = notices
        self._chains = ReceiptChains()
        self._signature_chains = SignatureChains()

    async def hop_info(
        self, document_uuids: Sequence[str]
    ) -> dict[str, tuple[str, tuple[Hop, ...]]]:
        rows = await self._pool.fetch(
            "SELECT uuid, coalesce(origin_uuid, uuid) AS origin, trace::text AS trace "
            "FROM exchange.document WHERE uuid = ANY($1::uuid[])",
            [uuid.UUID(u) for u in document_uuids],
        )
        return {str(r["uuid"]): (str(r["origin"]), trace_from_json(r["trace"])) for r in rows}

    async def accepted_receipt(self, origin_document_uuid: str, recipient: str) -> bytes | None:
        async with self._pool.acquire() as conn:
            stored: bytes | None = await conn.fetchval(
                "SELECT hop_receipt FROM exchange.forwarded_copy "
                "WHERE origin_uuid = $1 AND recipient = $2",
                uuid.UUID(origin_document_uuid),
                recipient,
            )
            return None if stored is None else await self._chains.served(conn, stored)

    async def accept_forwarded(
        self,
        submission: Submission,
        receipt: Receipt,
        fingerprint: str,
        events: Sequence[LedgerEvent],
        verification: Verification,
        forwarded: ForwardedIn,
    ) -> bytes:
        (route,) = receipt.routes
        origin = uuid.UUID(forwarded.origin_document_uuid)
        chain, stored = received_receipt(forwarded.hop_receipt)
        unstored = self._chains.unstored([chain] if chain is not None else [])
        signature_chains: list[SignatureChain] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_KEY_LOCK, str(origin), forwarded.recipient)
            first: bytes | None = await conn.fetchval(
                "SELECT hop_receipt FROM exchange.forwarded_copy "
                "WHERE origin_uuid = $1 AND recipient = $2",
                origin,
                forwarded.recipient,
            )
            if first is not None:
                return await self._chains.served(conn, first)
            await self._chains.store(conn, unstored)
            document: uuid.UUID | None = await conn.fetchval(
                "SELECT uuid FROM exchange.document WHERE origin_uuid = $1", origin
            )
            if document is None:
                _, signature_chains = await insert_submissions(
                    conn,
                    [
                        NewSubmission(
                            submission,
                            receipt,
                            fingerprint,
                            events,
                            verification,
                            tracing.current_traceparent(),
                        )
                    ],
                    self._signature_chains,
                )
                await conn.execute(
                    "UPDATE exchange.document SET origin_uuid = $2, from_hub = $3, "
                    "trace = $4::jsonb WHERE uuid = $1",
                    uuid.UUID(receipt.document_uuid),
                    origin,
                    forwarded.from_hub,
                    trace_to_json(forwarded.trace),
                )
            else:
                await _add_copy(conn, document, receipt, events)
            await conn.execute(
                """
                INSERT INTO exchange.forwarded_copy (origin_uuid, recipient, from_hub,
                    delivery_id, hop_receipt, accepted_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                origin,
                forwarded.recipient,
                forwarded.from_hub,
                uuid.UUID(route.delivery_id),
                stored,
                receipt.accepted_at,
            )
        self._chains.stored(unstored)
        self._signature_chains.stored(signature_chains)
        return forwarded.hop_receipt

    async def handed_over(self, delivery_id: str, hub_code: str, receipt: bytes) -> bool:
        key = uuid.UUID(delivery_id)
        chain, stored = received_receipt(receipt)
        unstored = self._chains.unstored([chain] if chain is not None else [])
        async with self._pool.acquire() as conn, conn.transaction():
            row = (await lock_copies(conn, [key])).get(key)
            if row is None or row.copy.state is DeliveryState.WITHDRAWN:
                return False
            decided = delivery.acknowledge(row.ref, row.copy, row.now)
            if decided.already:
                return True
            await save_copies(conn, {key: decided.copy})
            await self._chains.store(conn, unstored)
            await conn.execute(
                "UPDATE exchange.delivery SET hop_receipt = $2 WHERE id = $1", key, stored
            )
            forwarded = row.ref.event(
                "delivery",
                row.now,
                {
                    "event": "forwarded",
                    "hub": hub_code,
                    # Of the bytes the peer signed and sent, the ones served (not those stored).
                    "hop_receipt_sha256": hashlib.sha256(receipt).hexdigest(),
                },
            )
            await stage_ledger_events(conn, [*decided.events, forwarded])
        self._chains.stored(unstored)
        return True

    async def handover_failed(self, failures: Mapping[str, HandoverFailure]) -> None:
        async with self._pool.acquire() as conn:
            await record_failures(
                conn, {uuid.UUID(delivery_id): failure for delivery_id, failure in failures.items()}
            )

    async def refused(
        self, delivery_id: str, hub_code: str, reason: str, retry_at: RetryRule
    ) -> dt.datetime | None:
        key = uuid.UUID(delivery_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = (await lock_copies(conn, [key])).get(key)
            if row is None:
                return None
            timing = await conn.fetchrow(
                "SELECT accepted_at, refusals FROM exchange.delivery WHERE id = $1", key
            )
            if timing is None:  # pragma: no cover - locked just above
                return None
            at = retry_at(timing["accepted_at"], timing["refusals"], row.now)
            if at is not None:
                waiting = delivery.refused_for_now(row.ref, row.copy, hub_code, reason, at, row.now)
                if waiting is None:
                    return None
                await save_copies(conn, {key: waiting.copy})
                await conn.execute(
                    "UPDATE exchange.delivery SET retry_at = $2, refusals = refusals + 1 "
                    "WHERE id = $1",
                    key,
                    at,
                )
                await stage_ledger_events(conn, waiting.events)
                return at
            decided = delivery.dead_letter(row.ref, row.copy, f"{hub_code}:{reason}", row.now)
            if decided is None:
                return None
            await save_copies(conn, {key: decided.copy})
            events = list(decided.events)
            # The sender hears of it (a 02 back along the hops when it is on another hub), once
            # per copy: a resent copy refused again is only dead-lettered again.
            status = delivery.undeliverable(row.ref, hub_code, reason, row.now)
            told = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM exchange.delivery_status "
                "WHERE delivery_id = $1 AND status_id = $2)",
                key,
                status.report.status_id,
            )
            if not told:
                status_row = await insert_status(conn, key, status)
                ((notice_id, _),) = await queue_status_notices(
                    conn,
                    [(NewNotice(row.ref.sender, delivery_id), status_row)],
                    row.now,
                    self._notices,
                )
                events.append(delivery.status_event(row.ref, status, notice_id))
                await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
            await stage_ledger_events(conn, events)
        return None

    async def requeue_refused(self, hub_code: str, limit: int) -> dt.datetime | None:
        async with self._pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED: a copy another transaction holds is taken next time (and two lockers
            # never wait on each other here).
            due = await conn.fetch(
                """
                SELECT id, document_uuid, recipient, state FROM exchange.delivery
                WHERE via_hub = $1 AND retry_at <= now()
                ORDER BY retry_at, id LIMIT $2
                FOR UPDATE SKIP LOCKED
                """,
                hub_code,
                limit,
            )
            if due:
                await conn.execute(
                    "UPDATE exchange.delivery SET retry_at = NULL WHERE id = ANY($1::uuid[])",
                    [r["id"] for r in due],
                )
                waiting = [
                    (str(r["document_uuid"]), r["recipient"], str(r["id"]))
                    for r in due
                    if DeliveryState(r["state"]) in delivery.PENDING_STATES
                ]
                await stage_delivery_messages(conn, waiting)
                await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
            next_at: dt.datetime | None = await conn.fetchval(
                "SELECT min(retry_at) FROM exchange.delivery "
                "WHERE via_hub = $1 AND retry_at IS NOT NULL",
                hub_code,
            )
        return next_at

    async def in_transit(self, delivery_id: str) -> bool:
        state: str | None = await self._pool.fetchval(
            "SELECT state FROM exchange.delivery WHERE id = $1", uuid.UUID(delivery_id)
        )
        return state is not None and (
            DeliveryState(state) in delivery.PENDING_STATES
            or DeliveryState(state) is DeliveryState.ACKNOWLEDGED
        )

    async def forwards_to(self, document_uuid: str, hub_code: str) -> bool:
        found: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM exchange.delivery WHERE document_uuid = $1 "
            "AND via_hub = $2)",
            uuid.UUID(document_uuid),
            hub_code,
        )
        return found

    async def local_copy(self, origin_document_uuid: str, recipient: str) -> tuple[str, str] | None:
        row = await self._pool.fetchrow(
            """
            SELECT d.document_uuid, d.id FROM exchange.delivery d
            JOIN exchange.document doc ON doc.uuid = d.document_uuid
            WHERE (doc.origin_uuid = $1 OR (doc.uuid = $1 AND doc.origin_uuid IS NULL))
              AND (d.recipient = $2 OR d.requested_recipient = $2)
            ORDER BY d.recipient = $2 DESC LIMIT 1
            """,
            uuid.UUID(origin_document_uuid),
            recipient,
        )
        return None if row is None else (str(row["document_uuid"]), str(row["id"]))


async def _add_copy(
    conn: Conn, document: uuid.UUID, receipt: Receipt, events: Sequence[LedgerEvent]
) -> None:
    """Another recipient's copy of a document an earlier copy brought here."""
    (route,) = receipt.routes
    position = await conn.fetchval(
        "SELECT coalesce(max(position) + 1, 0) FROM exchange.delivery WHERE document_uuid = $1",
        document,
    )
    await conn.execute(
        """
        INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient,
            recipient, state, accepted_at, via_hub, due_date)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8, (header ->> 'due_date')::date
        FROM exchange.document WHERE uuid = $2
        """,
        uuid.UUID(route.delivery_id),
        document,
        position,
        route.requested_recipient,
        route.effective_recipient,
        DeliveryState.ACCEPTED.value,
        receipt.accepted_at,
        route.hub,
    )
    await stage_delivery_messages(
        conn, [(str(document), route.effective_recipient, route.delivery_id)]
    )
    await stage_ledger_events(
        conn,
        [
            LedgerEvent(
                e.entry_type,
                str(document),
                e.document_id,
                e.occurred_at,
                e.from_agency,
                e.to_agency,
                e.data,
            )
            for e in events
        ],
    )
    await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
