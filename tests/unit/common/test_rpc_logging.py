"""One canonical log line per RPC, with its outcome and duration, from the server interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import grpc
import pytest
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from docaxis_client import errors
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, role_metadata
from services.directory.entrypoints.grpc_api import SERVICE_NAME, DirectoryServicer
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.fakes import FakeAgencies
from tests.service_logging import service_logging
from tests.tracing import span_exporter
from tests.waiting import eventually


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


# A bidirectional stream of the test's own (raw bytes, no codec), served through the same
# interceptors as every service: the shapes of ReceiveStream without its database and broker.
_STREAMS = "test.Streams"


async def _endless(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    """Answers without waiting for the client, as a Receive stream pushing a backlog does."""
    while True:
        yield b"answer"


async def _failing(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    """Fails once it has answered the first request (read first, so that the client's write
    never meets a call already over)."""
    async for _ in requests:
        yield b"answer"
        raise RuntimeError("a defect of the server")


def _add_streams(server: grpc.aio.Server) -> None:
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.stream_stream_rpc_method_handler(handler)
        for name, handler in (("Endless", _endless), ("Failing", _failing))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_STREAMS, handlers),))


async def _finished_line(
    method: str, end: Callable[[grpc.aio.StreamStreamCall[bytes, bytes]], Awaitable[None]]
) -> MutableMapping[str, Any]:
    """The rpc_finished line of a call of `method` that has read one answer and then `end`s."""
    server, port = build_server("127.0.0.1:0", [_add_streams], [], health.aio.HealthServicer())
    await server.start()
    try:
        with capture_logs() as logs:

            async def logged() -> bool:
                return any(entry["event"] == "rpc_finished" for entry in logs)

            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
                call: grpc.aio.StreamStreamCall[bytes, bytes] = opened.stream_stream(
                    f"/{_STREAMS}/{method}"
                )(timeout=10)
                await call.write(b"request")
                assert await call.read() == b"answer"
                await end(call)
                await eventually(logged, every=0.01)
    finally:
        await server.stop(None)
    [finished] = [entry for entry in logs if entry["event"] == "rpc_finished"]
    return finished


async def _cancel(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
    call.cancel()


async def _await_the_status(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
    """Until the server's status, which must be an error."""
    assert await call.code() == grpc.StatusCode.UNKNOWN


async def test_a_stream_the_client_cancels_logs_cancelled_without_a_traceback() -> None:
    """A DMS closing its Receive stream is no failure of the axis: grpcio abandons the handler's
    answers (it closes the generator at its yield: GeneratorExit), and the call logs CANCELLED
    at info level, with no traceback (it logged UNKNOWN at error level with one)."""
    finished = await _finished_line("Endless", _cancel)
    assert finished["outcome"] == "CANCELLED"
    assert finished["log_level"] == "info"
    assert "exc_info" not in finished


async def test_a_stream_the_server_fails_still_logs_an_error_with_its_traceback() -> None:
    """The other side: a handler that raises is a defect, logged as one."""
    finished = await _finished_line("Failing", _await_the_status)
    assert finished["outcome"] == "UNKNOWN"
    assert finished["log_level"] == "error"
    assert isinstance(finished["exc_info"], RuntimeError)


# Every rpc_finished line, as written: the call's outcome (its status code), duration and
# method, and the logging's own fields; the caller once the call resolved it; a refusal adds its
# ErrorInfo reason, a failure its traceback.
_LINE = {"event", "outcome", "duration_ms", "rpc", "level", "logger", "timestamp"}
_CALLER = {"caller_role", "caller_agency", "caller_delegated"}


async def test_the_written_line_keeps_every_field_and_each_call_has_its_span() -> None:
    """What reaches the log, not what the interceptor hands to structlog: a field lost on the
    way (a processor, the renderer, the writer) fails here."""
    spans = span_exporter()
    spans.clear()
    servicer = DirectoryServicer(DirectoryHandlers(FakeAgencies()), HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: pb_grpc.add_DirectoryServiceServicer_to_server(servicer, s), _add_streams],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    try:
        with service_logging() as lines:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
                stub = pb_grpc.DirectoryServiceStub(opened)
                admin = role_metadata(Role.ADMIN)
                with pytest.raises(grpc.aio.AioRpcError) as refused, errors.decoded_errors():
                    await stub.GetAgency(pb.GetAgencyRequest(code="000.00.99.H45"), metadata=admin)
                await stub.ListAgencies(pb.ListAgenciesRequest(), metadata=admin)
                failing: grpc.aio.StreamStreamCall[bytes, bytes] = opened.stream_stream(
                    f"/{_STREAMS}/Failing"
                )(timeout=10)
                await failing.write(b"request")
                assert await failing.read() == b"answer"
                await _await_the_status(failing)

                async def finished() -> list[dict[str, Any]]:
                    return [line for line in lines() if line["event"] == "rpc_finished"]

                found = await eventually(finished, lambda found: len(found) == 3)
    finally:
        await server.stop(None)
    not_found, listed, failed = found
    assert isinstance(refused.value, errors.DocaxisError)
    assert refused.value.reason
    assert set(not_found) == _LINE | _CALLER | {"reason"}
    assert (not_found["outcome"], not_found["reason"]) == ("NOT_FOUND", refused.value.reason)
    assert set(listed) == _LINE | _CALLER
    assert set(failed) == _LINE | {"exception"}
    assert "RuntimeError: a defect of the server" in failed["exception"]
    assert [line["level"] for line in found] == ["info", "info", "error"]
    assert (listed["outcome"], failed["outcome"]) == ("OK", "UNKNOWN")
    assert listed["rpc"] == f"/{SERVICE_NAME}/ListAgencies"
    assert (listed["caller_role"], listed["caller_agency"], listed["caller_delegated"]) == (
        "admin",
        "",
        False,
    )
    assert listed["logger"] == "services.common.grpc_calls"
    assert listed["timestamp"].endswith("Z")
    assert listed["duration_ms"] >= 0
    server_spans = {
        span.name for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER
    }
    assert {line["rpc"] for line in found} <= server_spans
