"""Federation: the PeerTransport and BlobSource ports over a peer hub's FederationService, as
this hub's peer identity (mutual TLS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import grpc
from docaxis.exchange.v1 import federation_service_pb2 as fpb
from docaxis.exchange.v1 import federation_service_pb2_grpc as fpb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import UnavailableError
from services.exchange.entrypoints.federation_convert import item_to_pb, outcome_from_pb
from services.exchange.service_layer.federation_ports import HopOutcome, OutboundItem

# A batch is answered item by item; a peer that has not answered a batch in this time is
# treated as unreachable (everything is handed over again, which the peer answers as before).
FORWARD_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 5.0


class GrpcPeerTransport:
    def __init__(
        self, hub_code: str, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]
    ) -> None:
        self._hub_code = hub_code
        self._stub = fpb_grpc.FederationServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._metadata = tuple(metadata)

    @property
    def hub_code(self) -> str:
        return self._hub_code

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        requests = [item_to_pb(item) for item in items]
        try:
            call = self._stub.Forward(
                iter(requests), timeout=FORWARD_TIMEOUT_S, metadata=self._metadata
            )
            responses = [response async for response in call]
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"peer hub {self._hub_code}: {exc.code().name} {exc.details()}",
                retry_after_s=1.0,
            ) from exc
        answered = {r.item_id: outcome_from_pb(r) for r in responses}
        if len(answered) != len(requests) or any(r.item_id not in answered for r in requests):
            raise UnavailableError(f"peer hub {self._hub_code} did not answer every item")
        return [answered[r.item_id] for r in requests]

    async def probe(self) -> bool:
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


class GrpcBlobSource:
    def __init__(self, channels: Mapping[str, tuple[grpc.aio.Channel, Sequence[tuple[str, str]]]]):
        self._peers = {
            code: (fpb_grpc.FederationServiceStub(channel), tuple(metadata))
            for code, (channel, metadata) in channels.items()
        }

    async def chunks(
        self, hub_code: str, source_document_uuid: str, sha256: str
    ) -> AsyncIterator[bytes]:
        if hub_code not in self._peers:
            raise UnavailableError(f"no channel to hub {hub_code}")
        stub, metadata = self._peers[hub_code]
        try:
            async for response in stub.FetchBlob(
                fpb.FetchBlobRequest(source_document_uuid=source_document_uuid, sha256=sha256),
                timeout=FORWARD_TIMEOUT_S,
                metadata=metadata,
            ):
                yield response.chunk
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"peer hub {hub_code} did not send blob {sha256}: {exc.code().name}",
                retry_after_s=1.0,
            ) from exc
