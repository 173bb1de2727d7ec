"""docaxis against a three-node RabbitMQ cluster: quorum queues on every node, and a connection
that moves to a live node when its own dies."""

from __future__ import annotations

import aio_pika
import pytest

from services.common import rabbit
from services.exchange.adapters.rabbit import declare_inbox, declare_topology, inbox_queue_name
from tests.e2e.processes import free_port
from tests.infra import RabbitCluster
from tests.waiting import eventually


def test_a_broker_url_names_one_node_or_several() -> None:
    assert rabbit.node_urls("amqp://a:5672/") == ["amqp://a:5672/"]
    assert rabbit.node_urls(" amqp://a:5672/ , amqp://b:5673/,") == [
        "amqp://a:5672/",
        "amqp://b:5673/",
    ]
    with pytest.raises(ValueError, match="no broker URL"):
        rabbit.node_urls(" , ")


async def test_an_inbox_queue_is_a_quorum_queue_with_a_member_on_every_node(
    rabbit_cluster: RabbitCluster,
) -> None:
    await _declare_inbox(rabbit_cluster, "000.00.01.H99")
    queue = rabbit_cluster.queues()[inbox_queue_name("000.00.01.H99")]
    assert queue["type"] == "quorum"
    assert sorted(queue["members"]) == sorted(rabbit_cluster.node_names)


# The tick deploy/local/rabbitmq.sh gives quorum queues (its QUORUM_TICK_MS).
QUORUM_TICK_MS = 30_000
# The tick a node's member of a queue runs with: Ra keeps each member's configuration from when
# the queue was declared (RabbitMQ 3.10 restarts a member with it), so this is what the member
# uses, not only what the node's environment says.
MEMBER_TICK = """
{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"%s">>)),
{RaName, _} = amqqueue:get_pid(Q),
UId = ra_directory:uid_of(quorum_queues, RaName),
{ok, Config} = ra_log:read_config(ra_env:server_data_dir(quorum_queues, UId)),
maps:get(tick_timeout, Config).
"""


async def test_every_member_of_an_inbox_queue_ticks_as_configured(
    rabbit_cluster: RabbitCluster,
) -> None:
    """3,000 idle inbox queues cost a node 0.24 of a core at RabbitMQ's 5-s tick (docs/perf,
    "Quorum queues' idle tick"): every node's member of an inbox runs with the script's tick."""
    await _declare_inbox(rabbit_cluster, "000.00.01.H98")
    name = inbox_queue_name("000.00.01.H98")
    ticks = [rabbit_cluster.rabbitmqctl(node, "eval", MEMBER_TICK % name) for node in (1, 2, 3)]
    assert [tick.strip() for tick in ticks] == [str(QUORUM_TICK_MS)] * 3


async def test_a_connection_skips_a_dead_node_and_moves_on_when_its_node_dies(
    rabbit_cluster: RabbitCluster,
) -> None:
    """A node that refuses is skipped at connect; kill -9 of the node in use moves the robust
    connection to a live one, where its channel publishes with confirms again."""
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    connection = await rabbit.connect(",".join([dead, *rabbit_cluster.node_urls]), name="test")
    try:
        first = rabbit_cluster.amqp_ports[0]
        assert connection.url.port == first
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "test.failover", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.default_exchange.publish(aio_pika.Message(b"before"), "test.failover")
        try:
            rabbit_cluster.kill_node(1)

            async def moved() -> bool:
                return rabbit.is_connected(connection) and connection.url.port != first

            await eventually(moved, within=30, every=0.1)
            confirmed = await eventually(lambda: _publish(channel), within=30, every=0.2)
            assert confirmed
            first_body = await queue.get(no_ack=True, timeout=10)
            second_body = await queue.get(no_ack=True, timeout=10)
            assert [first_body.body, second_body.body] == [b"before", b"after"]
        finally:
            rabbit_cluster.start_node(1)
    finally:
        await connection.close()


async def _publish(channel: aio_pika.abc.AbstractChannel) -> bool:
    """True once a message is confirmed (the channel may still be being restored)."""
    try:
        await channel.default_exchange.publish(aio_pika.Message(b"after"), "test.failover")
    except rabbit.BROKER_ERRORS:
        return False
    return True


async def _declare_inbox(cluster: RabbitCluster, agency_code: str) -> None:
    connection = await rabbit.connect(cluster.url, name="test")
    try:
        channel = await connection.channel()
        exchange = await declare_topology(channel)
        await declare_inbox(channel, exchange, agency_code)
    finally:
        await connection.close()
