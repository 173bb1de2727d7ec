"""The exchange's wiring: ExchangeService, ReportService, AdminService, the outbox relay and
the sweeps, over the directory of this process or of another one."""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import federation_service_pb2_grpc as fpb_grpc
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc

from services.bootstrap.directory import LocalDirectory
from services.bootstrap.directory_view import LocalDirectoryLookup
from services.bootstrap.peer_transport import GrpcBlobSource, GrpcPeerTransport
from services.bootstrap.wiring import Job, Wiring
from services.common import rabbit
from services.common.leadership import PerPeer, Singleton, Term
from services.common.periodic import every, pause
from services.directory.adapters.generation import CHANGED_CHANNEL, PostgresDirectoryGeneration
from services.directory.domain.codes import code_problem
from services.exchange.adapters.directory import GrpcDirectoryLookup
from services.exchange.adapters.postgres import (
    OUTBOX_CHANNEL,
    PostgresDocumentStore,
    PostgresOutbox,
)
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_federation import PostgresFederationStore
from services.exchange.adapters.postgres_lifecycle import (
    ACKNOWLEDGED_CHANNEL,
    PostgresLifecycleStore,
)
from services.exchange.adapters.postgres_peers import PostgresPeerStates
from services.exchange.adapters.postgres_queues import PostgresQueueProbe
from services.exchange.adapters.postgres_reports import PostgresReportStore
from services.exchange.adapters.postgres_reroute import PostgresRerouteStore
from services.exchange.adapters.postgres_uploads import PostgresAbandonedUploads
from services.exchange.adapters.rabbit import InboxQueues, InFlight, RabbitInbox, RabbitPublisher
from services.exchange.adapters.stored_documents import StoredDocuments
from services.exchange.domain.notices import NoticeLimits
from services.exchange.entrypoints import admin_api, federation_api, report_api
from services.exchange.entrypoints import grpc_api as exchange_api
from services.exchange.entrypoints.directory_changes import DirectoryChanges
from services.exchange.entrypoints.relay import OutboxRelay
from services.exchange.entrypoints.settlements import Settlements
from services.exchange.service_layer.admin import AdminHandlers
from services.exchange.service_layer.copy_due_dates import DueDateRepair
from services.exchange.service_layer.directory_cache import DirectoryCache
from services.exchange.service_layer.federation import FederationHandlers
from services.exchange.service_layer.forwarding import Forwarder
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.hop_receipts import HopReceipts
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.notice_hops import NoticeHopRepair
from services.exchange.service_layer.ports import DirectoryLookup
from services.exchange.service_layer.reports import ReportHandlers
from services.exchange.service_layer.reroute import Rerouter
from services.exchange.service_layer.uploads import AbandonedUploadSweeper
from services.ledger.adapters.postgres import PostgresLedgerCheckpoints
from services.national.blobs import NationalAxisBlobs
from services.national.client import NationalAxisClient
from services.national.poller import NationalAxisPoller
from services.national.settings import NationalAxisSettings
from services.national.stats import AxisStats
from services.national.transport import NationalAxisTransport

log = structlog.get_logger(__name__)


def directory_lookup(wiring: Wiring, local: LocalDirectory | None) -> DirectoryLookup:
    """The directory of this process, or DirectoryService elsewhere (as the hub, under mTLS)."""
    settings, security = wiring.plan.settings, wiring.plan.security
    if local is not None and settings.directory_address is None:
        return local.lookup()
    assert settings.directory_address is not None  # plan() checked it
    channel, hub_metadata = security.peer_channel(settings.directory_address)
    wiring.stack.push_async_callback(channel.close)
    lookup = GrpcDirectoryLookup(channel, tuple(hub_metadata))
    security.use_directory(lookup)
    return lookup


