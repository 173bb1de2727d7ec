"""A call failing because Postgres or RabbitMQ cannot be reached answers UNAVAILABLE with a
retry delay (a DMS retries it); any other failure stays UNKNOWN (a bug)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import grpc
import pytest
from grpc_health.v1 import health

from docaxis_client.errors import DocaxisError
from services.common.grpc_server import build_server

FAILURES: dict[str, BaseException] = {
    "database": ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    "broker": aio_pika.exceptions.AMQPConnectionError("Server connection reset"),
    "bug": ValueError("a bug"),
}


async def _fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise FAILURES[request.decode()]


async def _fail_streaming(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise FAILURES[request.decode()]


def _register(server: grpc.aio.Server) -> None:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Call": grpc.unary_unary_rpc_method_handler(_fail),
        "Stream": grpc.unary_stream_rpc_method_handler(_fail_streaming),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Unreachable", handlers),)
    )


def _call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary("/test.Unreachable/Call")


def _stream(channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream("/test.Unreachable/Stream")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server, port = build_server("127.0.0.1:0", [_register], [], health.aio.HealthServicer())
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


@pytest.mark.parametrize("backend", ["database", "broker"])
async def test_an_unreachable_backend_is_unavailable_and_retryable(
    channel: grpc.aio.Channel, backend: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await _call(channel)(backend.encode())
    stream = _stream(channel)(backend.encode())
    assert await stream.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        await stream.read()
    for failed in (unary.value, streamed.value):
        error = DocaxisError.of(failed)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.reason == "UNAVAILABLE"
        assert error.retryable
        assert error.retry_delay_s == 1.0


async def test_any_other_failure_stays_unknown(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _call(channel)(b"bug")
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
