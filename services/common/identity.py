"""Who is calling: the agency (or operator role) behind a gRPC request.

Production resolves the caller from the mutual-TLS client certificate (`TlsCallerResolver`):
the certificate must chain to the configured anchors, allow client authentication and not be
revoked, and its `urn:docaxis:` identity names an agency or an operator role. Development mode
(`HeaderCallerResolver`) believes an `x-docaxis-agency` header instead; the services refuse to
start with it unless the explicit development flag is set.

Delegation: the REST/edXML gateway authenticates agencies itself and calls with its own
certificate (`urn:docaxis:role:gateway`) plus `x-docaxis-on-behalf-of` and the agency's
certificate (`x-docaxis-on-behalf-cert-bin`, validated here too: revocation applies at once).
Only the gateway role may send those headers; it then acts as that agency under the usual
rules, and nothing else. The forwarded certificate is public data: it proves no presence of
the agency, so the gateway role is trusted to act for any agency that is registered, open and
not revoked. The admin console works the same way (`x-docaxis-on-behalf-of: role:admin` with an
administrator's certificate); what changes the directory or the trust store requires the
administrator's own certificate (`require_admin(in_person=True)`), so the gateway role can read
and resend, never re-register agencies or ingest CRLs.

The monitoring role may read health and metrics only. Health never resolves a caller, metrics
resolve operators with `resolve_operator` (monitoring, administrators, the gateway as itself),
and every other resolution of a monitoring credential is a refusal.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import structlog
from cryptography import x509

from docaxis_client.delegation import ADMINISTRATOR, ON_BEHALF_CERT_HEADER, ON_BEHALF_HEADER
from docaxis_client.trust.chain import (
    CertificatePurpose,
    agency_code_of,
    describe,
    peer_hub_of,
    role_of,
)
from docaxis_client.trust.chain import Role as CertificateRole
from docaxis_client.trust.errors import CertificateError
from docaxis_client.trust.manifest import AGENCY_CODE_PATTERN
from services.common.clock import Clock, utc_now
from services.common.errors import PermissionDeniedError, UnauthenticatedError
from services.common.trust import TrustRegistry

AGENCY_HEADER = "x-docaxis-agency"
ROLE_HEADER = "x-docaxis-role"
# Development mode: the peer hub a `peer` caller claims to be.
PEER_HEADER = "x-docaxis-peer"
# The agency the gateway acts for; believed from the gateway role only (delegation).


# gRPC's names for the peer's certificate and the chain it presented (auth context properties).
_PEER_CERT = "x509_pem_cert"
_PEER_CHAIN = "x509_pem_cert_chain"


class Role(enum.StrEnum):
    AGENCY = "agency"
    ADMIN = "admin"
    MONITOR = "monitor"
    # docaxis's own services calling each other (e.g. the exchange asking the directory).
    HUB = "hub"
    # The REST/edXML gateway: authenticates the agency itself, then acts for it (delegation).
    GATEWAY = "gateway"
    # Another hub of a federation (`urn:docaxis:peer:<hub code>`): forwards documents and
    # statuses to this hub and reads its directory; never acts as an agency or operator.
    PEER = "peer"


_ROLE_OF_CERTIFICATE = {
    CertificateRole.ADMIN: Role.ADMIN,
    CertificateRole.MONITOR: Role.MONITOR,
    CertificateRole.HUB: Role.HUB,
    CertificateRole.GATEWAY: Role.GATEWAY,
}


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    # Set for Role.AGENCY: the only agency this caller may act as.
    agency_code: str | None = None
    # The client certificate (RFC 4514 subject, hex serial), for security logs; empty in dev.
    subject: str = ""
    serial: str = ""
    # True when the gateway authenticated the principal and acts for it (subject/serial: the
    # gateway's for an agency, the administrator's for the admin console).
    delegated: bool = False
    # Set for Role.PEER: the peer hub's code.
    peer_hub: str | None = None

    def require_peer(self) -> str:
        """The calling peer hub's code; nobody else forwards between hubs."""
        if self.role is not Role.PEER or self.peer_hub is None:
            raise PermissionDeniedError(
                "this operation is for peer hubs", meta={"role": self.role.value}
            )
        return self.peer_hub

    def require_agency(self) -> str:
        """The caller's agency code; operators (admin, monitor) do not act as agencies."""
        if self.role is not Role.AGENCY or self.agency_code is None:
            raise PermissionDeniedError(
                "this operation is for agencies", meta={"role": self.role.value}
            )
        return self.agency_code

    def require_admin(self, *, in_person: bool = False) -> None:
        """An administrator; with `in_person`, one calling with their own certificate, not
        through the admin console (the gateway could forward any administrator's public
        certificate, so changes to the directory and the trust store are not delegated)."""
        if self.role is not Role.ADMIN:
            raise PermissionDeniedError(
                "this operation is for administrators", meta={"role": self.role.value}
            )
        if in_person and self.delegated:
            raise PermissionDeniedError(
                "this operation needs the administrator's own client certificate, not the "
                "gateway's delegation",
                meta={"role": self.role.value, "delegated": "true"},
            )


