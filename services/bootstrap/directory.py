"""The directory's wiring: DirectoryService, and the revocations every service checks."""

from __future__ import annotations

from dataclasses import dataclass

from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services.bootstrap.directory_view import LocalDirectoryLookup
from services.bootstrap.wiring import Wiring
from services.directory.adapters.crls import CrlWatcher, PostgresCrls
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_policies import PostgresSignaturePolicies
from services.directory.entrypoints import grpc_api as directory_api
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.revocation import RevocationHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers


@dataclass(frozen=True, slots=True)
class LocalDirectory:
    """The directory served by this process: agencies and signature policies."""

    agencies: DirectoryHandlers
    policies: SignaturePolicyHandlers

    def lookup(self) -> LocalDirectoryLookup:
        """The exchange's (and the caller checks') view of it, with no network hop."""
        return LocalDirectoryLookup(self.agencies, self.policies)


async def wire_revocations(wiring: Wiring) -> RevocationHandlers | None:
    """Revocations loaded before serving, then kept current (CRLs ingested anywhere)."""
    security = wiring.plan.security
    if security.trust is None:
        return None
    revocation = RevocationHandlers(PostgresCrls(wiring.pool), security.trust)
    watcher = CrlWatcher(wiring.plan.settings.database_url, revocation.reload)
    await watcher.start()
    wiring.stack.push_async_callback(watcher.close)
    wiring.add_job("revocations", watcher.run)
    return revocation


def wire_directory(wiring: Wiring, revocation: RevocationHandlers | None) -> LocalDirectory:
    agencies = PostgresAgencies(wiring.pool)
    directory = DirectoryHandlers(agencies, wiring.plan.settings.code_forms)
    policies = SignaturePolicyHandlers(PostgresSignaturePolicies(wiring.pool), agencies)
    servicer = directory_api.DirectoryServicer(
        directory, wiring.plan.security.callers, revocation=revocation, policies=policies
    )
    wiring.add_service(
        directory_api.SERVICE_NAME,
        lambda server: dpb_grpc.add_DirectoryServiceServicer_to_server(servicer, server),
    )
    return LocalDirectory(directory, policies)
