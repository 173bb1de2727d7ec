"""The copies' indexes that every state change of a copy writes (none of its updates is HOT),
narrowed (migration 0040): the copies requested of an agency that went to another (its successor
after a merger) are indexed apart, and only they, and a recipient's copies are keyed without
their state, so that the versions of one copy share a key; the console's search by recipient
still finds both kinds."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.service_layer.admin_ports import DocumentQuery
from tests.integration.contract.conftest import unique
from tests.integration.contract.test_document_store_contract import a_submission, send

pytestmark = pytest.mark.integration


async def test_copies_are_indexed_by_requested_recipient_only_when_it_is_not_theirs(
    pool: asyncpg.Pool,
) -> None:
    definitions = await pool.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition "
        "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = 'exchange.delivery'::regclass AND a.attname = 'requested_recipient'"
    )
    assert [(row["name"], row["definition"].split(" WHERE ")[-1]) for row in definitions] == [
        ("exchange.delivery_requested_elsewhere", "(requested_recipient <> recipient)")
    ]


async def test_the_search_by_recipient_finds_copies_requested_of_it_and_those_it_received(
    pool: asyncpg.Pool,
) -> None:
    """A merger's successor gets the copies requested of its predecessor (the reroute changes a
    copy's recipient, never its requested one): a search by either finds the document."""
    sender, merged, successor, other = unique("S"), unique("M"), unique("N"), unique("O")
    docs = PostgresDocumentStore(pool)
    rerouted = await send(docs, a_submission(sender, [merged, other]))
    direct = await send(docs, a_submission(sender, [successor]))
    await pool.execute(
        "UPDATE exchange.delivery SET recipient = $2 WHERE id = $1",
        uuid.UUID(rerouted.receipt.routes[0].delivery_id),
        successor,
    )
    admin = PostgresAdminStore(pool)

    async def found(recipient: str) -> list[str]:
        page = await admin.search(DocumentQuery(recipient=recipient), None, 20)
        return [item.document.document_uuid for item in page]

    assert await found(merged) == [rerouted.receipt.document_uuid]
    # Both accepted at the contract's one time: in the order of their uuids.
    assert sorted(await found(successor)) == sorted(
        [direct.receipt.document_uuid, rerouted.receipt.document_uuid]
    )
    assert await found(other) == [rerouted.receipt.document_uuid]


# Copies accepted one after the other, each pushed 5 copies later and acknowledged 10 later, as
# on the delivery path: the versions of the copies of 10 recipients interleave.
_INTERLEAVED = """
DO $$
BEGIN
    FOR i IN 1..2000 LOOP
        INSERT INTO copies (id, document_uuid, position, requested_recipient, recipient, state,
            accepted_at)
        VALUES (('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, gen_random_uuid(),
            0, 'R' || i % 10, 'R' || i % 10, 'accepted', now() + i * interval '1 ms');
        UPDATE copies SET state = 'pushed', push_count = 1
        WHERE id = ('00000000-0000-4000-8000-' || lpad(greatest(i - 5, 0)::text, 12, '0'))::uuid;
        UPDATE copies SET state = 'acknowledged'
        WHERE id = ('00000000-0000-4000-8000-' || lpad(greatest(i - 10, 0)::text, 12, '0'))::uuid;
    END LOOP;
END $$
"""


async def test_a_copys_versions_share_one_key_in_the_recipients_index(pool: asyncpg.Pool) -> None:
    """2,000 copies of 10 recipients, pushed and acknowledged as they come, in a table with
    delivery's indexes: the recipient's index stays smaller than the primary key (the versions of
    a copy deduplicated); keyed with the state (delivery_inbox), each version went to its state's
    place in the middle of the recipient's range: 1.5 times the primary key here, six in the
    bench."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE copies (LIKE exchange.delivery INCLUDING DEFAULTS INCLUDING INDEXES)"
            " ON COMMIT DROP"
        )
        await conn.execute(_INTERLEAVED)
        sizes = await conn.fetch(
            "SELECT a.attname, pg_relation_size(i.indexrelid) AS size FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = 'copies'::regclass AND a.attname IN ('id', 'recipient') "
            "AND i.indpred IS NULL"
        )
    size = {row["attname"]: row["size"] for row in sizes}
    assert size["recipient"] < size["id"], size
