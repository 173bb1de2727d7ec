"""The domain error categories every service raises, each with a stable machine-readable reason.

The transports map categories, never individual errors: gRPC status codes in grpc_errors.py, and
on AMQP a domain error is a final answer while anything else is a bug.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence

# Re-exported: the client decodes refusals into the same type the services raise them with.
from docaxis_client.violations import FieldViolation as FieldViolation


def check_uuid(problems: list[FieldViolation], field: str, raw: str) -> None:
    """Adds a problem to `problems` unless `raw` is a UUID (every bad field reported at once)."""
    try:
        uuid.UUID(raw)
    except ValueError:
        problems.append(FieldViolation(field, "must be a UUID"))


def require_uuid(field: str, raw: str) -> None:
    """ValidationError unless `raw` is a UUID."""
    problems: list[FieldViolation] = []
    check_uuid(problems, field, raw)
    if problems:
        raise ValidationError(f"invalid {field.replace('_', ' ')}", problems)


def parse_iso_date(
    problems: list[FieldViolation], field: str, raw: str, *, required: bool = False
) -> dt.date | None:
    """A "YYYY-MM-DD" wire date, or None with the problem (if any) added to `problems`, so
    that a request's every malformed field is reported at once. An empty optional date is None."""
    if not raw:
        if required:
            problems.append(FieldViolation(field, "required (YYYY-MM-DD)"))
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        problems.append(FieldViolation(field, f"{raw!r} is not a YYYY-MM-DD date"))
        return None


class DomainError(Exception):
    """Base of every expected, typed refusal. `reason` is from the ErrorReason vocabulary."""

    reason: str = "UNSPECIFIED"
    retryable: bool = False
    # When set, the refusal carries a google.rpc RetryInfo (REST: Retry-After) with this delay.
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.meta: dict[str, str] = dict(meta or {})


class ValidationError(DomainError):
    reason = "VALIDATION"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        reason: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, meta=meta)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class NotFoundError(DomainError):
    reason = "NOT_FOUND"


class ConflictError(DomainError):
    reason = "DUPLICATE"


class RejectedError(DomainError):
    """The request is well-formed but cannot be accepted in the current state of the world."""


class QuotaExceededError(DomainError):
    """The caller has used up an allowance; it may try again once it has freed some."""


class LimitExceededError(QuotaExceededError):
    """The caller went past an abuse limit (services/common/limits.py): RATE_LIMITED or
    CONCURRENCY_LIMITED, with `limit` naming which in the metadata. Retryable: the same call is
    allowed again after `retry_after_s`."""

    retryable = True

    def __init__(self, message: str, *, reason: str, limit: str, retry_after_s: float) -> None:
        super().__init__(message, reason=reason, meta={"limit": limit})
        self.limit = limit
        self.retry_after_s = retry_after_s


class UnauthenticatedError(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDeniedError(DomainError):
    reason = "PERMISSION_DENIED"


class UnavailableError(DomainError):
    reason = "UNAVAILABLE"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float = 1.0,
        reason: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, meta=meta)
        self.retry_after_s: float = retry_after_s
