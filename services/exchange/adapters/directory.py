"""The exchange's view of the agency directory, through DirectoryService's gRPC contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import grpc
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services.common.errors import UnavailableError
from services.directory.domain.model import today_in_vietnam
from services.directory.domain.reorganisation import Resolution
from services.directory.entrypoints.grpc_api import resolution_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from services.exchange.service_layer.ports import AgencyView

LOOKUP_TIMEOUT_S = 5.0


def _unavailable(exc: grpc.aio.AioRpcError) -> UnavailableError:
    return UnavailableError(f"the directory did not answer: {exc.code().name}", retry_after_s=1.0)


class GrpcDirectoryLookup:
    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._stub = dpb_grpc.DirectoryServiceStub(channel)
        self._metadata = metadata

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        try:
            response = await self._stub.BatchGetAgencies(
                dpb.BatchGetAgenciesRequest(codes=list(dict.fromkeys(codes))),
                timeout=LOOKUP_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from exc
        return {
            a.code: AgencyView(
                code=a.code,
                open=a.status == dpb.AGENCY_STATUS_ACTIVE,
                successor_codes=tuple(a.successor_codes),
            )
            for a in response.agencies
        }

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        try:
            response = await self._stub.ResolveRecipients(
                dpb.ResolveRecipientsRequest(
                    codes=list(dict.fromkeys(codes)), on_date=on_date.isoformat()
                ),
                timeout=LOOKUP_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from exc
        return {r.code: resolution_from_pb(r) for r in response.resolutions}


class LocalDirectoryLookup:
    """The directory served by this same process (all-in-one mode): no network hop. Only the
    composition root wires this; the exchange's own code sees the DirectoryLookup port."""

    def __init__(self, handlers: DirectoryHandlers) -> None:
        self._handlers = handlers

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        found, _unknown = await self._handlers.get_many(list(dict.fromkeys(codes)))
        today = today_in_vietnam()
        return {
            a.code: AgencyView(a.code, open=a.is_open_on(today), successor_codes=a.successor_codes)
            for a in found
        }

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        return {r.code: r for r in await self._handlers.resolve(list(codes), on_date)}
