"""FederationService over gRPC: peer hubs hand over documents, statuses and recalls in order,
and fetch the attachments of what is forwarded to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from docaxis.exchange.v1 import federation_service_pb2 as fpb
from docaxis.exchange.v1 import federation_service_pb2_grpc as fpb_grpc

from services.common.errors import DomainError
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.exchange.entrypoints.federation_convert import item_from_pb, outcome_to_pb
from services.exchange.service_layer.federation import FederationHandlers
from services.exchange.service_layer.federation_ports import HopOutcome

SERVICE_NAME: str = fpb.DESCRIPTOR.services_by_name["FederationService"].full_name


class FederationServicer(fpb_grpc.FederationServiceServicer):
    def __init__(self, handlers: FederationHandlers, callers: CallerResolver) -> None:
        self._handlers = handlers
        self._callers = callers

    def _peer(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        peer = self._callers.resolve(context).require_peer()
        self._handlers.require_peer(peer)
        return peer

    async def Forward(
        self,
        request_iterator: AsyncIterator[fpb.ForwardRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[fpb.ForwardResponse]:
        async with domain_errors(context):
            peer = self._peer(context)
        # One at a time, in the order sent: statuses and recalls of a copy follow the copy, and
        # never overtake an item of the same copy that is to be handed over again.
        held: set[tuple[str, str]] = set()
        async for request in request_iterator:
            try:
                item = item_from_pb(request)
            except DomainError as exc:
                yield outcome_to_pb(HopOutcome(request.item_id, error=exc))
                continue
            yield outcome_to_pb(await self._handlers.accept(peer, item, held))

    async def FetchBlob(
        self, request: fpb.FetchBlobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[fpb.FetchBlobResponse]:
        async with domain_errors(context):
            peer = self._peer(context)
            chunks = await self._handlers.blob(peer, request.source_document_uuid, request.sha256)
        async for _offset, chunk in chunks:
            yield fpb.FetchBlobResponse(chunk=chunk)
