"""serve() cleans up after itself: a configuration error opens nothing, and a failure after the
background jobs started leaves no task running and no connection open."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncpg
import pytest

from services.bootstrap.plan import ALL_COMPONENTS, Component
from services.bootstrap.serve import serve
from services.common.config import ConfigError
from tests.conftest import settings_for
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration


class ReadyFailed(Exception):
    """Raised by on_ready, after every background job has started."""


def _jobs() -> set[asyncio.Task[object]]:
    """The background jobs of every serve() in this process (other tests' servers included)."""
    return {
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "_supervised"
    }


async def _connections(database_url: str) -> int:
    """Backends connected to the test database, this probe's own excluded."""
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


async def test_a_configuration_error_is_raised_before_anything_opens(
    services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> None:
    """No key file for the ledger: ConfigError, although the database is unreachable (it was
    never tried) and no task was started."""
    settings = dataclasses.replace(
        settings_for(
            "postgresql://postgres@127.0.0.1:1/none", services.amqp_url, ledger_key_file, pki=pki
        ),
        ledger_key_file=None,
    )
    before = _jobs()
    with pytest.raises(ConfigError, match="DOCAXIS_LEDGER_KEY_FILE"):
        await serve(settings, asyncio.Event(), ALL_COMPONENTS)
    assert _jobs() - before == set()


async def test_a_failure_after_the_jobs_started_ends_every_job_and_closes_every_pool(
    database_url: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> None:
    """The relay, sweeps, revocations, ledger writer and health watcher had started when the
    failure came (on_ready): serve raises it, and nothing of this serve() is left behind."""
    settings = settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki)
    connected = await _connections(database_url)
    before = _jobs()
    running: list[str] = []

    def ready(_port: int) -> None:
        running.extend(sorted(task.get_name() for task in _jobs() - before))
        raise ReadyFailed

    with pytest.raises(ReadyFailed):
        await serve(settings, asyncio.Event(), ALL_COMPONENTS, on_ready=ready)
    assert {"outbox-relay", "ledger-writer", "revocations", "health", "stream-channels"} <= set(
        running
    )
    assert _jobs() - before == set()
    await eventually(lambda: _connections(database_url), lambda n: n <= connected, within=10)


async def test_the_ledger_serves_alone_without_a_broker(
    database_url: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> None:
    """python -m services.ledger's process: no DOCAXIS_AMQP_URL needed; it stops cleanly."""
    settings = dataclasses.replace(
        settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki), amqp_url=None
    )
    stop = asyncio.Event()
    before = _jobs()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop, {Component.LEDGER}, on_ready=ready.set_result))
    async with asyncio.timeout(30):
        assert await ready > 0
    stop.set()
    async with asyncio.timeout(30):
        await task
    assert _jobs() - before == set()
