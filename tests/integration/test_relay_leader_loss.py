"""The outbox relay, its connection on a surviving node, through the death of the node that leads
its agencies' quorum queues.

RabbitMQ 3.10 rejects (basic.nack) every publish of a channel to a quorum queue when that
channel's first publish to the queue came while the queue's record still named the leader on
the lost node: the channel keeps asking that node, dead, which version of the queue's machine
it runs, for as long as the node stays down (docs/perf/README.md, "The publisher through a
quorum leader's death"). A channel that published to the queue before is told of the new leader
and goes on; one whose first publish comes once the new leader is recorded is accepted. The
relay's publisher gets there by replacing a channel that was refused.

The election normally follows the node's death within a second: here the queues' surviving
members are suspended from before the kill until the relay has been refused on a channel and on
its replacement, so that the window is there on every run, however fast the election.

A node that hangs instead (SIGSTOP: its sockets open, nothing answered, as in a partition or a
frozen VM) does not answer that question either: the channel's process, and every publish behind
it on that channel, waits (an rpc:call with no timeout) until the node goes on or is declared
down (net_ticktime, 45-75 s), and a batch confirmed whole waited with it, for every agency. The
relay holds what that channel has not confirmed, keeps its agencies' later rows back, and goes
on with the others; the held messages are confirmed once the node goes on (docs/perf/README.md,
"A hung RabbitMQ node")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aio_pika
import asyncpg
import pytest

from services.bootstrap.migrations import migrate
from services.common import postgres, rabbit
from services.common.postgres_notifications import PostgresListener
from services.exchange.adapters.postgres import OUTBOX_CHANNEL, PostgresOutbox
from services.exchange.adapters.rabbit import (
    PUBLISH_CHANNELS,
    Held,
    OutboundMessage,
    RabbitInbox,
    RabbitPublisher,
    declare_inbox,
    declare_topology,
    inbox_queue_name,
    lane_of,
)
from services.exchange.entrypoints.relay import OutboxRelay
from tests.conftest import unique_code
from tests.infra import RabbitCluster, SuiteServices
from tests.integration.test_outbox_relay import a_document
from tests.waiting import eventually

pytestmark = pytest.mark.integration

# Suspends or resumes, on the given nodes, each named queue's Raft member.
MEMBERS = """
Member = fun(Name) ->
    {ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, Name)),
    {RaName, _} = amqqueue:get_pid(Q),
    RaName
end,
[rpc:call(Node, sys, %s, [Member(Name)]) || Name <- [%s], Node <- [%s]].
"""


@pytest.fixture
async def relay_database(services: SuiteServices) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of this test's own (the relay takes every row of the outbox): URL and pool."""
    url = await postgres.recreate_database(services.database_url, "docaxis_leader_loss")
    await migrate(url)
    pool = await postgres.create_pool(url, min_size=1, max_size=4)
    yield url, pool
    await pool.close()


async def test_the_relay_on_a_surviving_node_delivers_through_its_queues_leader_loss(
    rabbit_cluster: RabbitCluster, relay_database: tuple[str, asyncpg.Pool]
) -> None:
    """Agencies `early` and `late`, their queues led by node 1; the relay and both agencies'
    streams on node 2. A copy to `early` before node 1 is killed; one to `late` (the first its
    lane's channel sends there) while the election is held: refused on that channel and on the
    next; one to each still held, one to each once elected. Every copy reaches its stream, in
    order, at least once."""
    database_url, relay_pool = relay_database
    early, late = _on_different_lanes()
    await _declare_through(rabbit_cluster, 1, [early, late])
    queues = rabbit_cluster.queues(2)
    leader = rabbit_cluster.node_names[0]
    assert [queues[inbox_queue_name(c)]["leader"] for c in (early, late)] == [leader, leader]

    survivors = [*rabbit_cluster.node_urls[1:], rabbit_cluster.node_urls[0]]
    connection = await rabbit.connect(",".join(survivors), name="test-leader-loss")
    assert connection.url.port == rabbit_cluster.amqp_ports[1]
    publisher, inbox = RabbitPublisher(connection), RabbitInbox(connection)
    refused = 0

    async def publish(messages: Sequence[OutboundMessage]) -> list[Held]:
        nonlocal refused
        try:
            return await publisher.publish_batch(messages)
        except aio_pika.exceptions.DeliveryError:
            refused += 1
            raise

    outbox = PostgresOutbox(relay_pool)
    listener = PostgresListener(database_url)
    relay = OutboxRelay(
        listener.channel(OUTBOX_CHANNEL),
        lambda limit: outbox.relay_batch(limit, publish),
        finish=outbox.finish,
    )
    seen: dict[str, list[str]] = {early: [], late: []}
    stop = asyncio.Event()
    running = [
        asyncio.create_task(relay.run(stop)),
        *(asyncio.create_task(_stream(inbox, code, seen[code])) for code in seen),
    ]
    sent: dict[str, list[str]] = {early: [], late: []}

    async def send(*recipients: str) -> None:
        receipt = await a_document(relay_pool, recipients)
        for route in receipt.routes:
            sent[route.effective_recipient].append(route.delivery_id)

    async def arrived() -> bool:
        return all(set(sent[code]) <= set(seen[code]) for code in sent)

    try:
        await send(early)
        await eventually(arrived, within=30)
        await asyncio.to_thread(_members, rabbit_cluster, "suspend", [early, late])
        try:
            await asyncio.to_thread(rabbit_cluster.kill_node, 1)
            await send(late)

            async def refused_twice() -> bool:
                return refused >= 2  # the lane's channel, then the one that replaced it

            await eventually(refused_twice, within=30)
            await send(early, late)
        finally:
            await asyncio.to_thread(_members, rabbit_cluster, "resume", [early, late])
        await send(early, late)
        await eventually(arrived, within=30)
        for code in sent:
            assert list(dict.fromkeys(seen[code])) == sent[code]  # in order, duplicates aside
    finally:
        await _stopped(stop, running, publisher, inbox)
        await connection.close()
        await listener.close()
        await asyncio.to_thread(rabbit_cluster.start_node, 1)


