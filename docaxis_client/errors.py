"""docaxis's refusals as typed exceptions, decoded from the google.rpc details of the status.

Every refusal carries an ErrorInfo (domain ``docaxis``, a stable ``reason`` from
``common.proto``'s ErrorReason, ``retryable`` in its metadata); validation adds a BadRequest
naming every bad field at once, and UNAVAILABLE and the abuse limits (RESOURCE_EXHAUSTED with
RATE_LIMITED or CONCURRENCY_LIMITED) a RetryInfo saying when to try again.
``AgencyClient`` raises them as ``DocaxisError`` subclasses, one per status code::

    try:
        await client.submit(consignment_id, header, attachments)
    except InvalidArgumentError as refused:
        for violation in refused.violations:
            print(violation.field, violation.description)
    except DocaxisError as refused:
        if refused.retryable:
            await asyncio.sleep(refused.retry_delay_s or 1.0)

Each is still a ``grpc.aio.AioRpcError``, so code written against the bare gRPC error keeps
working. The google.rpc modules are partly untyped; they are confined to this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from docaxis.common.v1 import common_pb2
from google.rpc import error_details_pb2, status_pb2

from docaxis_client.violations import FieldViolation

__all__ = [
    "AlreadyExistsError",
    "DocaxisError",
    "ErrorDetails",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "decoded_errors",
    "error_details",
]

# ErrorInfo.domain of every docaxis refusal.
ERROR_DOMAIN = "docaxis"
_DETAILS_KEY = "grpc-status-details-bin"
# Worth another attempt even when the server could not say so (a broken link, a restart, a
# deadline): the call never got an answer.
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """What a failed call says: status code and message, and the decoded rich details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later: as the server says, or for a call that
        never got an answer."""
        said = self.metadata.get("retryable")
        return said == "true" if said is not None else self.code in _TRANSIENT


def error_details(exc: grpc.aio.AioRpcError) -> ErrorDetails:
    """Decodes ErrorInfo, BadRequest and RetryInfo from a failed call's trailing metadata."""
    status = status_pb2.Status()
    for key, value in exc.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status.ParseFromString(value)
    return _decoded(status, exc.code(), exc.details() or "")


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def item_error(serialized: bytes) -> ErrorDetails | None:
    """Why one item of a batch was refused (the ``error`` of a SubmitResult or an
    AcknowledgeResult: a serialized google.rpc.Status), or None when it was not."""
    if not serialized:
        return None
    status = status_pb2.Status()
    status.ParseFromString(serialized)
    return _decoded(status, _CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message)


def _decoded(status: status_pb2.Status, code: grpc.StatusCode, message: str) -> ErrorDetails:
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    return ErrorDetails(code, message, reason, metadata, tuple(violations), retry_after)


class DocaxisError(grpc.aio.AioRpcError):
    """A call docaxis refused (or that never got an answer), with its reasons decoded."""

    def __init__(self, call_error: grpc.aio.AioRpcError) -> None:
        super().__init__(
            call_error.code(),
            call_error.initial_metadata(),
            call_error.trailing_metadata(),
            call_error.details(),
            call_error.debug_error_string(),
        )
        self.error = error_details(call_error)

    @classmethod
    def of(cls, call_error: grpc.aio.AioRpcError) -> DocaxisError:
        """The typed error for a failed call: the subclass of its status code."""
        if isinstance(call_error, DocaxisError):
            return call_error
        return _BY_CODE.get(call_error.code(), DocaxisError)(call_error)

    @property
    def reason(self) -> str:
        """ErrorInfo's stable reason (e.g. ``VALIDATION``), or "" when the server gave none."""
        return self.error.reason

    @property
    def reason_code(self) -> common_pb2.ErrorReason.ValueType:
        """The reason as the ErrorReason enum (ERROR_REASON_UNSPECIFIED when none or unknown)."""
        try:
            return common_pb2.ErrorReason.Value(f"ERROR_REASON_{self.error.reason}")
        except ValueError:  # none given, or a reason newer than this client
            return common_pb2.ERROR_REASON_UNSPECIFIED

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        """Every bad field of the request (BadRequest), in the server's order."""
        return self.error.violations

    @property
    def metadata(self) -> dict[str, str]:
        """ErrorInfo's metadata: what the reason refers to (e.g. ``document_uuid``)."""
        return self.error.metadata

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later (send the same idempotency keys)."""
        return self.error.retryable

    @property
    def retry_delay_s(self) -> float | None:
        """How long RetryInfo asks to wait before retrying, when it says."""
        return self.error.retry_after_s

    def __str__(self) -> str:
        reason = f" {self.error.reason}" if self.error.reason else ""
        return f"{self.error.code.name}{reason}: {self.error.message}"


class InvalidArgumentError(DocaxisError):
    """INVALID_ARGUMENT: the request is malformed; ``violations`` names every bad field."""


class NotFoundError(DocaxisError):
    """NOT_FOUND: no such document, delivery, notice or upload visible to this agency."""


class AlreadyExistsError(DocaxisError):
    """ALREADY_EXISTS: the same document or consignment was accepted with other content."""


class FailedPreconditionError(DocaxisError):
    """FAILED_PRECONDITION: refused as it stands (a bad signature, an invalid addressee...)."""


class UnauthenticatedError(DocaxisError):
    """UNAUTHENTICATED: the caller's certificate was missing or not accepted."""


class PermissionDeniedError(DocaxisError):
    """PERMISSION_DENIED: the caller may not do this (another agency's mail, a wrong role)."""


class ResourceExhaustedError(DocaxisError):
    """RESOURCE_EXHAUSTED: past a limit. RATE_LIMITED (too many calls) and CONCURRENCY_LIMITED
    (too many Receive streams open) are retryable after ``retry_delay_s``; UPLOAD_QUOTA_EXCEEDED
    is not, until the agency's unused uploads are used or expire. ``metadata["limit"]`` names
    the limit."""


class UnavailableError(DocaxisError):
    """UNAVAILABLE: docaxis or one of its dependencies is down; retry after ``retry_delay_s``."""


_BY_CODE: dict[grpc.StatusCode, type[DocaxisError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


@contextmanager
def decoded_errors() -> Iterator[None]:
    """Re-raises a bare gRPC failure as its typed DocaxisError."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        if isinstance(exc, DocaxisError):
            raise
        raise DocaxisError.of(exc) from exc
