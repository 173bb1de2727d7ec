"""The directory's wiring: DirectoryService, and the revocations every service checks."""

from __future__ import annotations

from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services.bootstrap.wiring import Wiring
from services.directory.adapters.crls import CrlWatcher, PostgresCrls
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.entrypoints import grpc_api as directory_api
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.revocation import RevocationHandlers


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


def wire_directory(wiring: Wiring, revocation: RevocationHandlers | None) -> DirectoryHandlers:
    directory = DirectoryHandlers(PostgresAgencies(wiring.pool), wiring.plan.settings.code_forms)
    servicer = directory_api.DirectoryServicer(
        directory, wiring.plan.security.callers, revocation=revocation
    )
    wiring.add_service(
        directory_api.SERVICE_NAME,
        lambda server: dpb_grpc.add_DirectoryServiceServicer_to_server(servicer, server),
    )
    return directory
