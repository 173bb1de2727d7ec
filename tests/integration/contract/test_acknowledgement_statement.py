"""An acknowledgement group's writes are one statement (write_acknowledgements): the copies with
their transport receipts, the 01s, the status notices with their outbox rows, the notices they
coalesce and the ledger events, after the copies' lock, which reads what the notice decision
needs. Every row a group writes carries one command id, whatever the group holds: several
copies, a copy claimed twice, a re-acknowledgement (which writes nothing but its receipt if it
had none), a coalesced notice and a suppressed one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import asyncpg
import pytest

from docaxis_client.trust import TransportReceipt
from services.common import postgres
from services.exchange.adapters.postgres import OUTBOX_CHANNEL, PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import (
    ACKNOWLEDGED_CHANNEL,
    ACKNOWLEDGEMENT_LOCK_SQL,
    NOTICE_ACKNOWLEDGE_SQL,
    PostgresLifecycleStore,
)
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain.notices import NoticeFate, NoticeLimits
from services.exchange.service_layer.ports import Acknowledgement, DeliveryRecord
from tests.hub_receipts import hub_receipt
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send
from tests.query_plans import plan_nodes

pytestmark = pytest.mark.integration

EARLIER = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)
NOW = EARLIER + dt.timedelta(minutes=5)
MARKER = "test_acknowledgement_marker"
T = TypeVar("T")


def receipt(record: DeliveryRecord) -> TransportReceipt:
    return hub_receipt(record)


async def commands(pool: asyncpg.Pool, deliveries: Sequence[str]) -> list[asyncpg.Record]:
    """The (xmin, cmin) of every row an acknowledgement writes about `deliveries` (their
    copies, statuses, notices and the notices' outbox rows, their ledger events)."""
    return await pool.fetch(
        """
        SELECT 'copy' AS t, xmin::text, cmin::text FROM exchange.delivery
            WHERE id = ANY($1::uuid[])
        UNION ALL SELECT 'status', xmin::text, cmin::text FROM exchange.delivery_status
            WHERE delivery_id = ANY($1::uuid[])
        UNION ALL SELECT 'notice', xmin::text, cmin::text FROM exchange.notice
            WHERE delivery_id = ANY($1::uuid[])
        UNION ALL SELECT 'outbox', o.xmin::text, o.cmin::text FROM exchange.outbox o
            JOIN exchange.notice n ON o.message_id = n.id::text
            WHERE n.delivery_id = ANY($1::uuid[])
        UNION ALL SELECT 'ledger ' || entry_type, xmin::text, cmin::text FROM ledger.pending
            WHERE entry_type IN ('receipt', 'status') AND data ->> 'delivery' = ANY($2::text[])
        """,
        [uuid.UUID(d) for d in deliveries],
        list(deliveries),
    )


async def test_a_group_of_copies_is_written_by_one_statement(pool: asyncpg.Pool) -> None:
    """Two copies of one document, one of them claimed twice, a copy of another document
    acknowledged before and a claim for no copy, in one group: every row written carries one
    command id (there were eight statements), the copy acknowledged before has none of them,
    and the settled ids and the relay's wake-up are told at commit."""
    docs, lifecycle = PostgresDocumentStore(pool), PostgresLifecycleStore(pool)
    sender, codes = unique("S"), [unique("R"), unique("R"), unique("R")]
    sent = await send(docs, a_submission(sender, codes))
    first, second, _ = (r.delivery_id for r in sent.receipt.routes)
    earlier = (await send(docs, a_submission(unique("S"), [codes[0]]))).receipt.routes[0]
    await lifecycle.acknowledge_deliveries([(earlier.delivery_id, codes[0])], EARLIER, receipt)
    before = await commands(pool, [earlier.delivery_id])
    claims = [
        (first, codes[0]),
        (second, codes[1]),
        (first, codes[0]),
        (earlier.delivery_id, codes[0]),
        (str(uuid.uuid4()), codes[2]),
    ]
    heard = await _heard_at_commit(pool, lifecycle.acknowledge_deliveries(claims, NOW, receipt))
    outcomes, notifications = heard
    assert outcomes == [
        Acknowledgement(NOW, already_acknowledged=False),
        Acknowledgement(NOW, already_acknowledged=False),
        Acknowledgement(NOW, already_acknowledged=True),
        Acknowledgement(EARLIER, already_acknowledged=True),
        None,
    ]
    written = await commands(pool, [first, second])
    assert sorted(r["t"] for r in written) == sorted(
        ["copy", "status", "notice", "outbox", "ledger receipt", "ledger status"] * 2
    )
    assert len({(r["xmin"], r["cmin"]) for r in written}) == 1, [dict(r) for r in written]
    assert await commands(pool, [earlier.delivery_id]) == before
    assert (ACKNOWLEDGED_CHANNEL, f"{first},{second},{earlier.delivery_id}") in notifications
    assert (OUTBOX_CHANNEL, "") in notifications
    # Each notice carries its copy's 01, and its outbox row goes to the sender.
    rows = await pool.fetch(
        """
        SELECT s.code, s.recorded_at, o.routing_key FROM exchange.notice n
        JOIN exchange.delivery_status s ON s.id = n.status_row
        JOIN exchange.outbox o ON o.message_id = n.id::text
        WHERE n.delivery_id = ANY($1::uuid[])
        """,
        [uuid.UUID(first), uuid.UUID(second)],
    )
    assert [tuple(r) for r in rows] == [("01", NOW, sender)] * 2


async def test_a_re_acknowledgement_without_a_receipt_writes_the_receipt_alone(
    pool: asyncpg.Pool,
) -> None:
    """A copy acknowledged on the single-copy path, acknowledged again in a group: its
    receipt is stored (for the first acknowledgement's time), no 01, notice nor ledger event."""
    docs, lifecycle = PostgresDocumentStore(pool), PostgresLifecycleStore(pool)
    recipient = unique("R")
    sent = await send(docs, a_submission(unique("S"), [recipient]))
    delivery_id = sent.receipt.routes[0].delivery_id
    await docs.acknowledge(delivery_id, recipient, EARLIER)
    before = await commands(pool, [delivery_id])
    (outcome,) = await lifecycle.acknowledge_deliveries([(delivery_id, recipient)], NOW, receipt)
    assert outcome == Acknowledgement(EARLIER, already_acknowledged=True)
    record = await docs.delivery(delivery_id)
    assert record is not None
    assert record.transport_receipt == hub_receipt(record).to_json()
    assert TransportReceipt.from_json(record.transport_receipt).acknowledged_at == EARLIER
    after = await commands(pool, [delivery_id])
    assert [r["t"] for r in after if r not in before] == ["copy"]


async def test_a_coalesced_and_a_suppressed_notice_in_the_same_statement(
    pool: asyncpg.Pool,
) -> None:
    """The sender has one status notice waiting, not handed over, for the first copy (written
    here directly: the rules record no status before a copy's acknowledgement, but the
    decision must hold whatever waits). With notices coalescing from one and bounded at one,
    the first copy's 01 coalesces that notice and the second's is suppressed (recorded and
    ledgered without a notice), all in the statement that acknowledges them."""
    fates: list[NoticeFate] = []
    docs = PostgresDocumentStore(pool)
    lifecycle = PostgresLifecycleStore(
        pool, notices=NoticeLimits(bound=1, coalesce_after=1), on_notices=fates.extend
    )
    sender, codes = unique("S"), [unique("R"), unique("R")]
    sent = await send(docs, a_submission(sender, codes))
    first, second = (r.delivery_id for r in sent.receipt.routes)
    waiting = await _waiting_notice(pool, sender, first)
    outcomes = await lifecycle.acknowledge_deliveries(
        list(zip([first, second], codes, strict=True)), NOW, receipt
    )
    assert outcomes == [Acknowledgement(NOW, already_acknowledged=False)] * 2
    assert fates == [NoticeFate.COALESCED, NoticeFate.SUPPRESSED]
    new = await pool.fetchrow(
        "SELECT id, xmin::text, cmin::text FROM exchange.notice WHERE delivery_id = $1 "
        "AND id <> $2",
        uuid.UUID(first),
        waiting,
    )
    old = await pool.fetchrow(
        "SELECT acknowledged_at, coalesced_into, xmin::text, cmin::text FROM exchange.notice "
        "WHERE id = $1",
        waiting,
    )
    assert new is not None
    assert old is not None
    waited = await pool.fetchval(
        "SELECT xmin::text FROM exchange.delivery_status WHERE delivery_id = $1 "
        "AND status_id = 'waiting'",
        uuid.UUID(first),
    )
    assert (old["acknowledged_at"], old["coalesced_into"]) == (NOW, new["id"])
    written = [
        r
        for r in await commands(pool, [first, second])
        if not (r["t"] == "status" and r["xmin"] == waited)  # the waiting notice's status
    ]
    assert len({(r["xmin"], r["cmin"]) for r in written}) == 1, [dict(r) for r in written]
    assert (
        (new["xmin"], new["cmin"])
        == (old["xmin"], old["cmin"])
        == (
            written[0]["xmin"],
            written[0]["cmin"],
        )
    )
    suppressed = await pool.fetch(
        "SELECT data FROM ledger.pending WHERE entry_type = 'status' AND data ->> 'delivery' = $1",
        second,
    )
    assert len(suppressed) == 1
    assert "notice" not in suppressed[0]["data"]
    assert not await pool.fetchval(
        "SELECT count(*) FROM exchange.notice WHERE delivery_id = $1", uuid.UUID(second)
    )


async def test_a_group_takes_two_statements_between_begin_and_commit(
    pool: asyncpg.Pool, contract_database_url: str
) -> None:
    """The copies' lock reads what the notice decision needs in the same statement: a group
    with first acknowledgements sends BEGIN, the lock, the writes and COMMIT, where the
    decision's read was a round trip of its own between the lock and the writes."""
    # The documents Submit stored kept for their receipts, as a process shares them.
    kept = StoredDocuments()
    docs = PostgresDocumentStore(pool, kept=kept)
    sender, codes = unique("S"), [unique("R"), unique("R")]
    copies = [
        (r.delivery_id, r.effective_recipient)
        for r in (await send(docs, a_submission(sender, codes))).receipt.routes
    ]
    one = await postgres.create_pool(contract_database_url, min_size=1, max_size=1)
    try:
        lifecycle = PostgresLifecycleStore(one, kept=kept)
        # The first statements of a connection read the types they use (asyncpg's own).
        await lifecycle.acknowledge_deliveries(copies[:1], NOW, receipt)
        sent: list[str] = []
        async with one.acquire() as conn:
            conn.add_query_logger(lambda logged: sent.append(logged.query))
        outcomes = await lifecycle.acknowledge_deliveries(copies[1:], NOW, receipt)
    finally:
        await one.close()
    assert outcomes == [Acknowledgement(NOW, already_acknowledged=False)]
    assert [query.split()[0] for query in sent] == ["BEGIN;", "WITH", "WITH", "COMMIT;"]
    assert sent[1] == ACKNOWLEDGEMENT_LOCK_SQL
    # The 01's notice was decided and queued to the sender.
    assert (
        await pool.fetchval(
            "SELECT agency FROM exchange.notice WHERE delivery_id = $1", uuid.UUID(copies[1][0])
        )
        == sender
    )


async def test_notices_are_acknowledged_and_told_in_one_statement_after_their_lock(
    pool: asyncpg.Pool, contract_database_url: str
) -> None:
    """A group acknowledging notices sends BEGIN, the notices' lock, one statement and COMMIT
    (the acknowledgement and the NOTIFY of the ids settled were a statement each): the first
    acknowledgement is stored, the one acknowledged before answered with its time, a claim of
    another agency's notice refused, and the ids settled told at commit, each once."""
    docs = PostgresDocumentStore(pool)
    sender, codes = unique("S"), [unique("R"), unique("R")]
    first, second = (
        r.delivery_id for r in (await send(docs, a_submission(sender, codes))).receipt.routes
    )
    fresh = await _waiting_notice(pool, sender, first)
    earlier = await _waiting_notice(pool, sender, second)
    one = await postgres.create_pool(contract_database_url, min_size=1, max_size=1)
    try:
        lifecycle = PostgresLifecycleStore(one)
        # The first statements of a connection read the types they use (asyncpg's own).
        await lifecycle.acknowledge_notices([(str(earlier), sender)], EARLIER)
        sent: list[str] = []
        async with one.acquire() as conn:
            conn.add_query_logger(lambda logged: sent.append(logged.query))
        claims = [
            (str(fresh), sender),
            (str(earlier), sender),
            (str(fresh), sender),
            (str(fresh), unique("X")),
        ]
        outcomes, notifications = await _heard_at_commit(
            pool, lifecycle.acknowledge_notices(claims, NOW)
        )
    finally:
        await one.close()
    assert outcomes == [
        Acknowledgement(NOW, already_acknowledged=False),
        Acknowledgement(EARLIER, already_acknowledged=True),
        Acknowledgement(NOW, already_acknowledged=True),
        None,
    ]
    assert [query.split()[0] for query in sent] == ["BEGIN;", "SELECT", "WITH", "COMMIT;"]
    assert sent[2] == NOTICE_ACKNOWLEDGE_SQL
    assert [n for n in notifications if n[0] != MARKER] == [
        (ACKNOWLEDGED_CHANNEL, f"{fresh},{earlier}")
    ]
    stored = await pool.fetch(
        "SELECT id, acknowledged_at, pushed_at FROM exchange.notice WHERE id = ANY($1::uuid[])",
        [fresh, earlier],
    )
    assert {r["id"]: (r["acknowledged_at"], r["pushed_at"]) for r in stored} == {
        fresh: (NOW, NOW),
        earlier: (EARLIER, EARLIER),
    }


async def test_a_pooled_session_plans_the_groups_statements_once(
    pool: asyncpg.Pool, contract_database_url: str
) -> None:
    """The pools' sessions plan each prepared statement once (postgres.PLANNER_SETTINGS): seven
    acknowledgement groups on one connection run the lock and the writes on their generic
    plans, where Postgres's default planned each again at every execution (custom plans, a
    quarter of its CPU per document on the delivery path)."""
    docs = PostgresDocumentStore(pool)
    groups = 7  # more than the five custom plans the default makes before it compares
    copies = [
        (r.delivery_id, r.effective_recipient)
        for _ in range(groups)
        for r in (await send(docs, a_submission(unique("S"), [unique("R")]))).receipt.routes
    ]
    one = await postgres.create_pool(contract_database_url, min_size=1, max_size=1)
    try:
        lifecycle = PostgresLifecycleStore(one)
        for copy in copies:
            assert await lifecycle.acknowledge_deliveries([copy], NOW, receipt) == [
                Acknowledgement(NOW, already_acknowledged=False)
            ]
        plans = await one.fetch(
            """
            SELECT statement = $1 AS lock, generic_plans, custom_plans
            FROM pg_prepared_statements
            WHERE statement = $1 OR statement LIKE $2
            ORDER BY 1 DESC
            """,
            ACKNOWLEDGEMENT_LOCK_SQL,
            "%WITH saved AS (%UPDATE exchange.delivery%",
        )
    finally:
        await one.close()
    assert [tuple(r) for r in plans] == [(True, groups, 0), (False, groups, 0)]


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_lock_counts_each_senders_waiting_notices_once(
    pool: asyncpg.Pool, plan_mode: str
) -> None:
    """Three copies of one sender's document, locked for a group: its waiting notices are
    counted once, whatever the group holds of it (a count joined to the copies ran once per
    copy in the custom plan, walking the sender's waiting notices three times here, a
    thousand times for a circular's group)."""
    docs = PostgresDocumentStore(pool)
    sender = unique("S")
    sent = await send(docs, a_submission(sender, [unique("R") for _ in range(3)]))
    for route in sent.receipt.routes:
        await _waiting_notice(pool, sender, route.delivery_id)
    keys = [uuid.UUID(route.delivery_id) for route in sent.receipt.routes]
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
            await conn.execute(f"PREPARE acknowledging AS {ACKNOWLEDGEMENT_LOCK_SQL}")
            literal = "ARRAY[" + ",".join(f"'{key}'" for key in keys) + "]::uuid[]"
            explained = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE acknowledging({literal})"
            )
        finally:
            await transaction.rollback()
            await conn.execute("DEALLOCATE acknowledging")
    counts = [
        node
        for node in plan_nodes(json.loads(explained)[0]["Plan"])
        if node["Node Type"] == "Aggregate" and node["Strategy"] == "Plain"  # the count(*)
    ]
    assert [(node["Actual Loops"], node["Actual Rows"]) for node in counts] == [(1, 1)]