class CallerResolver(Protocol):
    def resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The authenticated caller from its credentials alone (no I/O), or
        UnauthenticatedError; PermissionDeniedError for a monitoring credential."""
        ...

    async def authenticate(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """`resolve`, and an agency must also be registered and open in the directory
        (PermissionDeniedError with reason NOT_REGISTERED otherwise)."""
        ...

    def credentials_changed(self) -> Awaitable[object]:
        """Completes when what `resolve` answers may have changed after this call (revocations
        reloaded), for a long-lived stream to resolve its caller again; never where nothing can
        change."""
        ...

    def resolve_operator(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """For operational data (metrics): the monitoring role, an administrator or the gateway
        acting as itself; UnauthenticatedError as `resolve`, PermissionDeniedError for anyone
        else (agencies, the hub, and any caller sending the delegation header)."""
        ...


# Whether an agency code is registered and open today; raises UnavailableError when the
# directory cannot say.
AgencyCheck = Callable[[str], Awaitable[bool]]

_MONITOR_ONLY = "the monitoring role may only read health and metrics"


def _on_behalf_of(ctx: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in ctx.invocation_metadata() or ():
        if key == ON_BEHALF_HEADER:
            return value if isinstance(value, str) else ""
    return None


def _delegate(caller: Caller, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    """The gateway acts for the agency its header names (and for nothing else); that header
    from any other caller is a refusal, never ignored."""
    agency = _on_behalf_of(ctx)
    if caller.role is not Role.GATEWAY:
        if agency is not None:
            raise PermissionDeniedError(
                f"only the gateway may send {ON_BEHALF_HEADER}", meta={"role": caller.role.value}
            )
        return caller
    if agency is None:
        raise PermissionDeniedError(
            f"the gateway acts for an agency: the {ON_BEHALF_HEADER} header is missing",
            meta={"role": caller.role.value},
        )
    if agency == ADMINISTRATOR:
        # The admin console: which administrator, `_delegated` learns from the forwarded
        # certificate (and the dev-mode resolver, which has none, believes the gateway).
        return Caller(Role.ADMIN, None, caller.subject, caller.serial, delegated=True)
    if not AGENCY_CODE_PATTERN.fullmatch(agency):
        raise PermissionDeniedError(
            f"{ON_BEHALF_HEADER} is not an agency code", meta={"role": caller.role.value}
        )
    return Caller(Role.AGENCY, agency, caller.subject, caller.serial, delegated=True)


def _log_as(caller: Caller) -> None:
    # Every log line of this call, security refusals included, names who made it.
    structlog.contextvars.bind_contextvars(
        caller_role=caller.role.value,
        caller_agency=caller.agency_code or "",
        caller_delegated=caller.delegated,
    )


def _bind(caller: Caller) -> Caller:
    _log_as(caller)
    if caller.role is Role.MONITOR:
        raise PermissionDeniedError(_MONITOR_ONLY, meta={"role": caller.role.value})
    return caller


# Who may read operational data (metrics). The gateway reads them for its own /metrics.
_OPERATORS = frozenset({Role.MONITOR, Role.ADMIN, Role.GATEWAY})


def _operator(caller: Caller, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    """`caller` if it may read operational data as itself. Narrower than `_delegate`: nobody
    reads them on another's behalf, so the delegation header is a refusal here too."""
    _log_as(caller)
    if _on_behalf_of(ctx) is not None:
        raise PermissionDeniedError(
            f"operational data is not read on behalf of anyone ({ON_BEHALF_HEADER})",
            meta={"role": caller.role.value},
        )
    if caller.role not in _OPERATORS:
        raise PermissionDeniedError(
            "this operation is for monitoring, administrators and the gateway",
            meta={"role": caller.role.value},
        )
    return caller