def wire_exchange(wiring: Wiring, lookup: DirectoryLookup) -> None:
    settings, security, pool = wiring.plan.settings, wiring.plan.security, wiring.pool
    assert wiring.broker is not None  # plan() checked the broker's URL
    forms = settings.code_forms
    # Submit keeps the documents it stores for their pushes and their receipts.
    kept = StoredDocuments()
    documents = PostgresDocumentStore(pool, kept=kept)
    lifecycle_store = PostgresLifecycleStore(
        pool,
        notices=NoticeLimits(settings.max_pending_notices, settings.coalesce_notices_after),
        on_notices=wiring.metrics.notices,
        kept=kept,
    )
    exchange = ExchangeHandlers(
        documents,
        lookup,
        lambda code: code_problem(code, forms),
        Limits(
            max_attachment_bytes=settings.max_attachment_bytes,
            max_pushes=settings.max_pushes,
            upload_quota_bytes=settings.upload_quota_bytes,
        ),
        signatures=security.signature_verifier(),
        hub=security.hub,
        kept_directory=_kept_directory(wiring, lookup),
    )
    inbox_queues = InboxQueues()  # one per process: publisher and streams share it
    amqp_url = wiring.plan.amqp_url
    assert amqp_url is not None
    inbox = RabbitInbox(
        wiring.broker,
        queues=inbox_queues,
        # More connections for the streams once the first holds its share of channels.
        connect=lambda: rabbit.connect(amqp_url, name="docaxis-streams"),
        idle_s=settings.stream_channel_idle_s,
    )
    wiring.stack.push_async_callback(inbox.close)
    # Every worker: each holds its own streams' channels.
    wiring.add_job(
        "stream-channels",
        lambda stop: every(inbox.sweep_interval_s, stop, inbox.close_idle, "stream-channels"),
    )
    wiring.on_drain.append(inbox.close_all)
    in_flight = InFlight()
    lifecycle = LifecycleHandlers(exchange, lifecycle_store)
    servicer = exchange_api.ExchangeServicer(
        exchange,
        security.callers,
        inbox,
        in_flight,
        lifecycle,
        metrics=wiring.metrics,
        ledger=PostgresLedgerCheckpoints(pool, settings.ledger_witness_quorum),
    )
    wiring.add_service(
        exchange_api.SERVICE_NAME,
        lambda server: exchange_api.add_to_server(servicer, server),
    )
    report = report_api.ReportServicer(ReportHandlers(PostgresReportStore(pool)), security.callers)
    wiring.add_service(
        report_api.SERVICE_NAME,
        lambda server: rpb_grpc.add_ReportServiceServicer_to_server(report, server),
    )
    peer_states = PostgresPeerStates(pool)
    admin = admin_api.AdminServicer(
        AdminHandlers(PostgresAdminStore(pool), documents, lifecycle_store, peers=peer_states),
        security.callers,
    )
    wiring.add_service(
        admin_api.SERVICE_NAME,
        lambda server: apb_grpc.add_AdminServiceServicer_to_server(admin, server),
    )
    wiring.metrics.watch_queues(PostgresQueueProbe(pool))
    publisher = RabbitPublisher(wiring.broker, inbox_queues)
    wiring.stack.push_async_callback(publisher.close)
    outbox = PostgresOutbox(pool)
    relay = OutboxRelay(
        wiring.listener.channel(OUTBOX_CHANNEL),
        lambda limit: outbox.relay_batch(limit, publisher.publish_batch),
        finish=outbox.finish,
    )
    # One relay per axis (elected), so that messages reach the broker in outbox order. Its
    # term ends with the final pass (relay.run): every process that published runs it at its
    # stop, after its streams and calls (serve._drain), before its ledger writer's last batch.
    wiring.add_singleton("outbox-relay", Singleton.OUTBOX_RELAY, relay.run)
    # Acknowledgements committed by any process settle the stream item this process holds.
    settlements = Settlements(wiring.listener.channel(ACKNOWLEDGED_CHANNEL), in_flight)
    wiring.add_job("settlements", settlements.run)
    wiring.add_singleton("sweeps", Singleton.SWEEPS, _sweeps(wiring, lookup))
    if settings.hub_code:
        _wire_federation(wiring, exchange, lifecycle, documents, lookup, inbox, peer_states)


