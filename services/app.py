"""The composition root: serves any set of docaxis services in one process.

`docaxis run` serves them all (the default); `python -m services.<name>` serves one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import grpc
import httpx
import structlog
from aio_pika.abc import AbstractRobustConnection
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2_grpc as xpb_grpc
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc
from grpc_health.v1 import health

from docaxis_client.ledger.note import NoteError, NoteSigner
from services.common import metrics_api, postgres, rabbit
from services.common.config import ConfigError
from services.common.grpc_server import build_server, set_serving
from services.common.metrics import AxisMetrics
from services.common.periodic import every, pause
from services.directory.adapters.crls import CrlWatcher, PostgresCrls
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.domain.codes import code_problem
from services.directory.entrypoints import grpc_api as directory_api
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.revocation import RevocationHandlers
from services.exchange.adapters.directory import GrpcDirectoryLookup, LocalDirectoryLookup
from services.exchange.adapters.postgres import PostgresDocumentStore, PostgresOutbox
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.adapters.postgres_queues import PostgresQueueProbe
from services.exchange.adapters.postgres_reports import PostgresReportStore
from services.exchange.adapters.postgres_reroute import PostgresRerouteStore
from services.exchange.adapters.postgres_uploads import PostgresAbandonedUploads
from services.exchange.adapters.rabbit import (
    InboxQueues,
    InFlight,
    RabbitInbox,
    RabbitPublisher,
)
from services.exchange.entrypoints import admin_api, report_api
from services.exchange.entrypoints import grpc_api as exchange_api
from services.exchange.entrypoints.relay import OutboxRelay
from services.exchange.entrypoints.settlements import Settlements
from services.exchange.service_layer.admin import AdminHandlers
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import DirectoryLookup
from services.exchange.service_layer.reports import ReportHandlers
from services.exchange.service_layer.reroute import Rerouter
from services.exchange.service_layer.uploads import AbandonedUploadSweeper
from services.ledger.adapters.postgres import (
    READER_ROLE,
    SEQUENCER_ROLE,
    PostgresLedgerCheckpoints,
    PostgresLedgerReader,
    PostgresLedgerWriter,
)
from services.ledger.adapters.postgres_backlog import PostgresLedgerBacklog
from services.ledger.entrypoints import grpc_api as ledger_api
from services.ledger.entrypoints.cosigning import WitnessCollector
from services.ledger.entrypoints.writer import LedgerWriterLoop
from services.security import Security
from services.settings import Settings

log = structlog.get_logger(__name__)

SERVICES_DIR = Path(__file__).resolve().parent


class Component(enum.StrEnum):
    DIRECTORY = "directory"
    EXCHANGE = "exchange"
    LEDGER = "ledger"


ALL_COMPONENTS = frozenset(Component)
# The role directory and exchange code runs as: its own schemas, and of the ledger only staging.
APP_ROLE = "app_writer"


def load_signers(settings: Settings) -> list[NoteSigner]:
    """The checkpoint signing keys; the file's contents are never logged."""
    if settings.ledger_key_file is None:
        raise ConfigError(
            "serving the ledger needs DOCAXIS_LEDGER_KEY_FILE (docaxis ledger keygen)"
        )
    return read_signer_keys(Path(settings.ledger_key_file), "DOCAXIS_LEDGER_KEY_FILE")


def read_signer_keys(path: Path, what: str) -> list[NoteSigner]:
    """C2SP signer keys, one per line (several while a key rotates)."""
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    try:
        signers = [NoteSigner.from_skey(line) for line in lines if line.strip()]
    except NoteError:
        raise ConfigError(f"{what} does not hold signer keys") from None
    if not signers:
        raise ConfigError(f"{what} is empty")
    return signers


# Migration order matters: the ledger grants the application role its rights on the other schemas.
_MIGRATIONS = (("directory", "directory"), ("exchange", "exchange"), ("ledger", "ledger"))


