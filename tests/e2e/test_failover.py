"""docaxis as a real process while a RabbitMQ node or the Postgres primary fails under load."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from services.common.postgres import recreate_database
from tests.e2e.conftest import register
from tests.e2e.mail_load import MailLoad
from tests.e2e.processes import AxisProcess
from tests.infra import RabbitCluster, SuiteServices
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

DOCUMENTS = 60
FAULT_AFTER = 20


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
        load = MailLoad(axis, sender, recipient)
        receiving = asyncio.create_task(load.receive())
        sending = asyncio.create_task(load.send(DOCUMENTS))
        try:
            await eventually(
                lambda: _count(load.acknowledged), lambda n: n >= FAULT_AFTER, within=30
            )
            await asyncio.to_thread(rabbit_cluster.kill_node, 1)
            try:
                async with asyncio.timeout(120):
                    await sending
                await load.settled(within=60)
                # A bounded wait for a late duplicate, with the stream still open.
                await asyncio.sleep(1.5)
            except TimeoutError:
                events = ("broker_", "outbox_relay_failed", "receive_stream", "health_changed")
                seen = [line for line in axis.logs().splitlines() if any(e in line for e in events)]
                pytest.fail(
                    f"the load did not complete: {load.describe()}\n"
                    f"queues: {rabbit_cluster.queues(node=2)}\n" + "\n".join(seen[:40])
                )
            finally:
                await asyncio.to_thread(rabbit_cluster.start_node, 1)
        finally:
            for task in (sending, receiving):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert load.duplicates == 0
        assert sorted(load.acknowledged) == sorted(load.accepted)
        assert len(load.accepted) == DOCUMENTS
        others = [f"127.0.0.1:{port}" for port in rabbit_cluster.amqp_ports[1:]]
        moved = [line for line in axis.logs().splitlines() if "broker_connected" in line]
        assert any(node in line for line in moved for node in others), moved
    finally:
        assert await axis.terminate() == 0, axis.logs()


async def _count(items: dict[str, str]) -> int:
    return len(items)
