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
from services.directory.domain.signature_policy import SignaturePolicy
from services.directory.entrypoints.grpc_api import policy_from_pb, resolution_from_pb
from services.directory.service_layer.handlers import MAX_BATCH, DirectoryHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers
from services.exchange.service_layer.ports import AgencyView

LOOKUP_TIMEOUT_S = 5.0


def _pieces(codes: Sequence[str]) -> list[list[str]]:
    """The distinct codes, in order, in pieces of what DirectoryService takes per call: a
    national circular names more recipients than one call may."""
    unique = list(dict.fromkeys(codes))
    return [unique[start : start + MAX_BATCH] for start in range(0, len(unique), MAX_BATCH)]


def _unavailable(exc: grpc.aio.AioRpcError) -> UnavailableError:
    return UnavailableError(f"the directory did not answer: {exc.code().name}", retry_after_s=1.0)


class GrpcDirectoryLookup:
    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._stub = dpb_grpc.DirectoryServiceStub(channel)
        self._metadata = metadata

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        found: dict[str, AgencyView] = {}
        for piece in _pieces(codes):
            try:
                response = await self._stub.BatchGetAgencies(
                    dpb.BatchGetAgenciesRequest(codes=piece),
                    timeout=LOOKUP_TIMEOUT_S,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as exc:
                raise _unavailable(exc) from exc
            for a in response.agencies:
                found[a.code] = AgencyView(
                    code=a.code,
                    open=a.status == dpb.AGENCY_STATUS_ACTIVE,
                    successor_codes=tuple(a.successor_codes),
                )
        return found

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        resolved: dict[str, Resolution] = {}
        for piece in _pieces(codes):
            try:
                response = await self._stub.ResolveRecipients(
                    dpb.ResolveRecipientsRequest(codes=piece, on_date=on_date.isoformat()),
                    timeout=LOOKUP_TIMEOUT_S,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as exc:
                raise _unavailable(exc) from exc
            resolved.update((r.code, resolution_from_pb(r)) for r in response.resolutions)
        return resolved

    async def signature_policy(self, agency_code: str, document_type: int) -> SignaturePolicy:
        try:
            response = await self._stub.GetSignaturePolicy(
                dpb.GetSignaturePolicyRequest(
                    agency_code=agency_code, document_type=max(document_type, 0)
                ),
                timeout=LOOKUP_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from exc
        return policy_from_pb(response.policy)


class LocalDirectoryLookup:
    """The directory served by this same process (all-in-one mode): no network hop. Only the
    composition root wires this; the exchange's own code sees the DirectoryLookup port."""

    def __init__(
        self, handlers: DirectoryHandlers, policies: SignaturePolicyHandlers | None = None
    ) -> None:
        self._handlers = handlers
        self._policies = policies

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        today = today_in_vietnam()
        views: dict[str, AgencyView] = {}
        for piece in _pieces(codes):
            found, _unknown = await self._handlers.get_many(piece)
            for a in found:
                views[a.code] = AgencyView(
                    a.code, open=a.is_open_on(today), successor_codes=a.successor_codes
                )
        return views

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        return {
            r.code: r
            for piece in _pieces(codes)
            for r in await self._handlers.resolve(piece, on_date)
        }

    async def signature_policy(self, agency_code: str, document_type: int) -> SignaturePolicy:
        if self._policies is None:
            return SignaturePolicy(agency_code=agency_code)
        policy, _default = await self._policies.get(agency_code, document_type)
        return policy
