"""What the per-service wiring hands to `serve`: gRPC services, background jobs, and what to
close when the RPCs drain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import asyncpg
import grpc
from aio_pika.abc import AbstractRobustConnection

from services.bootstrap.plan import Plan
from services.common.leadership import (
    Elected,
    PostgresLeadership,
    Term,
    lead_when_elected,
)
from services.common.metrics import AxisMetrics
from services.common.postgres_notifications import PostgresListener
from services.exchange.service_layer.forwarding import Forwarder

# A background job runs until its stop event is set (and must then return promptly).
Job = Callable[[asyncio.Event], Awaitable[None]]


@dataclass(slots=True)
class Wiring:
    """One process's services, filled in by the per-service modules."""

    plan: Plan
    stack: AsyncExitStack
    metrics: AxisMetrics
    pool: asyncpg.Pool
    broker: AbstractRobustConnection | None
    # The process's one LISTEN connection, for every channel its jobs listen on.
    listener: PostgresListener
    registrations: list[Callable[[grpc.aio.Server], None]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    # The jobs told to stop only once every other job has returned (the ledger writer: its last
    # batch takes what the others staged before they stopped, the relay's final pass among it).
    last_jobs: set[str] = field(default_factory=set)
    # Federation: the forwarder of each peer hub (for operators: docaxis peers, the metrics).
    forwarders: list[Forwarder] = field(default_factory=list)
    # Run once the server stops accepting calls, before it drains (e.g. ending push streams).
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add_service(self, name: str, register: Callable[[grpc.aio.Server], None]) -> None:
        self.names.append(name)
        self.registrations.append(register)

    def add_job(self, name: str, job: Job, *, stops_last: bool = False) -> None:
        self.jobs[name] = job
        if stops_last:
            self.last_jobs.add(name)

    def add_singleton(self, name: str, singleton: Elected, term: Term) -> None:
        """A job that runs in one process of the whole axis (workers and replicas alike): this
        process runs `term` only while it leads, and stands by otherwise."""
        leadership = PostgresLeadership(singleton, self.plan.settings.database_url)
        self.metrics.leadership(singleton.job, False)

        def report(job: Elected, leading: bool) -> None:
            self.metrics.leadership(job.job, leading)

        self.add_job(name, lambda stop: lead_when_elected(leadership, stop, term, on_change=report))
