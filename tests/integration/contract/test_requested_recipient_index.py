"""The copies requested of an agency that went to another (its successor after a merger) are
indexed apart, and only they (migration 0040): a copy whose requested recipient is its recipient,
every copy on the delivery path, writes no entry there at any of its state changes, and the
console's search by recipient still finds both kinds."""

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
