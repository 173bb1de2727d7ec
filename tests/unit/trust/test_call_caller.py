"""A call's caller is resolved once and remembered for that call alone (identity._RESOLVED):
the second resolution of a call (the limits', then its servicer's) reads no certificate again,
and the remembered answer never serves another call or another resolver, nor outlives a
revocation or the validity of a certificate it rests on."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from docaxis_client.delegation import on_behalf_metadata
from docaxis_client.trust import Role
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from services.common.errors import PermissionDeniedError, UnauthenticatedError
from services.common.identity import Caller, HeaderCallerResolver, TlsCallerResolver
from services.common.identity import Role as CallerRole
from services.common.trust import TrustRegistry
from tests.tls_peer import PeerContext

CODE, OTHER = "000.00.13.H45", "000.00.00.G22"
T = TypeVar("T")


class CountingContext(PeerContext):
    """A call's context that counts how often its certificate (auth context) is read."""

    def __init__(
        self, issued: IssuedCertificate | None, metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        super().__init__(issued, metadata)
        self.reads = 0

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        self.reads += 1
        return super().auth_context()


def _ctx(call: CountingContext) -> grpc.aio.ServicerContext[Any, Any]:
    return cast("grpc.aio.ServicerContext[Any, Any]", call)


def _in_a_call(work: Callable[[], T]) -> T:
    """`work` in a context of its own, as each gRPC call runs in its own task."""
    return contextvars.copy_context().run(work)


def _der(issued: IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_calls_second_resolution_reads_no_certificate(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    resolver = TlsCallerResolver(registry)
    call = CountingContext(fresh_ca.issue_agency(CODE, "Sở Y tế"))

    def twice() -> tuple[Caller, Caller]:
        return resolver.resolve(_ctx(call)), resolver.resolve(_ctx(call))

    first, second = _in_a_call(twice)
    assert first == second
    assert first.agency_code == CODE
    assert call.reads == 1


def test_the_remembered_caller_answers_for_its_own_call_only(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """Even within one context: keyed by the call, the resolver, and (through the call) the
    delegation; an agency acts only as itself."""
    resolver = TlsCallerResolver(registry)
    agency, other = fresh_ca.issue_agency(CODE, "Sở Y tế"), fresh_ca.issue_agency(OTHER, "VPCP")
    gateway = fresh_ca.issue_role(Role.GATEWAY, "gateway")
    strangers = TlsCallerResolver(TrustRegistry([DemoCA.create().root_certificate]))

    def calls() -> None:
        first = CountingContext(agency)
        assert resolver.resolve(_ctx(first)).agency_code == CODE
        assert resolver.resolve(_ctx(CountingContext(other))).agency_code == OTHER
        for_agency = CountingContext(gateway, on_behalf_metadata(CODE, _der(agency)))
        for_other = CountingContext(gateway, on_behalf_metadata(OTHER, _der(other)))
        assert resolver.resolve(_ctx(for_agency)).agency_code == CODE
        assert resolver.resolve(_ctx(for_other)).agency_code == OTHER
        forged = CountingContext(gateway, on_behalf_metadata(OTHER, _der(agency)))
        with pytest.raises(PermissionDeniedError, match="forwarded certificate"):
            resolver.resolve(_ctx(forged))
        # Another resolver (other anchors) does not take this one's answer for the same call.
        assert resolver.resolve(_ctx(first)).agency_code == CODE
        with pytest.raises(UnauthenticatedError) as untrusted:
            strangers.resolve(_ctx(first))
        assert untrusted.value.reason == "UNTRUSTED_ISSUER"

    _in_a_call(calls)


def test_a_revocation_during_a_call_refuses_its_next_resolution(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """What a stream does before each batch: the remembered caller goes with the revocations."""
    resolver = TlsCallerResolver(registry)
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    call = CountingContext(issued)

    def revoked_meanwhile() -> None:
        assert resolver.resolve(_ctx(call)).agency_code == CODE
        fresh_ca.revoke(issued.certificate)
        registry.use_crls(fresh_ca.crls())
        with pytest.raises(UnauthenticatedError) as failure:
            resolver.resolve(_ctx(call))
        assert failure.value.reason == "CERTIFICATE_REVOKED"

    _in_a_call(revoked_meanwhile)


def test_a_certificate_expiring_during_a_call_refuses_its_next_resolution(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """A delegated call rests on two certificates: the earlier end of the two counts."""
    clock = Clock()
    resolver = TlsCallerResolver(registry, clock=clock)
    gateway = fresh_ca.issue_role(Role.GATEWAY, "gateway")
    agency = fresh_ca.issue_agency(
        CODE,
        "Sở Y tế",
        not_before=clock.now - dt.timedelta(days=1),
        not_after=clock.now + dt.timedelta(hours=1),
    )
    direct = CountingContext(agency)
    delegated = CountingContext(gateway, on_behalf_metadata(CODE, _der(agency)))

    def expired_meanwhile() -> None:
        assert resolver.resolve(_ctx(direct)).agency_code == CODE
        assert resolver.resolve(_ctx(delegated)).agency_code == CODE
        clock.now += dt.timedelta(hours=2)
        for call in (direct, delegated):
            with pytest.raises(UnauthenticatedError) as failure:
                resolver.resolve(_ctx(call))
            assert failure.value.reason == "CERTIFICATE_EXPIRED"

    _in_a_call(expired_meanwhile)


def test_a_refusal_is_not_remembered(fresh_ca: DemoCA, registry: TrustRegistry) -> None:
    resolver = TlsCallerResolver(registry)
    monitor = CountingContext(fresh_ca.issue_role(Role.MONITOR, "m"))

    def twice() -> None:
        for _ in range(2):
            with pytest.raises(PermissionDeniedError, match="health"):
                resolver.resolve(_ctx(monitor))

    _in_a_call(twice)
    assert monitor.reads == 2


def test_development_headers_are_remembered_per_call_too() -> None:
    resolver = HeaderCallerResolver()
    agency = CountingContext(None, (("x-docaxis-agency", CODE),))
    other = CountingContext(None, (("x-docaxis-agency", OTHER),))
    admin = CountingContext(None, (("x-docaxis-role", "admin"),))

    def calls() -> list[Caller]:
        return [resolver.resolve(_ctx(call)) for call in (agency, other, admin, agency)]

    answers = _in_a_call(calls)
    assert [(a.role, a.agency_code) for a in answers] == [
        (CallerRole.AGENCY, CODE),
        (CallerRole.AGENCY, OTHER),
        (CallerRole.ADMIN, None),
        (CallerRole.AGENCY, CODE),
    ]
