"""Federation: a peer hub's directory delta feed (SyncAgencies), read as this hub."""

from __future__ import annotations

import grpc
import structlog
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc

from services.common.errors import DomainError, UnavailableError
from services.directory.domain.codes import CodeForm
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import PeerPage

log = structlog.get_logger(__name__)

PAGE_SIZE = 1000
TIMEOUT_S = 10.0


class GrpcPeerFeed:
    def __init__(
        self,
        hub_code: str,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...],
        forms: frozenset[CodeForm],
    ) -> None:
        self._hub_code = hub_code
        self._stub = pb_grpc.DirectoryServiceStub(channel)
        self._metadata = metadata
        self._forms = forms

    async def page(self, since_version: int) -> PeerPage:
        try:
            response = await self._stub.SyncAgencies(
                pb.SyncAgenciesRequest(since_version=since_version, page_size=PAGE_SIZE),
                timeout=TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"peer hub {self._hub_code} did not answer: {exc.code().name}", retry_after_s=5.0
            ) from exc
        agencies = []
        for message in response.agencies:
            try:
                agency = agency_from_pb(message, self._forms)
            except DomainError as exc:
                # A record this hub cannot hold (another code form): skipped, not the whole feed.
                log.warning(
                    "peer_agency_skipped", hub=self._hub_code, code=message.code, error=str(exc)
                )
                continue
            agencies.append((agency, message.served_by_hub or None))
        return agencies, response.next_since_version, response.more
