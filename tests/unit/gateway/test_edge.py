"""The gateway's edge pieces without services: settings, problem decoding, probes, OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway.axis import ERROR_CODES, fail
from gateway.config import GatewayConfigError, GatewaySettings
from gateway.metrics import GatewayMetrics, probes_app
from gateway.problems import Problem, problem_of
from gateway.rest.openapi import openapi_document, render

REQUIRED = {
    f"DOCAXIS_GATEWAY_{name}": f"/etc/{name.lower()}"
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "CLIENT_CERT_FILE")
} | {"DOCAXIS_GATEWAY_CLIENT_KEY_FILE": "/etc/key"}


def test_settings_defaults_and_refusals() -> None:
    settings = GatewaySettings.from_env(REQUIRED)
    assert settings.listen == ("127.0.0.1", 8443)
    assert settings.metrics_listen == ("127.0.0.1", 9464)
    assert settings.grpc_target == "127.0.0.1:50051"
    assert "key" not in repr(settings).replace("key_file", "")  # no secrets in reprs
    with pytest.raises(GatewayConfigError, match="DOCAXIS_GATEWAY_CLIENT_KEY_FILE"):
        GatewaySettings.from_env({k: v for k, v in REQUIRED.items() if "CLIENT_KEY" not in k})
    with pytest.raises(GatewayConfigError, match="host:port"):
        GatewaySettings.from_env({**REQUIRED, "DOCAXIS_GATEWAY_ADDRESS": "8443"})


class FailedCall(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str, status: status_pb2.Status) -> None:
        super().__init__(
            code,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString())),
            details,
        )


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def test_a_grpc_error_becomes_a_problem_with_its_reason_and_details() -> None:
    status = status_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message="invalid submission",
        details=[
            _packed(error_details_pb2.ErrorInfo(reason="VALIDATION", domain="docaxis")),
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="header.subject", description="required"
                        )
                    ]
                )
            ),
        ],
    )
    problem = problem_of(FailedCall(grpc.StatusCode.INVALID_ARGUMENT, "invalid submission", status))
    assert (problem.status, problem.reason) == (400, "VALIDATION")
    assert problem.violations == [{"field": "header.subject", "description": "required"}]
    body = problem.body()
    assert body["type"] == "urn:docaxis:problem:validation"
    assert body["retryable"] is False

    busy = status_pb2.Status(
        code=grpc.StatusCode.UNAVAILABLE.value[0],
        details=[
            _packed(error_details_pb2.ErrorInfo(reason="UNAVAILABLE")),
            _packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))),
        ],
    )
    problem = problem_of(FailedCall(grpc.StatusCode.UNAVAILABLE, "broker down", busy))
    assert (problem.status, problem.retry_after_s) == (503, 3.0)
    assert problem.response().headers["retry-after"] == "3"
    # No details at all (a proxy, a crash): a reason from the code, 502 for the unexpected.
    bare = problem_of(FailedCall(grpc.StatusCode.NOT_FOUND, "", status_pb2.Status()))
    assert (bare.status, bare.reason) == (404, "NOT_FOUND")
    unknown = problem_of(FailedCall(grpc.StatusCode.UNKNOWN, "bug", status_pb2.Status()))
    assert unknown.status == 502


def test_the_axis_envelope_maps_reasons_to_provincial_codes() -> None:
    response = fail(Problem(422, "INVALID_ADDRESSEE", "closed"))
    body = json.loads(bytes(response.body))
    assert response.status_code == 200
    assert body == {
        "status": "FAIL",
        "ErrorCode": "18",
        "ErrorDesc": "closed",
        "reason": "INVALID_ADDRESSEE",
        "data": None,
    }
    assert fail(Problem(401, "UNAUTHENTICATED", "x"), http_status=True).status_code == 401
    assert ERROR_CODES["NOT_REGISTERED"] == "19"


@pytest.mark.parametrize("ready", [True, False])
async def test_probes(ready: bool) -> None:
    async def check() -> bool:
        return ready

    async def services_down(timeout_s: float) -> str | None:
        return None

    metrics = GatewayMetrics()
    metrics.submissions.labels("rest").inc()
    transport = httpx.ASGITransport(app=probes_app(metrics, check, services_down))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == (200 if ready else 503)
        metrics_text = (await client.get("/metrics")).text
    assert 'docaxis_gateway_submissions_total{api="rest"} 1.0' in metrics_text


def test_the_checked_in_openapi_document_is_current() -> None:
    checked_in = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
    assert checked_in.read_text(encoding="utf-8") == render()
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    for methods in document["paths"].values():
        for operation in methods.values():
            assert "application/problem+json" in operation["responses"]["400"]["content"]
