"""Errors as `application/problem+json` (RFC 9457) with docaxis's stable reasons.

A failed gRPC call is decoded from its `grpc-status-details-bin` trailer (google.rpc.Status with
ErrorInfo, BadRequest, RetryInfo); the HTTP status follows the gRPC code.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_DEFAULT_REASON = {
    400: "VALIDATION",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "DUPLICATE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
_DETAILS_KEY = "grpc-status-details-bin"


class Problem(Exception):
    """An HTTP error answer with a stable reason."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        metadata: dict[str, str] | None = None,
        violations: list[dict[str, str]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.metadata = metadata or {}
        self.violations = violations or []
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:docaxis:problem:{self.reason.lower()}",
            "title": self.reason,
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
            "retryable": self.status in (429, 503, 504) or self.reason == "UNAVAILABLE",
        }
        if self.metadata:
            body["metadata"] = self.metadata
        if self.violations:
            body["violations"] = self.violations
        if self.retry_after_s is not None:
            body["retry_after_s"] = self.retry_after_s
        return body

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after_s)))
        return JSONResponse(
            self.body(), status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
        )


def problem_of(exc: grpc.aio.AioRpcError) -> Problem:
    """The Problem a failed gRPC call becomes; unknown codes are a bad gateway (502)."""
    code = exc.code()
    status = HTTP_STATUS.get(code, 502)
    parsed = status_pb2.Status()
    for key, value in exc.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            parsed.ParseFromString(value)
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[dict[str, str]] = []
    retry_after: float | None = None
    for detail in parsed.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [
                {"field": v.field, "description": v.description} for v in bad.field_violations
            ]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    if not reason:
        reason = _DEFAULT_REASON.get(status, "UPSTREAM_ERROR")
    # An unexpected failure's details are internal (exception texts): never passed on.
    detail = (exc.details() or code.name) if status != 502 else "the services failed unexpectedly"
    return Problem(
        status,
        reason,
        detail,
        metadata=metadata,
        violations=violations,
        retry_after_s=retry_after,
    )