async def _waiting_notice(pool: asyncpg.Pool, agency: str, delivery_id: str) -> uuid.UUID:
    """A status notice for `agency` about the copy, waiting and not handed over."""
    notice_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        status_row = await conn.fetchval(
            """
            INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at,
                recorded_at, description, staff, reported_by)
            VALUES ($1, 'waiting', '02', $2, $2, '', '{}', 'X') RETURNING id
            """,
            uuid.UUID(delivery_id),
            EARLIER,
        )
        await conn.execute(
            """
            INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at)
            VALUES ($1, $2, 'status', $3, $4, $5)
            """,
            notice_id,
            agency,
            uuid.UUID(delivery_id),
            status_row,
            EARLIER,
        )
    return notice_id


async def _heard_at_commit(
    pool: asyncpg.Pool, acknowledging: Awaitable[T]
) -> tuple[T, list[tuple[str, str]]]:
    """What `acknowledging` returns, and the notifications heard once it did (one listening
    session hears in commit order, so a marker sent afterwards tells that all have arrived)."""
    heard: list[tuple[str, str]] = []
    marker = asyncio.Event()
    listener = await pool.acquire()

    def hear(_conn: object, _pid: int, channel: str, payload: object) -> None:
        heard.append((channel, str(payload)))
        if channel == MARKER:
            marker.set()

    try:
        for channel in (ACKNOWLEDGED_CHANNEL, OUTBOX_CHANNEL, MARKER):
            await listener.add_listener(channel, hear)
        result = await acknowledging
        await pool.execute(f"NOTIFY {MARKER}")
        await asyncio.wait_for(marker.wait(), timeout=10)
    finally:
        for channel in (ACKNOWLEDGED_CHANNEL, OUTBOX_CHANNEL, MARKER):
            await listener.remove_listener(channel, hear)
        await pool.release(listener)
    return result, heard