async def migrate(database_url: str) -> list[str]:
    """Applies every service's migrations; returns the names applied now."""
    applied: list[str] = []
    pool = await postgres.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            for service, folder in _MIGRATIONS:
                names = await postgres.apply_migrations(
                    conn, service, SERVICES_DIR / folder / "migrations"
                )
                applied.extend(f"{service}/{name}" for name in names)
    finally:
        await pool.close()
    return applied


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    components: Collection[Component] = ALL_COMPONENTS,
    *,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serves until `stop` is set, then shuts down in order without losing a message."""
    security = Security.from_settings(settings)
    callers = security.callers
    health_servicer = health.aio.HealthServicer()
    # One registry per process: what this process's components count, probe and refuse.
    metrics = AxisMetrics()
    for certificate_name, certificate in security.own_certificates():
        metrics.certificate_expires(certificate_name, certificate.not_valid_after_utc)
    metrics_servicer = metrics_api.MetricsServicer(metrics, callers)
    registrations: list[Callable[[grpc.aio.Server], None]] = [
        lambda server: mpb_grpc.add_MetricsServiceServicer_to_server(metrics_servicer, server)
    ]
    names: list[str] = [metrics_api.SERVICE_NAME]
    async with AsyncExitStack() as stack:
        pool = await postgres.create_pool(
            settings.database_url, role=APP_ROLE if settings.database_roles else None
        )
        stack.push_async_callback(pool.close)
        connection = await rabbit.connect(settings.amqp_url, name="docaxis")
        stack.push_async_callback(connection.close)
        background: list[asyncio.Task[None]] = []
        inbox: RabbitInbox | None = None

        # Revocations: loaded before serving, then kept current (CRLs ingested anywhere).
        revocation: RevocationHandlers | None = None
        trust_stop = asyncio.Event()
        if security.trust is not None:
            revocation = RevocationHandlers(PostgresCrls(pool), security.trust)
            crl_watcher = CrlWatcher(settings.database_url, revocation.reload)
            await crl_watcher.start()
            background.append(asyncio.create_task(crl_watcher.run(trust_stop), name="revocations"))

        directory: DirectoryHandlers | None = None
        if Component.DIRECTORY in components:
            directory = DirectoryHandlers(PostgresAgencies(pool), settings.code_forms)
            security.use_directory(LocalDirectoryLookup(directory))
            directory_servicer = directory_api.DirectoryServicer(
                directory, callers, revocation=revocation
            )
            registrations.append(
                lambda server: dpb_grpc.add_DirectoryServiceServicer_to_server(
                    directory_servicer, server
                )
            )
            names.append(directory_api.SERVICE_NAME)

        relay_stop = asyncio.Event()
        if Component.EXCHANGE in components:
            lookup: DirectoryLookup
            if directory is not None and settings.directory_address is None:
                lookup = LocalDirectoryLookup(directory)
            else:
                if settings.directory_address is None:
                    raise ConfigError("the exchange alone needs DOCAXIS_DIRECTORY_ADDRESS")
                # As the hub: its client certificate under mutual TLS.
                directory_channel, hub_metadata = security.peer_channel(settings.directory_address)
                stack.push_async_callback(directory_channel.close)
                lookup = GrpcDirectoryLookup(directory_channel, tuple(hub_metadata))
                security.use_directory(lookup)
            forms = settings.code_forms
            documents = PostgresDocumentStore(pool)
            lifecycle_store = PostgresLifecycleStore(pool)
            exchange = ExchangeHandlers(
                documents,
                lookup,
                lambda code: code_problem(code, forms),
                Limits(
                    max_attachment_bytes=settings.max_attachment_bytes,
                    max_pushes=settings.max_pushes,
                    upload_quota_bytes=settings.upload_quota_bytes,
                ),
                signatures=security.signature_policy(),
                hub=security.hub,
            )
            inbox_queues = InboxQueues()  # one per process: publisher and streams share it
            inbox = RabbitInbox(connection, queues=inbox_queues)
            in_flight = InFlight()
            lifecycle = LifecycleHandlers(exchange, lifecycle_store)
            exchange_servicer = exchange_api.ExchangeServicer(
                exchange,
                callers,
                inbox,
                in_flight,
                lifecycle,
                metrics=metrics,
                ledger=PostgresLedgerCheckpoints(pool, settings.ledger_witness_quorum),
            )
            registrations.append(
                lambda server: xpb_grpc.add_ExchangeServiceServicer_to_server(
                    exchange_servicer, server
                )
            )
            names.append(exchange_api.SERVICE_NAME)
            report_servicer = report_api.ReportServicer(
                ReportHandlers(PostgresReportStore(pool)), callers
            )
            registrations.append(
                lambda server: rpb_grpc.add_ReportServiceServicer_to_server(report_servicer, server)
            )
            names.append(report_api.SERVICE_NAME)
            admin_servicer = admin_api.AdminServicer(
                AdminHandlers(PostgresAdminStore(pool), documents, lifecycle_store),
                callers,
            )
            registrations.append(
                lambda server: apb_grpc.add_AdminServiceServicer_to_server(admin_servicer, server)
            )
            names.append(admin_api.SERVICE_NAME)
            metrics.watch_queues(PostgresQueueProbe(pool))
            publisher = RabbitPublisher(connection, inbox_queues)
            stack.push_async_callback(publisher.close)
            relay = OutboxRelay(settings.database_url, PostgresOutbox(pool), publisher)
            background.append(asyncio.create_task(relay.run(relay_stop), name="outbox-relay"))
            settlements = Settlements(settings.database_url, in_flight)
            background.append(asyncio.create_task(settlements.run(relay_stop), name="settlements"))
        if Component.EXCHANGE in components and settings.worker_index == 0:
            rerouter = Rerouter(PostgresRerouteStore(pool), lookup)
            background.append(
                asyncio.create_task(
                    every(settings.reroute_interval_s, relay_stop, rerouter.sweep, "reroute"),
                    name="reroute",
                )
            )
            uploads_gc = AbandonedUploadSweeper(
                PostgresAbandonedUploads(pool), dt.timedelta(seconds=settings.upload_ttl_s)
            )
            background.append(
                asyncio.create_task(
                    every(
                        min(3600.0, settings.upload_ttl_s / 4),
                        relay_stop,
                        uploads_gc.sweep,
                        "abandoned-uploads",
                    ),
                    name="abandoned-uploads",
                )
            )

        writer_stop = asyncio.Event()
        if Component.LEDGER in components:
            serves_writer = settings.worker_index == 0
            signers = load_signers(settings)
            sequencer_role = SEQUENCER_ROLE if settings.database_roles else None
            ledger_pool = await postgres.create_pool(
                settings.database_url, min_size=1, max_size=4, role=sequencer_role
            )
            stack.push_async_callback(ledger_pool.close)
            reader_pool = await postgres.create_pool(
                settings.database_url,
                min_size=1,
                max_size=4,
                role=READER_ROLE if settings.database_roles else None,
            )
            stack.push_async_callback(reader_pool.close)
            writer = LedgerWriterLoop(
                settings.database_url,
                PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
                signers,
                role=sequencer_role,
                checkpoint_interval_s=settings.ledger_checkpoint_interval_s,
            )
            if serves_writer:
                background.append(
                    asyncio.create_task(writer.run(writer_stop), name="ledger-writer")
                )
            if serves_writer and settings.ledger_witnesses:
                # One collector per axis, beside the writer (worker 0).
                http = httpx.AsyncClient()
                stack.push_async_callback(http.aclose)
                collector = WitnessCollector(
                    PostgresLedgerReader(ledger_pool),
                    PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
                    settings.ledger_witnesses,
                    http,
                    metrics,
                )
                background.append(
                    asyncio.create_task(
                        every(
                            settings.ledger_checkpoint_interval_s,
                            writer_stop,
                            collector.collect,
                            "witness-cosignatures",
                        ),
                        name="witness-cosignatures",
                    )
                )
            # The sequencer's pool: of the narrow roles, only it may read the staging table.
            metrics.watch_ledger(PostgresLedgerBacklog(ledger_pool))
            ledger_servicer = ledger_api.LedgerServicer(
                PostgresLedgerReader(reader_pool, settings.ledger_witness_quorum),
                callers,
                settings.ledger_origin,
                witnesses=settings.ledger_witnesses,
                quorum=settings.ledger_witness_quorum,
                forks=PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
                metrics=metrics,
            )
            registrations.append(
                lambda server: lpb_grpc.add_LedgerServiceServicer_to_server(ledger_servicer, server)
            )
            names.append(ledger_api.SERVICE_NAME)

        # A background task that dies is a bug: stop the whole process (non-zero exit) rather
        # than serve on without a relay or a ledger writer.
        failures: list[BaseException] = []

        def supervise(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and (error := task.exception()) is not None:
                log.error("background_task_died", task=task.get_name(), error=repr(error))
                failures.append(error)
                stop.set()

        for task in background:
            task.add_done_callback(supervise)

        server, port = build_server(
            settings.grpc_address,
            registrations,
            names,
            health_servicer,
            credentials=security.server_credentials(),
            refusals=metrics.rejected,
            share_port=settings.workers > 1,
        )
        await server.start()
        health_stop = asyncio.Event()
        background.append(
            asyncio.create_task(
                _watch_health(
                    health_servicer,
                    names,
                    pool,
                    connection,
                    settings.health_interval_s,
                    health_stop,
                ),
                name="health",
            )
        )
        background[-1].add_done_callback(supervise)
        log.info("server_started", address=settings.grpc_address, port=port, services=names)
        if on_ready is not None:
            on_ready(port)
        await stop.wait()

        # Shutdown (style.md §3.6): stop advertising, end streams, drain RPCs, stop background
        # work, then close the broker and the pool (the exit stack, in reverse order).
        log.info("server_stopping", grace_s=settings.shutdown_grace_s)
        health_stop.set()
        await health_servicer.enter_graceful_shutdown()
        if inbox is not None:
            await inbox.close_all()
        await server.stop(settings.shutdown_grace_s)
        relay_stop.set()
        writer_stop.set()
        trust_stop.set()
        try:
            async with asyncio.timeout(settings.shutdown_grace_s):
                await asyncio.gather(*background, return_exceptions=True)
        except TimeoutError:
            for task in background:
                task.cancel()
        if failures:
            raise RuntimeError("a background task died; see background_task_died") from failures[0]
        log.info("server_stopped")


async def _watch_health(
    servicer: health.aio.HealthServicer,
    names: list[str],
    pool: asyncpg.Pool,
    connection: AbstractRobustConnection,
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    """SERVING only while both Postgres and RabbitMQ answer."""
    serving: bool | None = None
    while not stop.is_set():
        database_ok = await postgres.ping(pool, timeout_s=interval_s * 2)
        broker_ok = rabbit.is_connected(connection)
        now_serving = database_ok and broker_ok
        if now_serving != serving:
            await set_serving(servicer, names, now_serving)
            log.info("health_changed", serving=now_serving, database=database_ok, broker=broker_ok)
            serving = now_serving
        await pause(stop, interval_s)