async def test_the_relay_delivers_to_agencies_led_elsewhere_while_a_node_hangs(
    rabbit_cluster: RabbitCluster, relay_database: tuple[str, asyncpg.Pool]
) -> None:
    """`hung`'s queue led by node 1, `healthy`'s by node 2, on different lanes; the relay and
    both streams on node 2. A copy to `healthy`; node 1 hangs; a copy to both (`hung`'s the
    first its lane's channel sends there), then, once `healthy`'s has arrived, more to each:
    every copy to `healthy` reaches its stream while node 1 hangs. Once it goes on, every copy
    has arrived exactly once, in order."""
    database_url, relay_pool = relay_database
    hung, healthy = _on_different_lanes()
    await _declare_through(rabbit_cluster, 1, [hung])
    await _declare_through(rabbit_cluster, 2, [healthy])
    queues = rabbit_cluster.queues(2)
    leaders = [queues[inbox_queue_name(code)]["leader"] for code in (hung, healthy)]
    assert leaders == rabbit_cluster.node_names[:2]

    connection = await rabbit.connect(rabbit_cluster.node_urls[1], name="test-hung-node")
    # A stalled lane is held after 2 s without a confirm (10 s in service): the test's cost.
    publisher = RabbitPublisher(connection, stalled_after_s=2.0)
    inbox = RabbitInbox(connection)
    outbox = PostgresOutbox(relay_pool)
    listener = PostgresListener(database_url)
    relay = OutboxRelay(
        listener.channel(OUTBOX_CHANNEL),
        lambda limit: outbox.relay_batch(limit, publisher.publish_batch),
        finish=outbox.finish,
    )
    seen: dict[str, list[str]] = {hung: [], healthy: []}
    sent: dict[str, list[str]] = {hung: [], healthy: []}
    stop = asyncio.Event()
    running = [
        asyncio.create_task(relay.run(stop)),
        *(asyncio.create_task(_stream(inbox, code, seen[code])) for code in seen),
    ]

    async def send(*recipients: str) -> None:
        receipt = await a_document(relay_pool, recipients)
        for route in receipt.routes:
            sent[route.effective_recipient].append(route.delivery_id)

    def arrived(*codes: str) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            return all(set(sent[code]) <= set(seen[code]) for code in codes)

        return probe

    async def consuming() -> bool:
        return len(inbox._open) == len(seen)

    try:
        await eventually(consuming, within=30)
        await send(healthy)
        await eventually(arrived(healthy), within=30)
        await asyncio.to_thread(rabbit_cluster.hang_node, 1)
        try:
            await send(hung, healthy)
            # Its lane's share confirmed while the batch still waits on `hung`'s: what follows
            # goes in later batches.
            await eventually(arrived(healthy), within=30)
            await send(healthy)
            await send(hung)
            await send(healthy)
            await eventually(arrived(healthy), within=30)
        finally:
            await asyncio.to_thread(rabbit_cluster.hang_node, 1, hung=False)
        await eventually(arrived(hung, healthy), within=60)
        assert seen == sent  # exactly once, in order
    finally:
        await _stopped(stop, running, publisher, inbox)
        await connection.close()
        await listener.close()


async def _stopped(
    stop: asyncio.Event,
    running: Sequence[asyncio.Task[None]],
    publisher: RabbitPublisher,
    inbox: RabbitInbox,
) -> None:
    """The relay (`running[0]`) stopped after its final pass, the streams cancelled, the
    publisher and the inbox closed."""
    stop.set()
    await running[0]
    for task in running[1:]:
        task.cancel()
    await asyncio.gather(*running[1:], return_exceptions=True)
    await publisher.close()
    await inbox.close()


def _on_different_lanes() -> tuple[str, str]:
    """Two new agencies whose messages go on different channels of a publisher: the second's
    channel has sent nothing there before the node dies or hangs."""
    early = unique_code()
    late = unique_code()
    while lane_of(late, PUBLISH_CHANNELS) == lane_of(early, PUBLISH_CHANNELS):
        late = unique_code()
    return early, late


async def _declare_through(cluster: RabbitCluster, node: int, codes: Sequence[str]) -> None:
    """Declared on `node`, whose members lead them (RabbitMQ's client-local placement)."""
    connection = await rabbit.connect(cluster.node_urls[node - 1], name="test-declare")
    try:
        channel = await connection.channel()
        exchange = await declare_topology(channel)
        for code in codes:
            await declare_inbox(channel, exchange, code)
    finally:
        await connection.close()


def _members(cluster: RabbitCluster, action: str, codes: Sequence[str]) -> None:
    """Suspends or resumes the members of the agencies' queues on nodes 2 and 3."""
    names = ", ".join(f'<<"{inbox_queue_name(code)}">>' for code in codes)
    nodes = ", ".join(f"'{node}'" for node in cluster.node_names[1:])
    answered = cluster.rabbitmqctl(2, "eval", MEMBERS % (action, names, nodes)).strip()
    assert answered == "[" + ",".join(["ok"] * 2 * len(codes)) + "]", answered


async def _stream(inbox: RabbitInbox, code: str, seen: list[str]) -> None:
    """A Receive stream's consumer: every delivery id, in arrival order, acknowledged."""
    async with inbox.consume(code) as stream:
        while True:
            for message in await stream.batch(100):
                seen.append(message.delivery_id)
                await message.message.ack()
