"""Domain errors as gRPC statuses with google.rpc rich details, on both sides of the wire.

The google.rpc modules are partly untyped; they are confined to this module.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

# Decoding lives with the client, which integrators use; re-exported for the services' tests
# and the CLI, so that both sides read refusals one way.
from docaxis_client.errors import ERROR_DOMAIN as ERROR_DOMAIN
from docaxis_client.errors import ErrorDetails as ErrorDetails
from docaxis_client.errors import error_details as error_details
from services.common.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RejectedError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)

log = structlog.get_logger(__name__)

# Refusals that say something about who is calling or what they signed: each is logged as a
# `security_refused` event with the caller's identity (bound by the caller resolver), the RPC and
# the reason, and nothing of the document or of any secret.
SECURITY_REASONS = frozenset(
    {
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "SENDER_MISMATCH",
        "NOT_REGISTERED",
        "SIGNATURE_INVALID",
        "SIGNATURE_MISSING",
        "SIGNATURE_ALGORITHM_WEAK",
        "SIGNER_MISMATCH",
        "SIGNING_TIME_INVALID",
        "UNSUPPORTED_ALGORITHM",
        "CERTIFICATE_EXPIRED",
        "CERTIFICATE_NOT_YET_VALID",
        "CERTIFICATE_REVOKED",
        "CERTIFICATE_USAGE",
        "CERTIFICATE_UNBOUND",
        "TIMESTAMP_INVALID",
        "UNTRUSTED_ISSUER",
        "CRL_INVALID",
    }
)

# The one table from error category to gRPC status code (most specific class first).
_STATUS_BY_CATEGORY: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (RejectedError, grpc.StatusCode.FAILED_PRECONDITION),
    (QuotaExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(exc: DomainError) -> grpc.StatusCode:
    for category, code in _STATUS_BY_CATEGORY:
        if isinstance(exc, category):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def status_details(exc: DomainError) -> bytes:
    """The serialized google.rpc.Status (with ErrorInfo, BadRequest, RetryInfo details) of one
    item refused inside a batch, as a failed call's trailers would carry it; logged like a
    refused call."""
    _log_refusal(exc)
    serialized: bytes = _status(exc).SerializeToString()
    return serialized


def _log_refusal(exc: DomainError) -> None:
    if exc.reason in SECURITY_REASONS or isinstance(
        exc, UnauthenticatedError | PermissionDeniedError
    ):
        log.warning("security_refused", reason=exc.reason, status=status_for(exc).name)


def rich_status(exc: DomainError) -> Any:
    """The grpc.Status (code, message, trailing metadata with grpc-status-details-bin)."""
    return rpc_status.to_status(_status(exc))


def _status(exc: DomainError) -> status_pb2.Status:
    code = status_for(exc)
    meta = dict(exc.meta)
    meta["retryable"] = "true" if exc.retryable else "false"
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=meta))
    details.append(info)
    if isinstance(exc, ValidationError) and exc.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    if exc.retry_after_s is not None:
        delay = duration_pb2.Duration()
        # Rounded up: "retry after 0 ms" would invite the very retry loop a limit refuses.
        delay.FromMilliseconds(max(1, math.ceil(exc.retry_after_s * 1000)))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=code.value[0], message=str(exc), details=details)


# The ErrorInfo reason the current RPC was refused with. Every refusal goes through
# abort_with_domain_error, so the server interceptor reads it here once the call has ended (to
# log and count it) instead of decoding its own trailers. Each RPC runs in its own task, hence
# its own copy of the context: the value never leaks to another call.
_refusal: ContextVar[str | None] = ContextVar("docaxis_refusal", default=None)


def refusal_reason() -> str | None:
    """The reason of the refusal this RPC ended with, or None."""
    return _refusal.get()


async def abort_with_domain_error(
    ctx: grpc.aio.ServicerContext[Any, Any], exc: DomainError
) -> NoReturn:
    _refusal.set(exc.reason)
    rich = rich_status(exc)
    await ctx.abort(rich.code, rich.details, rich.trailing_metadata)
    raise AssertionError("unreachable: ServicerContext.abort raises")  # pragma: no cover


@asynccontextmanager
async def domain_errors(ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Turns DomainError into a rich gRPC status. Anything else is a bug and surfaces as UNKNOWN."""
    try:
        yield
    except DomainError as exc:
        _log_refusal(exc)
        await abort_with_domain_error(ctx, exc)
