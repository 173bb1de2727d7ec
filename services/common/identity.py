"""Who is calling: the agency (or operator role) behind a gRPC request.

Production resolves the caller from the mutual-TLS client certificate. Until a deployment has
certificates, `HeaderCallerResolver` trusts an `x-docaxis-agency` header: it exists for local
development and tests only, and the services refuse to start with it unless the explicit
development flag is set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from services.common.errors import PermissionDeniedError, UnauthenticatedError

AGENCY_HEADER = "x-docaxis-agency"
ROLE_HEADER = "x-docaxis-role"


class Role(enum.StrEnum):
    AGENCY = "agency"
    ADMIN = "admin"
    MONITOR = "monitor"
    # docaxis's own services calling each other (e.g. the exchange asking the directory).
    HUB = "hub"


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    # Set for Role.AGENCY: the only agency this caller may act as.
    agency_code: str | None = None

    def require_agency(self) -> str:
        """The caller's agency code; operators (admin, monitor) do not act as agencies."""
        if self.role is not Role.AGENCY or self.agency_code is None:
            raise PermissionDeniedError(
                "this operation is for agencies", meta={"role": self.role.value}
            )
        return self.agency_code

    def require_admin(self) -> None:
        if self.role is not Role.ADMIN:
            raise PermissionDeniedError(
                "this operation is for administrators", meta={"role": self.role.value}
            )


class CallerResolver(Protocol):
    def resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The authenticated caller, or UnauthenticatedError."""
        ...


class HeaderCallerResolver:
    """Development only: believes the caller's own headers."""

    def resolve(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        headers = {
            key: value
            for key, value in ctx.invocation_metadata() or ()
            if isinstance(value, str)  # binary (-bin) headers carry no identity
        }
        role_raw = headers.get(ROLE_HEADER, Role.AGENCY.value)
        try:
            role = Role(role_raw)
        except ValueError:
            raise UnauthenticatedError(f"unknown role {role_raw!r}") from None
        if role is Role.AGENCY:
            agency = headers.get(AGENCY_HEADER)
            if not agency:
                raise UnauthenticatedError(
                    f"no caller identity: the {AGENCY_HEADER} header is missing"
                )
            return Caller(Role.AGENCY, agency)
        return Caller(role)


def agency_metadata(agency_code: str) -> tuple[tuple[str, str], ...]:
    """Call metadata a development client sends to act as `agency_code`."""
    return ((AGENCY_HEADER, agency_code),)


def role_metadata(role: Role) -> tuple[tuple[str, str], ...]:
    return ((ROLE_HEADER, role.value),)
