"""One canonical log line per RPC, with its outcome and duration, from the server interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, role_metadata
from services.directory.entrypoints.grpc_api import SERVICE_NAME, DirectoryServicer
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.fakes import FakeAgencies


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    servicer = DirectoryServicer(DirectoryHandlers(FakeAgencies()), HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: pb_grpc.add_DirectoryServiceServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


async def test_each_rpc_logs_one_line_with_its_status_and_duration(
    channel: grpc.aio.Channel,
) -> None:
    """A refused call logs its status code, a successful one OK; health polls log nothing."""
    stub = pb_grpc.DirectoryServiceStub(channel)
    admin = role_metadata(Role.ADMIN)
    with capture_logs() as logs:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetAgency(pb.GetAgencyRequest(code="000.00.99.H45"), metadata=admin)
        await stub.ListAgencies(pb.ListAgenciesRequest(), metadata=admin)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finished = [entry for entry in logs if entry["event"] == "rpc_finished"]
    assert [entry["outcome"] for entry in finished] == ["NOT_FOUND", "OK"]
    assert all(entry["duration_ms"] >= 0 for entry in finished)


async def test_health_watch_streams_each_change_through_the_interceptors() -> None:
    """grpc.health.v1 Watch (a handler that writes its answers instead of yielding them) works
    through every interceptor of the server: it answers the current status, then each change."""
    servicer = health.aio.HealthServicer()
    server, port = build_server("127.0.0.1:0", [], [], servicer)
    await server.start()
    try:
        await servicer.set("docaxis", health_pb2.HealthCheckResponse.SERVING)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
            call = health_pb2_grpc.HealthStub(opened).Watch(
                health_pb2.HealthCheckRequest(service="docaxis"), timeout=10
            )
            first = await call.read()
            await servicer.set("docaxis", health_pb2.HealthCheckResponse.NOT_SERVING)
            second = await call.read()
            call.cancel()
    finally:
        await server.stop(None)
    assert isinstance(first, health_pb2.HealthCheckResponse)
    assert isinstance(second, health_pb2.HealthCheckResponse)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
