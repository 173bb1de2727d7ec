"""RabbitMQ plumbing: robust connections to one node or a cluster, and a liveness probe."""

from __future__ import annotations

from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

log = structlog.get_logger(__name__)


def node_urls(url: str) -> list[str]:
    """The broker's nodes: DOCAXIS_AMQP_URL names one node, or a cluster's nodes separated by
    commas (`amqp://…:5672/,amqp://…:5673/`)."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker URL")
    return urls


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection that knows every node of a cluster: each (re)connection attempt tries
    the nodes in turn, starting after the one it last used, so losing a node moves the
    connection to a live one at once instead of waiting for the lost node to come back.

    aio-pika's RobustConnection reconnects to its one URL; its attempt (the private
    `__connect_transport`, what the reconnect loop calls) is wrapped here to choose the URL.
    tests/integration/test_rabbit_cluster.py fails if a newer aio-pika stops calling it."""

    def __init__(self, url: URL, *args: Any, nodes: list[str], **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self.nodes = [URL(node) for node in nodes]
        self._next = 0

    async def _RobustConnection__connect_transport(self) -> None:
        failure: BaseException | None = None
        start = self._next
        for index in ((start + step) % len(self.nodes) for step in range(len(self.nodes))):
            self.url = self.nodes[index]
            try:
                await super()._RobustConnection__connect_transport()  # type: ignore[misc]
            except CONNECTION_EXCEPTIONS as exc:
                failure = exc
                log.warning("broker_node_unreachable", node=_address(self.url), error=repr(exc))
                continue
            # Next time (after this node is lost), begin with the following one.
            self._next = (index + 1) % len(self.nodes)
            log.info("broker_connected", node=_address(self.url))
            return
        assert failure is not None
        raise failure


def _address(url: URL) -> str:
    """host:port of a node, for logs (never the credentials)."""
    return f"{url.host}:{url.port}"


async def connect(url: str, *, name: str) -> ClusterConnection:
    """A connection that reconnects by itself (to any node of `url`, see node_urls) and restores
    its channels, queues and consumers."""
    nodes = node_urls(url)
    connection = ClusterConnection(
        URL(nodes[0]),
        nodes=nodes,
        client_properties={"connection_name": name},
        reconnect_interval=1.0,
        fail_fast=True,
    )
    await connection.connect()
    return connection


def is_connected(connection: AbstractRobustConnection) -> bool:
    # `is_closed` stays False on a robust connection that is reconnecting; the underlying
    # transport tells whether frames can flow right now.
    return not connection.is_closed and connection.connected.is_set()


class BrokerNotConnectedError(ConnectionError):
    """A channel asked for while the connection is between nodes (reconnecting)."""


async def open_channel(
    connection: AbstractRobustConnection,
    *,
    publisher_confirms: bool = True,
    reopened: bool = True,
) -> AbstractChannel:
    """A channel on `connection`. While a robust connection reconnects (a node lost, the next
    not yet reached), aio-pika raises a bare RuntimeError("Connection was not opened"): raised
    here as a broker error like any other, so that callers retry instead of dying (the outbox
    relay did, taking its process down when a RabbitMQ node was killed).

    `reopened=False`: a plain channel, which ends for good when the broker closes it or the
    connection drops, instead of a robust one that aio-pika opens again (with its queues) once
    the connection is back. For a channel that belongs to something that ends with it (a
    Receive stream): a robust one was reopened after its stream had ended, by then with nobody
    left to close it."""
    if not reopened:
        channel = aio_pika.Channel(connection, publisher_confirms=publisher_confirms)
        await channel.initialize()  # no transport while reconnecting: ChannelInvalidStateError
        return channel
    try:
        return await connection.channel(publisher_confirms=publisher_confirms)
    except RuntimeError as exc:
        if "not opened" not in str(exc):
            raise
        raise BrokerNotConnectedError(str(exc)) from exc


# What a broker that is down, restarting or refusing raises; transient by nature.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    OSError,
    TimeoutError,
)
