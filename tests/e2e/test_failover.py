"""docaxis as a real process while a RabbitMQ node or the Postgres primary fails under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from grpc_health.v1 import health_pb2

from services.common.postgres import recreate_database
from tests.e2e.audit import export_and_verify
from tests.e2e.conftest import register
from tests.e2e.mail_load import MailLoad
from tests.e2e.processes import AxisProcess, wait_for_health
from tests.infra import PostgresPair, RabbitCluster, SuiteServices
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DOCUMENTS = 60
FAULT_AFTER = 20


async def _under_load(load: MailLoad, fault: Callable[[], Awaitable[None]]) -> str:
    """Runs `load` (DOCUMENTS documents); once FAULT_AFTER are acknowledged, `fault` runs
    while the rest are being sent; returns once every accepted document was acknowledged and
    a bounded wait saw no late duplicate. Returns what the load saw, for messages."""
    receiving = asyncio.create_task(load.receive())
    sending = asyncio.create_task(load.send(DOCUMENTS))
    try:
        await eventually(lambda: _count(load.acknowledged), lambda n: n >= FAULT_AFTER, within=30)
        await fault()
        async with asyncio.timeout(120):
            await sending
        await load.settled(within=60)
        await asyncio.sleep(1.5)  # a late duplicate would arrive on the open stream
    except TimeoutError:
        pytest.fail(f"the load did not complete: {load.describe()}\n{load.axis.logs()[-4000:]}")
    finally:
        for task in (sending, receiving):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert load.duplicates == 0, load.describe()
    assert sorted(load.acknowledged) == sorted(load.accepted), load.describe()
    assert len(load.accepted) == DOCUMENTS, load.describe()
    return load.describe()


async def _count(items: dict[str, str]) -> int:
    return len(items)


def _logged(axis: AxisProcess, event: str) -> list[str]:
    return [line for line in axis.logs().splitlines() if f'"{event}"' in line]


async def test_kill_9_of_the_rabbitmq_node_in_use_under_load_loses_and_duplicates_nothing(
    services: SuiteServices,
    rabbit_cluster: RabbitCluster,
    tmp_path: Path,
    ledger_key_file: Path,
) -> None:
    """docaxis knows the three nodes and uses the first; kill -9 of that node while documents
    flow: docaxis moves to a live node, what the relay had not got confirmed is published
    again, the recipient's stream comes back, and every accepted document reaches the recipient
    once (none pushed again after its acknowledgement)."""
    database = await recreate_database(services.database_url, "docaxis_rabbit_failover")
    axis = AxisProcess(database, rabbit_cluster.url, tmp_path, ledger_key_file)
    await axis.start()
    try:
        sender, recipient = await register(axis, 2)

        async def kill_node_1() -> None:
            await asyncio.to_thread(rabbit_cluster.kill_node, 1)

        try:
            await _under_load(MailLoad(axis, sender, recipient), kill_node_1)
        finally:
            await asyncio.to_thread(rabbit_cluster.start_node, 1)
        others = [f"127.0.0.1:{port}" for port in rabbit_cluster.amqp_ports[1:]]
        moved = _logged(axis, "broker_connected")
        assert any(node in line for line in moved for node in others), moved
    finally:
        assert await axis.terminate() == 0, axis.logs()


async def test_the_postgres_primary_dies_under_load_and_the_promoted_standby_takes_over(
    services: SuiteServices,
    postgres_pair: PostgresPair,
    tmp_path: Path,
    ledger_key_file: Path,
) -> None:
    """docaxis on the two-host URL (target_session_attrs=read-write); kill -9 of the primary
    while documents flow: health goes NOT_SERVING, the standby is promoted, health comes back to
    SERVING and the load completes: nothing acknowledged is lost (commits waited for the
    synchronous standby), nothing duplicated, the ledger writer leads again on the new primary
    and the ledger verifies in full."""
    axis = AxisProcess(postgres_pair.url, services.amqp_url, tmp_path, ledger_key_file)
    await axis.start()  # migrates through the two-host URL
    try:
        standby = await asyncpg.connect(postgres_pair.primary_url)
        try:
            state = await standby.fetchval(
                "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
            )
        finally:
            await standby.close()
        assert state == "sync"
        sender, recipient = await register(axis, 2)
        load = MailLoad(axis, sender, recipient)

        async def fail_over() -> None:
            await asyncio.to_thread(postgres_pair.script, "kill")
            await wait_for_health(axis.address, NOT_SERVING, 30)
            await asyncio.to_thread(postgres_pair.script, "promote")
            await wait_for_health(axis.address, SERVING, 60)

        await _under_load(load, fail_over)
        assert len(_logged(axis, "ledger_leader_acquired")) >= 2, axis.logs()[-4000:]
        db = await asyncpg.connect(postgres_pair.url)
        try:
            await _ledger_caught_up(db)
            logged = await db.fetchval(
                "SELECT count(DISTINCT doc_id) FROM ledger.entry "
                "WHERE entry_type = 'submission' AND doc_id = ANY($1::uuid[])",
                load.accepted,
            )
            assert logged == len(load.accepted)
        finally:
            await db.close()
    finally:
        assert await axis.terminate() == 0, axis.logs()
    await export_and_verify(postgres_pair.url, ledger_key_file, tmp_path)


async def _ledger_caught_up(db: asyncpg.Connection) -> None:
    """Waits until every staged event is sequenced and a signed checkpoint covers the log."""
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM ledger.pending"), lambda n: n == 0, within=60
    )
    size = await db.fetchval("SELECT size FROM ledger.tree_state")
    await eventually(
        lambda: db.fetchval("SELECT coalesce(max(size), 0) FROM ledger.checkpoint"),
        lambda signed: signed >= size,
        within=60,
    )
