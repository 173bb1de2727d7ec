"""DirectoryService over gRPC: proto conversion and error mapping around the handlers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from cryptography import x509
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc

from services.common.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    parse_iso_date,
)
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver, Role
from services.directory.domain.certificate_binding import CertificateBinding, CertificateRole
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam, validate_agency
from services.directory.domain.reorganisation import (
    AddressState,
    Reorganisation,
    ReorganisationKind,
    Resolution,
)
from services.directory.domain.signature_policy import SignatureForm, SignaturePolicy
from services.directory.service_layer.certificate_bindings import CertificateBindingHandlers
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.revocation import RevocationHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers

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
        served_by_hub=agency.served_by or "",
    )


def agency_from_pb(message: pb.Agency, forms: frozenset[CodeForm] = DEFAULT_FORMS) -> Agency:
    """Parses what a registrant supplies; every malformed field is reported at once."""
    problems: list[FieldViolation] = []

    valid_from = parse_iso_date(problems, "agency.valid_from", message.valid_from, required=True)
    valid_to = parse_iso_date(problems, "agency.valid_to", message.valid_to)
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


_REORGANISATION_KIND_TO_PB = {
    ReorganisationKind.MERGE: pb.REORGANISATION_KIND_MERGE,
    ReorganisationKind.RENAME: pb.REORGANISATION_KIND_RENAME,
    ReorganisationKind.CLOSE: pb.REORGANISATION_KIND_CLOSE,
    ReorganisationKind.SPLIT: pb.REORGANISATION_KIND_SPLIT,
}
_REORGANISATION_KIND_FROM_PB = {value: key for key, value in _REORGANISATION_KIND_TO_PB.items()}
_STATE_TO_PB = {
    AddressState.OPEN: pb.AGENCY_STATUS_ACTIVE,
    AddressState.CLOSED: pb.AGENCY_STATUS_CLOSED,
    AddressState.NOT_YET_VALID: pb.AGENCY_STATUS_NOT_YET_VALID,
    AddressState.UNKNOWN: pb.AGENCY_STATUS_UNSPECIFIED,
}


def reorganisation_from_pb(message: pb.Reorganisation) -> Reorganisation:
    problems: list[FieldViolation] = []
    kind = _REORGANISATION_KIND_FROM_PB.get(message.kind)
    if kind is None:
        problems.append(FieldViolation("reorganisation.kind", "MERGE, RENAME, CLOSE or SPLIT"))
    effective = parse_iso_date(
        problems, "reorganisation.effective_date", message.effective_date, required=True
    )
    if problems or kind is None or effective is None:
        raise ValidationError("invalid reorganisation", problems)
    return Reorganisation(
        kind, effective, tuple(message.old_codes), tuple(message.new_codes), message.note
    )


def reorganisation_to_pb(reorganisation: Reorganisation) -> pb.Reorganisation:
    return pb.Reorganisation(
        kind=_REORGANISATION_KIND_TO_PB[reorganisation.kind],
        effective_date=reorganisation.effective_date.isoformat(),
        old_codes=list(reorganisation.old_codes),
        new_codes=list(reorganisation.new_codes),
        note=reorganisation.note,
        id=reorganisation.id,
    )


def resolution_to_pb(resolution: Resolution) -> pb.Resolution:
    return pb.Resolution(
        code=resolution.code,
        known=resolution.state is not AddressState.UNKNOWN,
        status=_STATE_TO_PB[resolution.state],
        effective_code=resolution.effective or "",
        chain=list(resolution.chain),
        valid_to=resolution.valid_to.isoformat() if resolution.valid_to else "",
        successor_codes=list(resolution.successor_codes),
        problem=resolution.problem,
        hub=resolution.hub or "",
    )


def resolution_from_pb(message: pb.Resolution) -> Resolution:
    state = (
        AddressState.UNKNOWN
        if not message.known
        else {value: key for key, value in _STATE_TO_PB.items()}.get(
            message.status, AddressState.UNKNOWN
        )
    )
    return Resolution(
        code=message.code,
        state=state,
        effective=message.effective_code or None,
        chain=tuple(message.chain),
        valid_to=dt.date.fromisoformat(message.valid_to) if message.valid_to else None,
        successor_codes=tuple(message.successor_codes),
        problem=message.problem,
        hub=message.hub or None,
    )


SIGNATURE_FORM_TO_PB = {
    SignatureForm.MANIFEST: common_pb2.SIGNATURE_FORM_MANIFEST,
    SignatureForm.PADES: common_pb2.SIGNATURE_FORM_PADES,
    SignatureForm.XMLDSIG: common_pb2.SIGNATURE_FORM_XMLDSIG,
}
_SIGNATURE_FORM_FROM_PB = {value: key for key, value in SIGNATURE_FORM_TO_PB.items()}


def policy_to_pb(policy: SignaturePolicy) -> common_pb2.SignaturePolicy:
    message = common_pb2.SignaturePolicy(
        agency_code=policy.agency_code,
        document_type=policy.document_type,
        person_forms=[SIGNATURE_FORM_TO_PB[f] for f in sorted(policy.person_forms)],
        organization_forms=[SIGNATURE_FORM_TO_PB[f] for f in sorted(policy.organization_forms)],
        allow_legacy_algorithms=policy.allow_legacy_algorithms,
        transport_attested=policy.transport_attested,
        updated_by=policy.updated_by,
    )
    if policy.updated_at is not None:
        message.updated_at.FromDatetime(policy.updated_at)
    return message


_ROLE_TO_PB = {
    CertificateRole.PERSON: pb.CERTIFICATE_ROLE_PERSON,
    CertificateRole.ORGANIZATION: pb.CERTIFICATE_ROLE_ORGANIZATION,
}
_ROLE_FROM_PB = {value: key for key, value in _ROLE_TO_PB.items()}


def binding_to_pb(binding: CertificateBinding) -> pb.CertificateBinding:
    message = pb.CertificateBinding(
        spki_sha256=binding.spki_sha256,
        agency_code=binding.agency_code,
        role=_ROLE_TO_PB[binding.role],
        subject=binding.subject,
        issuer=binding.issuer,
        serial=binding.serial,
        bound_by=binding.bound_by,
    )
    if binding.not_after is not None:
        message.not_after.FromDatetime(binding.not_after)
    if binding.bound_at is not None:
        message.bound_at.FromDatetime(binding.bound_at)
    return message


def _certificate_from_pb(data: bytes) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValidationError(
            "cannot bind this certificate",
            [FieldViolation("certificate", f"not a DER or PEM certificate: {exc}")],
        ) from None


def _forms(
    problems: list[FieldViolation], field: str, values: Any, default: frozenset[SignatureForm]
) -> frozenset[SignatureForm]:
    forms = set()
    for value in values:
        form = _SIGNATURE_FORM_FROM_PB.get(value)
        if form is None:
            problems.append(FieldViolation(field, f"unknown signature form {value}"))
        else:
            forms.add(form)
    return frozenset(forms) or default


def policy_from_pb(message: common_pb2.SignaturePolicy) -> SignaturePolicy:
    """A policy from the wire; empty form lists mean every form of the role."""
    problems: list[FieldViolation] = []
    default = SignaturePolicy()
    person = _forms(problems, "policy.person_forms", message.person_forms, default.person_forms)
    organization = _forms(
        problems,
        "policy.organization_forms",
        message.organization_forms,
        default.organization_forms,
    )
    if problems:
        raise ValidationError("invalid signature policy", problems)
    return SignaturePolicy(
        agency_code=message.agency_code,
        document_type=message.document_type,
        person_forms=person,
        organization_forms=organization,
        allow_legacy_algorithms=message.allow_legacy_algorithms,
        transport_attested=message.transport_attested,
    )


class DirectoryServicer(pb_grpc.DirectoryServiceServicer):
    def __init__(
        self,
        handlers: DirectoryHandlers,
        callers: CallerResolver,
        *,
        revocation: RevocationHandlers | None = None,
        policies: SignaturePolicyHandlers | None = None,
        bindings: CertificateBindingHandlers | None = None,
    ) -> None:
        self._handlers = handlers
        self._callers = callers
        self._revocation = revocation
        self._policies = policies
        self._bindings = bindings

    def _binding_handlers(self) -> CertificateBindingHandlers:
        if self._bindings is None:
            raise NotFoundError("this directory keeps no certificate bindings")
        return self._bindings

    async def BindCertificate(
        self, request: pb.BindCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BindCertificateResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            caller.require_admin(in_person=True)
            stored, changed = await self._binding_handlers().bind(
                _certificate_from_pb(request.certificate),
                request.agency_code,
                _ROLE_FROM_PB.get(request.role),
                caller.subject or caller.role.value,
            )
            return pb.BindCertificateResponse(binding=binding_to_pb(stored), changed=changed)

    async def UnbindCertificate(
        self, request: pb.UnbindCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UnbindCertificateResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            caller.require_admin(in_person=True)
            removed = await self._binding_handlers().unbind(
                request.spki_sha256, caller.subject or caller.role.value
            )
            return pb.UnbindCertificateResponse(binding=binding_to_pb(removed))

    async def ListCertificateBindings(
        self,
        request: pb.ListCertificateBindingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ListCertificateBindingsResponse:
        async with domain_errors(context):
            # Bindings name other agencies' officials: operators and the hub's services only.
            if self._callers.resolve(context).role in (Role.AGENCY, Role.PEER):
                raise PermissionDeniedError("certificate bindings are for operators and the hub")
            found = await self._binding_handlers().find(
                agency_code=request.agency_code or None,
                spki_sha256=list(request.spki_sha256) or None,
            )
            return pb.ListCertificateBindingsResponse(
                bindings=[binding_to_pb(binding) for binding in found]
            )

    def _policy_handlers(self) -> SignaturePolicyHandlers:
        if self._policies is None:
            raise NotFoundError("this directory keeps no signature policies")
        return self._policies

    async def GetSignaturePolicy(
        self, request: pb.GetSignaturePolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSignaturePolicyResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            policy, default = await self._policy_handlers().get(
                request.agency_code, request.document_type
            )
            return pb.GetSignaturePolicyResponse(policy=policy_to_pb(policy), default=default)

    async def SetSignaturePolicy(
        self, request: pb.SetSignaturePolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetSignaturePolicyResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            caller.require_admin(in_person=True)
            stored = await self._policy_handlers().set(
                policy_from_pb(request.policy), caller.subject or caller.role.value
            )
            return pb.SetSignaturePolicyResponse(policy=policy_to_pb(stored))

    async def RegisterAgency(
        self, request: pb.RegisterAgencyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegisterAgencyResponse:
        async with domain_errors(context):
            self._callers.resolve(context).require_admin(in_person=True)
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
            self._callers.resolve(context).require_admin(in_person=True)
            if self._revocation is None:
                raise NotFoundError("this deployment has no trust anchors to check CRLs against")
            ingestion = await self._revocation.ingest(request.crl)
            return pb.IngestCrlResponse(
                issuer=ingestion.info.issuer,
                crl_number=str(ingestion.info.number),
                revoked_count=ingestion.info.revoked_count,
                changed=ingestion.changed,
            )

    async def RecordReorganisation(
        self,
        request: pb.RecordReorganisationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.RecordReorganisationResponse:
        async with domain_errors(context):
            self._callers.resolve(context).require_admin(in_person=True)
            recorded = await self._handlers.record_reorganisation(
                reorganisation_from_pb(request.reorganisation)
            )
            today = today_in_vietnam()
            return pb.RecordReorganisationResponse(
                reorganisation=reorganisation_to_pb(recorded.reorganisation),
                agencies=[agency_to_pb(agency, today) for agency in recorded.agencies],
                created=recorded.created,
            )

    async def ResolveRecipients(
        self, request: pb.ResolveRecipientsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolveRecipientsResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            problems: list[FieldViolation] = []
            day = (
                parse_iso_date(problems, "on_date", request.on_date)
                if request.on_date
                else today_in_vietnam()
            )
            if problems or day is None:
                raise ValidationError("invalid resolve request", problems)
            resolutions = await self._handlers.resolve(list(request.codes), day)
            return pb.ResolveRecipientsResponse(
                resolutions=[resolution_to_pb(r) for r in resolutions]
            )

    async def SyncAgencies(
        self, request: pb.SyncAgenciesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SyncAgenciesResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            page = await self._handlers.sync(
                since_version=request.since_version, page_size=request.page_size
            )
            today = today_in_vietnam()
            return pb.SyncAgenciesResponse(
                agencies=[agency_to_pb(agency, today) for agency in page.agencies],
                next_since_version=page.next_since_version,
                latest_version=page.latest_version,
                more=page.more,
            )

    async def SetHubRoute(
        self, request: pb.SetHubRouteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetHubRouteResponse:
        async with domain_errors(context):
            caller = self._callers.resolve(context)
            caller.require_admin(in_person=True)
            pattern, hub_code = await self._handlers.set_route(
                request.route.pattern, request.route.hub_code, caller.subject or caller.role.value
            )
            return pb.SetHubRouteResponse(route=pb.HubRoute(pattern=pattern, hub_code=hub_code))

    async def ListHubRoutes(
        self, request: pb.ListHubRoutesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListHubRoutesResponse:
        async with domain_errors(context):
            self._callers.resolve(context)
            routes = await self._handlers.routes()
            return pb.ListHubRoutesResponse(
                routes=[pb.HubRoute(pattern=p, hub_code=h) for p, h in sorted(routes.items())]
            )
