"""Serving a plan: open, wire, serve until the stop signal, shut down in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import grpc
import structlog
from aio_pika.abc import AbstractRobustConnection
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc
from grpc_health.v1 import health

from services.bootstrap.directory import wire_directory, wire_revocations
from services.bootstrap.exchange import directory_lookup, wire_exchange
from services.bootstrap.ledger import wire_ledger
from services.bootstrap.plan import ALL_COMPONENTS, Component, Plan, plan
from services.bootstrap.wiring import Job, Wiring
from services.common import metrics_api, postgres, rabbit
from services.common.grpc_limits import AgencyCallLimits
from services.common.grpc_server import build_server, set_serving
from services.common.limits import AgencyLimits
from services.common.metrics import AxisMetrics
from services.common.metrics_workers import serve_worker_metrics, worker_socket
from services.common.periodic import pause
from services.common.postgres_notifications import PostgresListener
from services.common.probes import Readiness, probe_server, probe_socket
from services.settings import Settings

log = structlog.get_logger(__name__)

# The role directory and exchange code runs as: its own schemas, and of the ledger only staging.
APP_ROLE = "app_writer"


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    components: Collection[Component] = ALL_COMPONENTS,
    *,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serves until `stop` is set, then shuts down in order without losing a message.

    A configuration error is raised before anything opens. Background jobs run in one TaskGroup:
    if one dies, the process stops (the error is raised) rather than serve on without it; and
    whatever happens, no task outlives this call and every pool and connection is closed."""
    await serve_plan(plan(settings, components), stop, on_ready=on_ready)


async def serve_plan(
    checked: Plan, stop: asyncio.Event, *, on_ready: Callable[[int], None] | None = None
) -> None:
    """`serve` for a configuration already checked (the CLI checks it before migrating)."""
    async with AsyncExitStack() as stack:
        wiring = await _open(checked, stack)
        await _wire(wiring)
        await _run(wiring, stop, on_ready)


async def _open(checked: Plan, stack: AsyncExitStack) -> Wiring:
    settings = checked.settings
    pool = await postgres.create_pool(
        settings.database_url, role=APP_ROLE if settings.database_roles else None
    )
    stack.push_async_callback(pool.close)
    broker = None
    if checked.amqp_url is not None:
        broker = await rabbit.connect(checked.amqp_url, name="docaxis")
        stack.push_async_callback(broker.close)
    listener = PostgresListener(settings.database_url)
    stack.push_async_callback(listener.close)
    # One registry per process: what this process's components count, probe and refuse.
    metrics = AxisMetrics()
    for certificate_name, certificate in checked.security.own_certificates():
        metrics.certificate_expires(certificate_name, certificate.not_valid_after_utc)
    return Wiring(checked, stack, metrics, pool, broker, listener)


async def _wire(wiring: Wiring) -> None:
    servicer = metrics_api.MetricsServicer(wiring.metrics, wiring.plan.security.callers)
    wiring.add_service(
        metrics_api.SERVICE_NAME,
        lambda server: mpb_grpc.add_MetricsServiceServicer_to_server(servicer, server),
    )
    revocation = await wire_revocations(wiring)
    directory = None
    if wiring.plan.serves(Component.DIRECTORY):
        directory = wire_directory(wiring, revocation)
        wiring.plan.security.use_directory(directory.lookup())
    if wiring.plan.serves(Component.EXCHANGE):
        wire_exchange(wiring, directory_lookup(wiring, directory))
    if wiring.plan.serves(Component.LEDGER):
        await wire_ledger(wiring)


async def _run(wiring: Wiring, stop: asyncio.Event, on_ready: Callable[[int], None] | None) -> None:
    settings = wiring.plan.settings
    health_servicer = health.aio.HealthServicer()
    limits = AgencyLimits(settings.limits)
    wiring.metrics.watch_receive_streams(lambda: limits.streams.total)
    callers = wiring.plan.security.callers
    server, port = build_server(
        settings.grpc_address,
        wiring.registrations,
        wiring.names,
        health_servicer,
        credentials=wiring.plan.security.server_credentials(),
        refusals=wiring.metrics.rejected,
        share_port=settings.workers > 1,
        limits=settings.limits,
        agency_limits=AgencyCallLimits(
            limits,
            lambda context: callers.resolve(context).agency_code,
            wiring.metrics.limit_refused,
        ),
    )
    await server.start()
    wiring.stack.push_async_callback(server.stop, None)  # however serving ends
    readiness = Readiness()
    wiring.add_job(
        "health",
        lambda halt: _watch_health(
            health_servicer,
            wiring.names,
            wiring.pool,
            wiring.broker,
            settings.health_interval_s,
            halt,
            readiness,
        ),
    )
    if settings.probe_address is not None:
        _add_probes(wiring, settings.probe_address, readiness)
    if settings.workers > 1:
        _add_worker_metrics(wiring, port)
    try:
        async with asyncio.timeout(None) as deadline:
            await _serve_until(
                stop, wiring, server, Health(health_servicer, readiness), deadline, port, on_ready
            )
    except TimeoutError:
        log.warning("background_jobs_cancelled", grace_s=settings.shutdown_grace_s)
    log.info("server_stopped")


