"""A database of the contract tests' own, on the suite's Postgres, and a pool to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.common.postgres import recreate_database


def unique(prefix: str) -> str:
    """A QĐ 20 identifier no other test uses: `prefix` and ten upper-case hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture(scope="session")
async def contract_database_url(database_url: str) -> str:
    """A migrated database next to `database_url`'s. The `axis` fixture runs an outbox relay on
    that one, which would drain outbox rows and queue deliveries under the contract's feet."""
    url = await recreate_database(database_url, "docaxis_contract")
    await migrate(url)
    return url


@pytest.fixture(scope="session")
async def pool(contract_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await postgres.create_pool(contract_database_url, min_size=1, max_size=4)
    yield created
    await created.close()
