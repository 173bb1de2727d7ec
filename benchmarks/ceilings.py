"""This machine's own ceilings, measured in the same run as the load: what a bare gRPC round trip,
a persistent confirmed RabbitMQ publish, a batched Postgres insert and an Ed25519 verification
cost here. Absolute figures drift on a shared machine; the sustained rate as a ratio of these
much less."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass

import aio_pika
import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import open_channel
from docaxis_client.credentials import TlsCredentials


@dataclass(frozen=True, slots=True)
class Ceilings:
    grpc_round_trips_per_s: float
    rabbit_confirmed_publishes_per_s: float
    postgres_inserted_rows_per_s: float
    ed25519_verifications_per_s: float

    def mean(self, other: Ceilings) -> Ceilings:
        return Ceilings(
            (self.grpc_round_trips_per_s + other.grpc_round_trips_per_s) / 2,
            (self.rabbit_confirmed_publishes_per_s + other.rabbit_confirmed_publishes_per_s) / 2,
            (self.postgres_inserted_rows_per_s + other.postgres_inserted_rows_per_s) / 2,
            (self.ed25519_verifications_per_s + other.ed25519_verifications_per_s) / 2,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "grpc_health_round_trips_per_s": self.grpc_round_trips_per_s,
            "rabbitmq_persistent_confirmed_publishes_per_s": self.rabbit_confirmed_publishes_per_s,
            "postgres_batched_insert_rows_per_s": self.postgres_inserted_rows_per_s,
            "ed25519_verifications_per_s": self.ed25519_verifications_per_s,
        }


async def grpc_round_trips(address: str, tls: TlsCredentials, seconds: float) -> float:
    """gRPC Health/Check round trips per second over one mutual-TLS channel, 32 in flight."""
    async with open_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        await stub.Check(request, timeout=5)
        deadline = time.monotonic() + seconds
        done = 0

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await stub.Check(request, timeout=5)
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(32)))
        return done / (time.monotonic() - start)


async def rabbit_publishes(amqp_url: str, seconds: float, batch: int = 500) -> float:
    """Persistent messages per second published with confirms to a quorum queue (what an inbox
    is), pipelined in batches the way the relay publishes."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        name = f"bench.ceiling.{uuid.uuid4()}"
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        body = os.urandom(120)  # a DeliveryQueued reference is about this size
        done = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=name,
                    )
                    for _ in range(batch)
                )
            )
            done += batch
        elapsed = time.monotonic() - start
        await queue.delete(if_unused=False, if_empty=False)
        return done / elapsed
    finally:
        await connection.close()


async def postgres_inserts(database_url: str, seconds: float, batch: int = 1000) -> float:
    """Rows per second inserted in committed batches of `batch` (one INSERT … SELECT unnest per
    transaction, fsync on), rows about the size of a delivery row."""
    conn = await asyncpg.connect(database_url)
    try:
        # A real table, not a temporary one: those skip the WAL, and commits must cost their fsync.
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_ceiling (id uuid PRIMARY KEY,"
            " recipient text NOT NULL, document uuid NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        done = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            ids = [uuid.uuid4() for _ in range(batch)]
            document = uuid.uuid4()
            await conn.execute(
                "INSERT INTO public.bench_ceiling (id, recipient, document)"
                " SELECT id, '000.00.01.H98', $2 FROM unnest($1::uuid[]) AS id",
                ids,
                document,
            )
            done += batch
        elapsed = time.monotonic() - start
        await conn.execute("DROP TABLE public.bench_ceiling")
        return done / elapsed
    finally:
        await conn.close()


def ed25519_verifications(seconds: float) -> float:
    """Verifications per second of an Ed25519 signature over a 32-byte digest, on one core."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(32)
    signature = key.sign(message)
    done = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        for _ in range(200):
            public.verify(signature, message)
        done += 200
    return done / elapsed


async def measure(
    address: str, tls: TlsCredentials, amqp_url: str, database_url: str, seconds: float
) -> Ceilings:
    """Each ceiling on its own, one after the other (not competing with each other)."""
    return Ceilings(
        grpc_round_trips_per_s=await grpc_round_trips(address, tls, seconds),
        rabbit_confirmed_publishes_per_s=await rabbit_publishes(amqp_url, seconds),
        postgres_inserted_rows_per_s=await postgres_inserts(database_url, seconds),
        ed25519_verifications_per_s=ed25519_verifications(seconds),
    )
