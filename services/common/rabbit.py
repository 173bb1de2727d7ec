"""RabbitMQ plumbing: robust connections and a liveness probe."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection


async def connect(url: str, *, name: str) -> AbstractRobustConnection:
    """A connection that reconnects by itself and restores its channels, queues and consumers."""
    return await aio_pika.connect_robust(
        url, client_properties={"connection_name": name}, reconnect_interval=1.0, fail_fast=True
    )


def is_connected(connection: AbstractRobustConnection) -> bool:
    # `is_closed` stays False on a robust connection that is reconnecting; the underlying
    # transport tells whether frames can flow right now.
    return not connection.is_closed and connection.connected.is_set()


# What a broker that is down, restarting or refusing raises; transient by nature.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    OSError,
    TimeoutError,
)
