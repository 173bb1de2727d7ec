"""The directory's wiring: DirectoryService, and the revocations every service checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services.bootstrap.directory_view import LocalDirectoryLookup
from services.bootstrap.peer_feed import GrpcPeerFeed
from services.bootstrap.wiring import Job, Wiring
from services.common.periodic import every
from services.directory.adapters.crls import CRL_CHANNEL, CrlWatcher, PostgresCrls
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_bindings import PostgresCertificateBindings
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.adapters.postgres_policies import PostgresSignaturePolicies
from services.directory.entrypoints import grpc_api as directory_api
from services.directory.service_layer.certificate_bindings import CertificateBindingHandlers
from services.directory.service_layer.handlers import DirectoryHandlers, PeerPage
from services.directory.service_layer.revocation import RevocationHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers
from services.national.client import NationalAxisClient
from services.national.feed import NationalAxisFeed
from services.settings import Settings


@dataclass(frozen=True, slots=True)
class LocalDirectory:
    """The directory served by this process: agencies and signature policies."""

    agencies: DirectoryHandlers
    policies: SignaturePolicyHandlers
    bindings: CertificateBindingHandlers

    def lookup(self) -> LocalDirectoryLookup:
        """The exchange's (and the caller checks') view of it, with no network hop."""
        return LocalDirectoryLookup(self.agencies, self.policies, self.bindings)


async def wire_revocations(wiring: Wiring) -> RevocationHandlers | None:
    """Revocations loaded before serving, then kept current (CRLs ingested anywhere)."""
    security = wiring.plan.security
    if security.trust is None:
        return None
    revocation = RevocationHandlers(PostgresCrls(wiring.pool), security.trust)
    watcher = CrlWatcher(wiring.listener.channel(CRL_CHANNEL), revocation.reload)
    await watcher.start()
    wiring.stack.push_async_callback(watcher.close)
    wiring.add_job("revocations", watcher.run)
    return revocation


def wire_directory(wiring: Wiring, revocation: RevocationHandlers | None) -> LocalDirectory:
    settings = wiring.plan.settings
    agencies = PostgresAgencies(wiring.pool)
    federated = bool(settings.hub_code)
    directory = DirectoryHandlers(
        agencies,
        settings.code_forms,
        hubs=PostgresHubRoutes(wiring.pool) if federated else None,
        own_hub=settings.hub_code,
    )
    if federated and settings.worker_index == 0:
        _wire_peer_pulls(wiring, directory)
    policies = SignaturePolicyHandlers(PostgresSignaturePolicies(wiring.pool), agencies)
    bindings = CertificateBindingHandlers(PostgresCertificateBindings(wiring.pool), agencies)
    servicer = directory_api.DirectoryServicer(
        directory,
        wiring.plan.security.callers,
        revocation=revocation,
        policies=policies,
        bindings=bindings,
    )
    wiring.add_service(
        directory_api.SERVICE_NAME,
        lambda server: dpb_grpc.add_DirectoryServiceServicer_to_server(servicer, server),
    )
    return LocalDirectory(directory, policies, bindings)


def _wire_peer_pulls(wiring: Wiring, directory: DirectoryHandlers) -> None:
    """Each peer hub's directory pulled through its delta feed, as this hub (mutual TLS)."""
    settings, security = wiring.plan.settings, wiring.plan.security
    for hub_code, address in settings.peers:
        channel, metadata = security.federation_channel(address)
        wiring.stack.push_async_callback(channel.close)
        feed = GrpcPeerFeed(hub_code, channel, tuple(metadata), settings.code_forms)

        wiring.add_job(
            f"peer-directory-{hub_code}", _puller(directory, hub_code, feed.page, settings)
        )
    national = settings.national_axis
    if national is not None:
        client = NationalAxisClient.from_settings(national)
        wiring.stack.push_async_callback(client.close)
        axis = NationalAxisFeed(national.hub_code, client, settings.code_forms)
        wiring.add_job(
            f"peer-directory-{national.hub_code}",
            _puller(directory, national.hub_code, axis.page, settings),
        )


def _puller(
    directory: DirectoryHandlers,
    hub_code: str,
    page: Callable[[int], Awaitable[PeerPage]],
    settings: Settings,
) -> Job:
    async def pull() -> None:
        await directory.pull_peer(hub_code, page)

    async def job(stop: asyncio.Event) -> None:
        await every(settings.peer_sync_interval_s, stop, pull, f"peer-directory-{hub_code}")

    return job
