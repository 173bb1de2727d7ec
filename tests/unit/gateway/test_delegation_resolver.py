"""Delegation in the caller resolvers: the on-behalf header counts from the gateway role only."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from docaxis_client.delegation import ADMINISTRATOR, ON_BEHALF_HEADER, on_behalf_metadata
from docaxis_client.trust import Role
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from services.common.errors import PermissionDeniedError, UnauthenticatedError
from services.common.identity import ROLE_HEADER, HeaderCallerResolver, TlsCallerResolver
from services.common.identity import Role as CallerRole
from services.common.trust import TrustRegistry
from tests.tls_peer import peer_context as _ctx

CODE = "000.00.13.H45"
OTHER = "000.00.00.G22"


def _der(issued: IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def fresh_ca() -> DemoCA:
    return DemoCA.create()


@pytest.fixture
def resolver(fresh_ca: DemoCA) -> TlsCallerResolver:
    assert fresh_ca.intermediate is not None
    return TlsCallerResolver(
        TrustRegistry([fresh_ca.root_certificate], [fresh_ca.intermediate.certificate])
    )


def test_the_gateway_becomes_the_agency_it_names(
    fresh_ca: DemoCA, resolver: TlsCallerResolver
) -> None:
    gateway = fresh_ca.issue_role(Role.GATEWAY, "gateway")
    agency, vpcp = fresh_ca.issue_agency(CODE, "Sở Y tế"), fresh_ca.issue_agency(OTHER, "VPCP")
    caller = resolver.resolve(_ctx(gateway, *on_behalf_metadata(CODE, _der(agency))))
    assert (caller.role, caller.agency_code, caller.delegated) == (CallerRole.AGENCY, CODE, True)
    assert caller.serial == f"{gateway.certificate.serial_number:x}"
    # The validation cache never carries one call's agency into the next.
    other = resolver.resolve(_ctx(gateway, *on_behalf_metadata(OTHER, _der(vpcp))))
    assert other.agency_code == OTHER
    with pytest.raises(PermissionDeniedError, match="forwarded certificate"):
        resolver.resolve(_ctx(gateway, *on_behalf_metadata(OTHER, _der(agency))))
    with pytest.raises(UnauthenticatedError, match="forward the agency's certificate"):
        resolver.resolve(_ctx(gateway, (ON_BEHALF_HEADER, CODE)))
    with pytest.raises(PermissionDeniedError, match="missing"):
        resolver.resolve(_ctx(gateway))
    with pytest.raises(PermissionDeniedError, match="not an agency code"):
        resolver.resolve(_ctx(gateway, (ON_BEHALF_HEADER, "x' OR 1=1")))


def test_the_gateway_acts_for_an_administrator_named_by_the_forwarded_certificate(
    fresh_ca: DemoCA, resolver: TlsCallerResolver
) -> None:
    gateway = fresh_ca.issue_role(Role.GATEWAY, "gateway")
    admin = fresh_ca.issue_role(Role.ADMIN, "quản trị viên")
    caller = resolver.resolve(_ctx(gateway, *on_behalf_metadata(ADMINISTRATOR, _der(admin))))
    assert (caller.role, caller.agency_code, caller.delegated) == (CallerRole.ADMIN, None, True)
    # The audit trail names the administrator, not the gateway.
    assert caller.serial == f"{admin.certificate.serial_number:x}"
    assert "quản trị viên" in caller.subject
    # An agency's (or a monitor's) certificate does not make the gateway an administrator.
    for other in (
        fresh_ca.issue_agency(CODE, "Sở Y tế"),
        fresh_ca.issue_role(Role.MONITOR, "giám sát"),
    ):
        with pytest.raises(PermissionDeniedError, match="not an administrator's"):
            resolver.resolve(_ctx(gateway, *on_behalf_metadata(ADMINISTRATOR, _der(other))))
    with pytest.raises(UnauthenticatedError, match="forward the agency's certificate"):
        resolver.resolve(_ctx(gateway, (ON_BEHALF_HEADER, ADMINISTRATOR)))


@pytest.mark.parametrize("role", [Role.ADMIN, Role.HUB, Role.MONITOR])
def test_operators_may_not_delegate(
    fresh_ca: DemoCA, resolver: TlsCallerResolver, role: Role
) -> None:
    # The header is refused as such (a monitor would be refused anyway, but later).
    with pytest.raises(PermissionDeniedError, match="only the gateway"):
        resolver.resolve(_ctx(fresh_ca.issue_role(role, "x"), (ON_BEHALF_HEADER, CODE)))


def test_an_agency_may_not_delegate(fresh_ca: DemoCA, resolver: TlsCallerResolver) -> None:
    agency = fresh_ca.issue_agency(CODE, "Sở Y tế")
    assert resolver.resolve(_ctx(agency)).agency_code == CODE
    with pytest.raises(PermissionDeniedError, match="only the gateway"):
        resolver.resolve(_ctx(agency, (ON_BEHALF_HEADER, CODE)))


def test_development_mode_delegation() -> None:
    resolver = HeaderCallerResolver()
    caller = resolver.resolve(_ctx(None, (ROLE_HEADER, "gateway"), (ON_BEHALF_HEADER, CODE)))
    assert (caller.role, caller.agency_code, caller.delegated) == (CallerRole.AGENCY, CODE, True)
    with pytest.raises(PermissionDeniedError, match="only the gateway"):
        resolver.resolve(_ctx(None, ("x-docaxis-agency", CODE), (ON_BEHALF_HEADER, CODE)))


def test_a_delegated_administrator_may_not_change_the_directory_or_the_trust_store(
    fresh_ca: DemoCA, resolver: TlsCallerResolver
) -> None:
    gateway = fresh_ca.issue_role(Role.GATEWAY, "gateway")
    admin = fresh_ca.issue_role(Role.ADMIN, "quản trị viên")
    delegated = resolver.resolve(_ctx(gateway, *on_behalf_metadata(ADMINISTRATOR, _der(admin))))
    delegated.require_admin()  # reading, resending: the console's work
    with pytest.raises(PermissionDeniedError, match="own client certificate"):
        delegated.require_admin(in_person=True)
    resolver.resolve(_ctx(admin)).require_admin(in_person=True)