def _kept_directory(wiring: Wiring, lookup: DirectoryLookup) -> DirectoryCache | None:
    """Submit's directory reads kept in memory, when the directory is this process's: its
    generation and its change notifications are then in this database."""
    if not isinstance(lookup, LocalDirectoryLookup):
        return None
    cache = DirectoryCache(lookup, PostgresDirectoryGeneration(wiring.pool))
    changed = wiring.listener.channel(CHANGED_CHANNEL)
    # Every worker listens: a change made through any of them (or any tool) reaches them all.
    wiring.add_job("directory-changes", DirectoryChanges(changed, cache).run)
    return cache


def _wire_federation(
    wiring: Wiring,
    exchange: ExchangeHandlers,
    lifecycle: LifecycleHandlers,
    documents: PostgresDocumentStore,
    lookup: DirectoryLookup,
    inbox: RabbitInbox,
    peer_states: PostgresPeerStates,
) -> None:
    """FederationService for the peer hubs, and a forwarder per peer (on the first worker: one
    consumer per peer queue keeps the hand-overs in order)."""
    settings, security = wiring.plan.settings, wiring.plan.security
    store = PostgresFederationStore(
        wiring.pool,
        notices=NoticeLimits(settings.max_pending_notices, settings.coalesce_notices_after),
    )
    channels = {}
    for hub_code, address in settings.peers:
        channel, metadata = security.federation_channel(address)
        wiring.stack.push_async_callback(channel.close)
        channels[hub_code] = (channel, metadata)
    national = _national_axis(wiring)
    national_codes = {national[0].hub_code} if national else set()
    peer_blobs = GrpcBlobSource(channels)
    blobs = NationalAxisBlobs(national[0].hub_code, peer_blobs) if national else peer_blobs
    # Signs this hub's receipts of what peers hand over; checks theirs of what it hands over.
    receipts = HopReceipts(security.peer_identity, security.trust_store())
    handlers = FederationHandlers(
        settings.hub_code,
        frozenset(code for code, _ in settings.peers) | national_codes,
        exchange,
        lifecycle,
        documents,
        store,
        lookup,
        blobs,
        national_axes=frozenset(national_codes),
        receipts=receipts,
    )
    servicer = federation_api.FederationServicer(handlers, security.callers)
    wiring.add_service(
        federation_api.SERVICE_NAME,
        lambda server: fpb_grpc.add_FederationServiceServicer_to_server(servicer, server),
    )
    axis_stats = AxisStats(national[0].hub_code) if national else None
    if axis_stats is not None:
        wiring.metrics.watch_polled_peers(lambda: [axis_stats.snapshot()])
    if national is not None and isinstance(blobs, NationalAxisBlobs):
        axis, client = national
        poller = NationalAxisPoller(
            axis.hub_code,
            client,
            handlers,
            lifecycle,
            blobs,
            documents,
            store,
            lambda code: code_problem(code, settings.code_forms),
            max_attachment_bytes=settings.max_attachment_bytes,
            page_size=axis.page_size,
            max_pause_s=axis.poll_max_s,
            stats=axis_stats,
        )
        # One poller per axis: two would fetch the same items and store them once each anyway,
        # but the second's work would be wasted.
        wiring.add_singleton("national-poller", Singleton.NATIONAL_POLLER, poller.run)
    # A forwarder per peer for the whole axis, elected among every worker and replica: one
    # consumer of the peer's queue keeps the hand-overs in order; another takes over when its
    # process dies.
    forwarders: list[Forwarder] = []
    wiring.metrics.watch_peers(lambda: [f.snapshot() for f in forwarders])
    addresses = dict(settings.peers)
    for hub_code, (channel, metadata) in channels.items():
        forwarder = Forwarder(
            settings.hub_code,
            GrpcPeerTransport(hub_code, channel, metadata),
            inbox,
            exchange,
            lifecycle,
            store,
            failures_to_open=settings.peer_failures_to_open,
            max_backoff_s=settings.peer_max_backoff_s,
            refusal_window_s=settings.peer_refusal_window_s,
            reports=peer_states,
            kind="docaxis",
            address=addresses[hub_code],
            receipts=receipts,
        )
        forwarders.append(forwarder)
        wiring.forwarders.append(forwarder)
        _elect_forwarder(wiring, forwarder)
    if national is not None:
        axis, client = national
        hub_code = axis.hub_code
        forwarder = Forwarder(
            settings.hub_code,
            NationalAxisTransport(hub_code, client, documents, store, lifecycle, axis_stats),
            inbox,
            exchange,
            lifecycle,
            store,
            failures_to_open=settings.peer_failures_to_open,
            max_backoff_s=settings.peer_max_backoff_s,
            refusal_window_s=settings.peer_refusal_window_s,
            reports=peer_states,
            kind="national-axis",
            address=axis.base_url,
        )
        forwarders.append(forwarder)
        wiring.forwarders.append(forwarder)
        _elect_forwarder(wiring, forwarder)
    if settings.worker_index == 0:
        wiring.add_job("peer-reports", _forget_unconfigured_peers(wiring, peer_states))