def _add_probes(wiring: Wiring, address: str, readiness: Readiness) -> None:
    """/livez and /readyz on their own listener, answering until the drain is over (the jobs'
    halt), so that an orchestrator sees the process draining rather than gone."""
    sock = probe_socket(address, share_port=wiring.plan.settings.workers > 1)
    wiring.stack.callback(sock.close)
    probes = probe_server(readiness)

    async def serve_probes(halt: asyncio.Event) -> None:
        serving = asyncio.create_task(probes.serve(sockets=[sock]))
        try:
            await halt.wait()
        finally:
            probes.should_exit = True
            await serving

    wiring.add_job("probes", serve_probes)


def _add_worker_metrics(wiring: Wiring, port: int) -> None:
    """Each worker serves its own series to its siblings, and sums theirs into the scrapes it
    answers (services/common/metrics_workers.py)."""
    settings = wiring.plan.settings
    names = [worker_socket(port, index) for index in range(settings.workers)]
    own = names[settings.worker_index]
    wiring.metrics.sum_workers([name for name in names if name != own])

    async def serve_worker_metrics_until(halt: asyncio.Event) -> None:
        server = await serve_worker_metrics(own, wiring.metrics.render_worker)
        try:
            await halt.wait()
        finally:
            server.close()
            await server.wait_closed()

    wiring.add_job("worker_metrics", serve_worker_metrics_until)


@dataclass(frozen=True, slots=True)
class Health:
    """What the process says about itself: gRPC health, and the probes' readiness."""

    servicer: health.aio.HealthServicer
    readiness: Readiness


async def _serve_until(
    stop: asyncio.Event,
    wiring: Wiring,
    server: grpc.aio.Server,
    health_state: Health,
    deadline: asyncio.Timeout,
    port: int,
    on_ready: Callable[[int], None] | None,
) -> None:
    """Runs the jobs in one TaskGroup until `stop`, then drains and gives the jobs the grace:
    the jobs stop once the RPCs have drained, those that stop last once the others returned."""
    settings = wiring.plan.settings
    halt = asyncio.Event()  # the jobs' stop, set once the RPCs have drained
    halt_last = asyncio.Event()  # set once every other job has returned
    died: list[str] = []
    try:
        async with asyncio.TaskGroup() as jobs:
            first: list[asyncio.Task[None]] = []
            for name, job in wiring.jobs.items():
                last = name in wiring.last_jobs
                task = jobs.create_task(
                    _supervised(name, job, halt_last if last else halt, died), name=name
                )
                if not last:
                    first.append(task)
            loop = type(asyncio.get_running_loop())
            log.info(
                "server_started",
                address=settings.grpc_address,
                port=port,
                services=wiring.names,
                event_loop=f"{loop.__module__}.{loop.__qualname__}",
            )
            if on_ready is not None:
                on_ready(port)
            try:
                await stop.wait()
            finally:
                # A job that died cancels this wait: shut down the same way, then raise.
                await _drain(wiring, server, health_state)
                halt.set()
                deadline.reschedule(asyncio.get_running_loop().time() + settings.shutdown_grace_s)
                if first:
                    await asyncio.wait(first)
                halt_last.set()
    except* Exception as failed:  # noqa: BLE001 - re-raised as the process's failure
        if died:
            raise RuntimeError(f"background task {died[0]} died") from failed.exceptions[0]
        raise failed.exceptions[0] from None  # this task's own error (e.g. on_ready's)


async def _supervised(name: str, job: Job, halt: asyncio.Event, died: list[str]) -> None:
    try:
        await job(halt)
    except Exception as exc:
        log.error("background_task_died", task=name, error=repr(exc))
        died.append(name)
        raise


async def _drain(wiring: Wiring, server: grpc.aio.Server, health_state: Health) -> None:
    """Shutdown (style.md §3.6): stop advertising, end streams, drain RPCs; the jobs stop next,
    then the broker and the pools close (the exit stack, in reverse order)."""
    log.info("server_stopping", grace_s=wiring.plan.settings.shutdown_grace_s)
    health_state.readiness.draining = True
    await health_state.servicer.enter_graceful_shutdown()
    for close in wiring.on_drain:
        await close()
    await server.stop(wiring.plan.settings.shutdown_grace_s)


async def _watch_health(
    servicer: health.aio.HealthServicer,
    names: list[str],
    pool: asyncpg.Pool,
    broker: AbstractRobustConnection | None,
    interval_s: float,
    stop: asyncio.Event,
    readiness: Readiness,
) -> None:
    """SERVING only while Postgres (and RabbitMQ, when this process uses it) answer."""
    serving: bool | None = None
    while not stop.is_set():
        database_ok = await postgres.ping(pool, timeout_s=interval_s * 2)
        broker_ok = broker is None or rabbit.is_connected(broker)
        readiness.database, readiness.broker = database_ok, broker_ok
        now_serving = database_ok and broker_ok
        if now_serving != serving:
            await set_serving(servicer, names, now_serving)
            log.info("health_changed", serving=now_serving, database=database_ok, broker=broker_ok)
            serving = now_serving
        await pause(stop, interval_s)
