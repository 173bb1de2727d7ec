"""DirectoryService over gRPC: proto conversion and error mapping around the handlers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc

from services.common.errors import FieldViolation, NotFoundError, ValidationError
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam, validate_agency
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.revocation import RevocationHandlers

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["DirectoryService"].full_name

_KIND_TO_PB = {
    AgencyKind.MINISTRY: pb.AGENCY_KIND_MINISTRY,
    AgencyKind.PROVINCE: pb.AGENCY_KIND_PROVINCE,
    AgencyKind.DEPARTMENT: pb.AGENCY_KIND_DEPARTMENT,
    AgencyKind.DISTRICT: pb.AGENCY_KIND_DISTRICT,
    AgencyKind.WARD: pb.AGENCY_KIND_WARD,
    AgencyKind.COMMUNE: pb.AGENCY_KIND_COMMUNE,
    AgencyKind.SPECIAL_ZONE: pb.AGENCY_KIND_SPECIAL_ZONE,
    AgencyKind.OTHER: pb.AGENCY_KIND_OTHER,
}
_KIND_FROM_PB = {value: key for key, value in _KIND_TO_PB.items()}


def agency_to_pb(agency: Agency, today: dt.date) -> pb.Agency:
    return pb.Agency(
        code=agency.code,
        name=agency.name,
        parent_code=agency.parent_code or "",
        kind=_KIND_TO_PB[agency.kind],
        status=(
            pb.AGENCY_STATUS_CLOSED
            if agency.is_closed_on(today)
            else pb.AGENCY_STATUS_ACTIVE
            if agency.is_open_on(today)
            else pb.AGENCY_STATUS_NOT_YET_VALID
        ),
        valid_from=agency.valid_from.isoformat(),
        valid_to=agency.valid_to.isoformat() if agency.valid_to else "",
        successor_codes=list(agency.successor_codes),
        email=agency.email,
        version=agency.version,
    )


def agency_from_pb(message: pb.Agency, forms: frozenset[CodeForm] = DEFAULT_FORMS) -> Agency:
    """Parses what a registrant supplies; every malformed field is reported at once."""
    problems: list[FieldViolation] = []

    def date_field(name: str, raw: str, required: bool) -> dt.date | None:
        if not raw:
            if required:
                problems.append(FieldViolation(f"agency.{name}", "required (YYYY-MM-DD)"))
            return None
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            problems.append(FieldViolation(f"agency.{name}", f"{raw!r} is not a YYYY-MM-DD date"))
            return None

    valid_from = date_field("valid_from", message.valid_from, required=True)
    valid_to = date_field("valid_to", message.valid_to, required=False)
    kind = _KIND_FROM_PB.get(message.kind)
    if kind is None:
        problems.append(FieldViolation("agency.kind", "required"))
    if problems or valid_from is None or kind is None:
        # Also check the fields that did parse, so one answer lists every problem.
        placeholder = Agency(
            code=message.code,
            name=message.name,
            kind=kind or AgencyKind.OTHER,
            valid_from=valid_from or dt.date.min,
            parent_code=message.parent_code or None,
            valid_to=valid_to if valid_from is not None else None,
            successor_codes=tuple(message.successor_codes) if valid_to is not None else (),
            email=message.email,
        )
        try:
            validate_agency(placeholder, forms)
        except ValidationError as exc:
            problems.extend(exc.violations)
        raise ValidationError("invalid agency", problems)
    return Agency(
        code=message.code,
        name=message.name,
        kind=kind,
        valid_from=valid_from,
        parent_code=message.parent_code or None,
        valid_to=valid_to,
        successor_codes=tuple(message.successor_codes),
        email=message.email,
    )


class DirectoryServicer(pb_grpc.DirectoryServiceServicer):
    def __init__(
        self,
        handlers: DirectoryHandlers,
        callers: CallerResolver,
        *,
        revocation: RevocationHandlers | None = None,
    ) -> None:
        self._handlers = handlers
        self._callers = callers
        self._revocation = revocation

    async def RegisterAgency(
        self, request: pb.RegisterAgencyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegisterAgencyResponse:
        async with domain_errors(context):
            self._callers.resolve(context).require_admin()
            registration = await self._handlers.register(
                agency_from_pb(request.agency, self._handlers.forms)
            )
            return pb.RegisterAgencyResponse(
                agency=agency_to_pb(registration.agency, today_in_vietnam()),
                created=registration.created,
            )

    async def GetAgency(
        self, request: pb.GetAgencyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAgencyResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            agency = await self._handlers.get(request.code)
            return pb.GetAgencyResponse(agency=agency_to_pb(agency, today_in_vietnam()))

    async def BatchGetAgencies(
        self, request: pb.BatchGetAgenciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BatchGetAgenciesResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            found, unknown = await self._handlers.get_many(list(request.codes))
            today = today_in_vietnam()
            return pb.BatchGetAgenciesResponse(
                agencies=[agency_to_pb(agency, today) for agency in found], unknown_codes=unknown
            )

    async def ListAgencies(
        self, request: pb.ListAgenciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAgenciesResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            today = today_in_vietnam()
            page = await self._handlers.list(
                parent_code=request.parent_code or None,
                include_closed=request.include_closed,
                page_size=request.page_size,
                page_token=request.page_token,
                today=today,
            )
            return pb.ListAgenciesResponse(
                agencies=[agency_to_pb(agency, today) for agency in page.agencies],
                next_page_token=page.next_page_token,
            )

    async def IngestCrl(
        self, request: pb.IngestCrlRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestCrlResponse:
        async with domain_errors(context):
            self._callers.resolve(context).require_admin()
            if self._revocation is None:
                raise NotFoundError("this deployment has no trust anchors to check CRLs against")
            ingestion = await self._revocation.ingest(request.crl)
            return pb.IngestCrlResponse(
                issuer=ingestion.info.issuer,
                crl_number=str(ingestion.info.number),
                revoked_count=ingestion.info.revoked_count,
                changed=ingestion.changed,
            )