class _OpenAgencies:
    """Recent 'registered and open' answers, so that a busy agency does not cost a directory
    lookup per call; a closure reaches every process within the time-to-live."""

    def __init__(self, check: AgencyCheck | None, ttl_s: float) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._until: dict[str, float] = {}

    async def require(self, caller: Caller) -> Caller:
        code = caller.agency_code
        if self._check is None or caller.role is not Role.AGENCY or code is None:
            return caller
        now = time.monotonic()
        if self._until.get(code, 0.0) > now:
            return caller
        if not await self._check(code):
            raise PermissionDeniedError(
                f"agency {code} is not registered, or closed, in the directory",
                reason="NOT_REGISTERED",
                meta={"agency": code},
            )
        if len(self._until) > 10_000:
            self._until.clear()
        self._until[code] = now + self._ttl_s
        return caller


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A caller as resolved for one call, until what it rests on changes."""

    resolver: object
    # The call's ServicerContext, held (not its id) so that the answer can never serve another
    # call, even one in a context copied from this call's.
    context: object
    caller: Caller
    # What the caller's certificates (the client's, and a delegation's forwarded one) hold for:
    # the revocations' generation and the validity both share. None: headers, held for the call.
    validity: _Validated | None = None


# The caller the current call resolved. A call is resolved at least twice (the limits, then its
# servicer; a stream before each batch): the second time it is a look-up here instead of the
# certificate again (auth context, hash, log bindings); docs/perf/README.md, "The call's fixed
# costs, again". Each gRPC call runs in a task of its own, so this is per call; the log context
# bound with the first resolution is in the same context, so it is not bound again.
_RESOLVED: contextvars.ContextVar[_Resolved | None] = contextvars.ContextVar(
    "docaxis_resolved_caller", default=None
)


def _remembered(resolver: object, ctx: grpc.aio.ServicerContext[Any, Any]) -> _Resolved | None:
    """What `resolver` resolved for this very call, if anything."""
    resolved = _RESOLVED.get()
    if resolved is None or resolved.context is not ctx or resolved.resolver is not resolver:
        return None
    return resolved


class HeaderCallerResolver:
    """Development only: believes the caller's own headers."""

    def __init__(self, agency_open: AgencyCheck | None = None) -> None:
        self._open = _OpenAgencies(agency_open, ttl_s=5.0)

    def resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        resolved = _remembered(self, ctx)
        if resolved is not None:
            return resolved.caller  # headers do not change during a call
        caller = self._resolve(ctx)
        _RESOLVED.set(_Resolved(self, ctx, caller))
        return caller

    def _resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        headers = _text_headers(ctx)
        role = _header_role(headers)
        if role is Role.GATEWAY:
            return _bind(_delegate(Caller(role), ctx))
        if ON_BEHALF_HEADER in headers:
            raise PermissionDeniedError(
                f"only the gateway may send {ON_BEHALF_HEADER}", meta={"role": role.value}
            )
        if role is Role.PEER:
            hub = headers.get(PEER_HEADER)
            if not hub:
                raise UnauthenticatedError(f"no peer identity: the {PEER_HEADER} header is missing")
            return _bind(Caller(Role.PEER, peer_hub=hub))
        if role is Role.AGENCY:
            agency = headers.get(AGENCY_HEADER)
            if not agency:
                raise UnauthenticatedError(
                    f"no caller identity: the {AGENCY_HEADER} header is missing"
                )
            return _bind(Caller(Role.AGENCY, agency))
        return _bind(Caller(role))

    async def authenticate(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        return await self._open.require(self.resolve(ctx))

    def credentials_changed(self) -> Awaitable[object]:
        return asyncio.Event().wait()  # header identities are never revoked

    def resolve_operator(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        headers = _text_headers(ctx)
        role = _header_role(headers)
        agency = headers.get(AGENCY_HEADER) if role is Role.AGENCY else None
        return _operator(Caller(role, agency), ctx)


def _text_headers(ctx: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {
        key: value
        for key, value in ctx.invocation_metadata() or ()
        if isinstance(value, str)  # binary (-bin) headers carry no identity
    }


def _header_role(headers: dict[str, str]) -> Role:
    role_raw = headers.get(ROLE_HEADER, Role.AGENCY.value)
    try:
        return Role(role_raw)
    except ValueError:
        raise UnauthenticatedError(f"unknown role {role_raw!r}") from None


# Certificates a TlsCallerResolver keeps answers for (each a kilobyte or two, PEM or DER): more
# than the agencies and operators of an axis, and a bound whatever callers present.
_CACHE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Validated:
    caller: Caller
    generation: int
    not_before: dt.datetime
    not_after: dt.datetime

    def holds(self, generation: int, now: dt.datetime) -> bool:
        """Still true: the revocations unchanged, and the certificates within their validity."""
        return self.generation == generation and self.not_before <= now <= self.not_after


class TlsCallerResolver:
    """The caller named by its mutual-TLS client certificate.

    gRPC's handshake already refused clients without a certificate of the anchors, or with an
    expired one. Here the certificate is validated again with the trust core, which adds what
    the handshake does not know: revocation (CRLs ingested at runtime), the clientAuth usage,
    and the docaxis identity. Results are cached per certificate until the revocations change
    or the certificate's validity ends.
    """

    def __init__(
        self,
        trust: TrustRegistry,
        agency_open: AgencyCheck | None = None,
        *,
        open_ttl_s: float = 5.0,
        clock: Clock = utc_now,
        cache_entries: int = _CACHE_ENTRIES,
    ) -> None:
        if cache_entries < 1:
            raise ValueError("the certificate cache keeps at least one entry")
        self._trust = trust
        self._open = _OpenAgencies(agency_open, ttl_s=open_ttl_s)
        self._clock = clock
        # Validated certificates by their bytes as received, oldest first. The bytes themselves
        # are the key: a dict hashes and compares them for much less than the SHA-256 of the
        # PEM that was the key, on every call (docs/perf/README.md, "The call's fixed costs,
        # again"), and equal keys are equal certificates, byte for byte.
        self._cache: dict[bytes, _Validated] = {}
        self._cache_entries = cache_entries

    def resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        now = self._clock()
        resolved = _remembered(self, ctx)
        if (
            resolved is not None
            and resolved.validity is not None
            and resolved.validity.holds(self._trust.generation, now)
        ):
            return resolved.caller
        presented = self._presented(ctx, now)
        validity = self._delegated(presented, _delegate(presented.caller, ctx), ctx, now)
        caller = _bind(validity.caller)
        _RESOLVED.set(_Resolved(self, ctx, caller, validity))
        return caller

    def resolve_operator(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        return _operator(self._presented(ctx, self._clock()).caller, ctx)

    def _presented(self, ctx: grpc.aio.ServicerContext[Any, Any], now: dt.datetime) -> _Validated:
        """Whom the client certificate names (validated), before any delegation."""
        properties = ctx.auth_context()
        leaf_pem = next(iter(properties.get(_PEER_CERT, ())), None)
        if leaf_pem is None:
            # Only reachable on a plaintext port: the TLS port requires a client certificate.
            raise UnauthenticatedError("no client certificate")

        def parse() -> tuple[x509.Certificate, list[x509.Certificate]]:
            try:
                return x509.load_pem_x509_certificate(leaf_pem), [
                    cert
                    for pem in properties.get(_PEER_CHAIN, ())
                    for cert in x509.load_pem_x509_certificates(pem)
                ]
            except ValueError:
                raise UnauthenticatedError("unreadable client certificate") from None

        return self._validated(leaf_pem, parse, now, log_as_caller=True)

    def _validated(
        self,
        encoded: bytes,
        parse: Callable[[], tuple[x509.Certificate, list[x509.Certificate]]],
        now: dt.datetime,
        *,
        log_as_caller: bool = False,
    ) -> _Validated:
        """The caller the certificate `encoded` (as received, PEM or DER) names: from the cache
        while the revocations are unchanged and the certificate is within its validity, without
        parsing it again; parsed (leaf and presented chain) and validated with the trust core
        otherwise. With `log_as_caller`, every log line of the call names its subject and
        serial, refusals included."""
        cached = self._cache.get(encoded)
        if cached is not None and cached.holds(self._trust.generation, now):
            if log_as_caller:
                _log_certificate(cached.caller.subject, cached.caller.serial)
            return cached
        generation = self._trust.generation
        leaf, presented = parse()
        subject, serial = describe(leaf), f"{leaf.serial_number:x}"
        if log_as_caller:
            _log_certificate(subject, serial)
        try:
            self._trust.store.validate(
                [leaf, *(cert for cert in presented if cert != leaf)],
                at=now,
                purpose=CertificatePurpose.CLIENT_AUTH,
            )
            caller = self._identity(leaf, subject, serial)
        except CertificateError as exc:
            raise UnauthenticatedError(str(exc), reason=exc.reason, meta=exc.meta) from None
        validated = _Validated(
            caller, generation, leaf.not_valid_before_utc, leaf.not_valid_after_utc
        )
        cache = self._cache
        cache.pop(encoded, None)  # validated again: now the newest
        if len(cache) >= self._cache_entries:
            del cache[next(iter(cache))]  # the oldest, one at a time: no storm of misses
        cache[encoded] = validated
        return validated

    def _delegated(
        self,
        presented: _Validated,
        caller: Caller,
        ctx: grpc.aio.ServicerContext[Any, Any],
        now: dt.datetime,
    ) -> _Validated:
        """`caller` (whom the `presented` certificate acts as), for as long as what it rests on
        holds. For the gateway acting for an agency: the agency's own certificate, forwarded by
        the gateway, must be valid now (revocation included) and name that agency."""
        if caller is presented.caller:
            return presented  # acting as itself: _delegate makes a delegated caller otherwise
        der = next(
            (
                value
                for key, value in ctx.invocation_metadata() or ()
                if key == ON_BEHALF_CERT_HEADER and isinstance(value, bytes)
            ),
            None,
        )
        if der is None:
            raise UnauthenticatedError(
                f"the gateway must forward the agency's certificate in {ON_BEHALF_CERT_HEADER}"
            )

        def parse() -> tuple[x509.Certificate, list[x509.Certificate]]:
            try:
                return x509.load_der_x509_certificate(der), []
            except ValueError:
                raise UnauthenticatedError("unreadable agency certificate") from None

        forwarded = self._validated(der, parse, now)
        principal = forwarded.caller
        if caller.role is Role.ADMIN:
            if principal.role is not Role.ADMIN:
                raise PermissionDeniedError(
                    "the forwarded certificate is not an administrator's",
                    meta={"role": caller.role.value},
                )
            # Audited actions name the administrator, not the gateway.
            caller = Caller(Role.ADMIN, None, principal.subject, principal.serial, delegated=True)
        elif principal.role is not Role.AGENCY or principal.agency_code != caller.agency_code:
            raise PermissionDeniedError(
                f"the forwarded certificate is not {caller.agency_code}'s",
                meta={"role": caller.role.value},
            )
        # Both certificates: the gateway's and the forwarded one.
        return _Validated(
            caller,
            presented.generation,
            max(presented.not_before, forwarded.not_before),
            min(presented.not_after, forwarded.not_after),
        )

    async def authenticate(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        return await self._open.require(self.resolve(ctx))

    def credentials_changed(self) -> Awaitable[object]:
        return self._trust.changed()

    @staticmethod
    def _identity(leaf: x509.Certificate, subject: str, serial: str) -> Caller:
        code = agency_code_of(leaf)
        if code is not None:
            return Caller(Role.AGENCY, code, subject, serial)
        hub = peer_hub_of(leaf)
        if hub is not None:
            return Caller(Role.PEER, None, subject, serial, peer_hub=hub)
        role = role_of(leaf)
        if role is not None:
            return Caller(_ROLE_OF_CERTIFICATE[role], None, subject, serial)
        raise UnauthenticatedError(
            "the client certificate names no docaxis agency or role",
            meta={"subject": subject, "serial": serial},
        )


def _log_certificate(subject: str, serial: str) -> None:
    structlog.contextvars.bind_contextvars(caller_subject=subject, caller_serial=serial)


def agency_metadata(agency_code: str) -> tuple[tuple[str, str], ...]:
    """Call metadata a development client sends to act as `agency_code`."""
    return ((AGENCY_HEADER, agency_code),)


def role_metadata(role: Role) -> tuple[tuple[str, str], ...]:
    return ((ROLE_HEADER, role.value),)


def peer_metadata(hub_code: str) -> tuple[tuple[str, str], ...]:
    """Call metadata a development hub sends to another as peer `hub_code`."""
    return ((ROLE_HEADER, Role.PEER.value), (PEER_HEADER, hub_code))
