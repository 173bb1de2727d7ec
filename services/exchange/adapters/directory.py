"""The exchange's view of the agency directory, through DirectoryService's gRPC contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from docaxis_client.trust.bindings import Bindings, CertificateBinding
from docaxis_client.trust.signatures import SignerRole
from services.common.errors import UnavailableError
from services.exchange.domain.addresses import AddressState, Resolution
from services.exchange.domain.signature_rules import (
    ORGANIZATION_FORMS,
    PERSON_FORMS,
    SignatureForm,
    SignatureRules,
)
from services.exchange.service_layer.ports import AgencyView

LOOKUP_TIMEOUT_S = 5.0
# What DirectoryService answers per call (its BatchGetAgencies/ResolveRecipients limit).
DIRECTORY_BATCH = 1000
_STATE_FROM_PB = {
    dpb.AGENCY_STATUS_ACTIVE: AddressState.OPEN,
    dpb.AGENCY_STATUS_CLOSED: AddressState.CLOSED,
    dpb.AGENCY_STATUS_NOT_YET_VALID: AddressState.NOT_YET_VALID,
}


_ROLE_FROM_PB = {
    dpb.CERTIFICATE_ROLE_PERSON: SignerRole.PERSON,
    dpb.CERTIFICATE_ROLE_ORGANIZATION: SignerRole.ORGANIZATION,
}


def pieces(codes: Sequence[str]) -> list[list[str]]:
    """The distinct codes, in order, in pieces of what DirectoryService takes per call: a
    national circular names more recipients than one call may."""
    unique = list(dict.fromkeys(codes))
    return [
        unique[start : start + DIRECTORY_BATCH] for start in range(0, len(unique), DIRECTORY_BATCH)
    ]


def resolution_from_pb(message: dpb.Resolution) -> Resolution:
    """DirectoryService's answer in the exchange's own terms."""
    known = message.known and message.status in _STATE_FROM_PB
    return Resolution(
        code=message.code,
        state=_STATE_FROM_PB[message.status] if known else AddressState.UNKNOWN,
        effective=message.effective_code or None,
        chain=tuple(message.chain),
        valid_to=dt.date.fromisoformat(message.valid_to) if message.valid_to else None,
        successor_codes=tuple(message.successor_codes),
        problem=message.problem,
        hub=message.hub or None,
    )


_FORM_FROM_PB: dict[int, SignatureForm] = {
    common_pb2.SIGNATURE_FORM_MANIFEST: SignatureForm.MANIFEST,
    common_pb2.SIGNATURE_FORM_PADES: SignatureForm.PADES,
    common_pb2.SIGNATURE_FORM_XMLDSIG: SignatureForm.XMLDSIG,
}


def _forms(values: Sequence[int], every: frozenset[SignatureForm]) -> frozenset[SignatureForm]:
    """An empty list means every form of the role. A form this exchange does not know (a newer
    directory's) counts for nothing: it cannot be verified here."""
    if not values:
        return every
    return frozenset(_FORM_FROM_PB[v] for v in values if v in _FORM_FROM_PB)


def rules_from_pb(message: common_pb2.SignaturePolicy) -> SignatureRules:
    """DirectoryService's signature policy in the exchange's own terms."""
    return SignatureRules(
        person_forms=_forms(message.person_forms, PERSON_FORMS),
        organization_forms=_forms(message.organization_forms, ORGANIZATION_FORMS),
        allow_legacy_algorithms=message.allow_legacy_algorithms,
        transport_attested=message.transport_attested,
    )


def _unavailable(exc: grpc.aio.AioRpcError) -> UnavailableError:
    return UnavailableError(f"the directory did not answer: {exc.code().name}", retry_after_s=1.0)


class GrpcDirectoryLookup:
    """The directory over DirectoryService (a directory in another process, or any other)."""

    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._stub = dpb_grpc.DirectoryServiceStub(channel)
        self._metadata = metadata

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        found: dict[str, AgencyView] = {}
        for piece in pieces(codes):
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
                    served_here=not a.served_by_hub,
                )
        return found

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        resolved: dict[str, Resolution] = {}
        for piece in pieces(codes):
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

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        if not spki_sha256:
            return {}
        try:
            response = await self._stub.ListCertificateBindings(
                dpb.ListCertificateBindingsRequest(spki_sha256=sorted(set(spki_sha256))),
                timeout=LOOKUP_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from exc
        return {
            b.spki_sha256: CertificateBinding(b.spki_sha256, b.agency_code, _ROLE_FROM_PB[b.role])
            for b in response.bindings
            if b.role in _ROLE_FROM_PB
        }

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
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
        return rules_from_pb(response.policy)