def _elect_forwarder(wiring: Wiring, forwarder: Forwarder) -> None:
    name = f"forward-{forwarder.hub_code}"
    wiring.add_singleton(
        name, PerPeer.forwarder(forwarder.hub_code), _restarting(forwarder.run, name)
    )


def _forget_unconfigured_peers(wiring: Wiring, peer_states: PostgresPeerStates) -> Job:
    """Drops the reports of peers no forwarder serves any more (removed from the settings):
    ListPeers then shows them only while something still waits for them. Every forwarder (of
    any kind) is in wiring.forwarders by the time the jobs start."""

    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await peer_states.retain([f.hub_code for f in wiring.forwarders])
            except Exception as exc:  # noqa: BLE001 - retried; reports are only figures
                log.warning("peer_reports_not_pruned", error=str(exc))
                await pause(stop, 5.0)
                continue
            await stop.wait()

    return job


def _national_axis(wiring: Wiring) -> tuple[NationalAxisSettings, NationalAxisClient] | None:
    """The client of the national axis this hub sits under, if any."""
    national = wiring.plan.settings.national_axis
    if national is None:
        return None
    client = NationalAxisClient.from_settings(national)
    wiring.stack.push_async_callback(client.close)
    return national, client


def _restarting(run: Job, name: str) -> Term:
    """A forwarder whose broker channel failed starts again after a pause, rather than stop
    the process (its messages stay in the peer's queue meanwhile)."""

    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await run(stop)
            except Exception:
                log.exception("forwarder_failed", job=name)
                await pause(stop, 1.0)

    return job


def _sweeps(wiring: Wiring, lookup: DirectoryLookup) -> Term:
    settings, pool = wiring.plan.settings, wiring.pool
    rerouter = Rerouter(PostgresRerouteStore(pool), lookup)
    uploads = AbandonedUploadSweeper(
        PostgresAbandonedUploads(pool), dt.timedelta(seconds=settings.upload_ttl_s)
    )
    hops = NoticeHopRepair(PostgresPeerStates(pool))
    due_dates = DueDateRepair(PostgresReportStore(pool))

    async def sweep(ended: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as jobs:
            jobs.create_task(every(settings.reroute_interval_s, ended, rerouter.sweep, "reroute"))
            jobs.create_task(
                every(
                    min(3600.0, settings.upload_ttl_s / 4),
                    ended,
                    uploads.sweep,
                    "abandoned-uploads",
                )
            )
            jobs.create_task(every(settings.reroute_interval_s, ended, hops.run, "notice-hops"))
            jobs.create_task(
                every(settings.reroute_interval_s, ended, due_dates.run, "copy-due-dates")
            )

    return sweep
