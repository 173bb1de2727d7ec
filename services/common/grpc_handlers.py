"""Rebuilding a gRPC method handler around an interceptor's own code, whatever its shape."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

# The stubs type handlers as synchronous; on an aio server they are coroutines (unary
# responses) and async generators (streamed responses).
Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def rewrapped(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary: Callable[[Unary], Unary],
    streaming: Callable[[Streaming], Streaming],
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` of the same shape and codec, its behaviour passed through `unary` when it
    answers once (unary-unary, stream-unary) or through `streaming` when it streams its
    answers (unary-stream, stream-stream) from an async generator. A streaming handler that
    writes its answers with `context.write` and returns nothing (grpc_health's Watch does) is a
    coroutine, not a generator: it goes through `unary`, and the server still streams what it
    writes (grpcio awaits a coroutine handler of a streaming method)."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    inner: Any
    if handler.unary_unary is not None:
        inner = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(unary(inner), **codec)
    if handler.stream_unary is not None:
        inner = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(unary(inner), **codec)
    if handler.unary_stream is not None:
        inner = handler.unary_stream
        wrapped = unary(inner) if inspect.iscoroutinefunction(inner) else streaming(inner)
        return grpc.unary_stream_rpc_method_handler(wrapped, **codec)
    inner = handler.stream_stream
    wrapped = unary(inner) if inspect.iscoroutinefunction(inner) else streaming(inner)
    return grpc.stream_stream_rpc_method_handler(wrapped, **codec)


# How long a refused client stream is read (and dropped) at most before the refusal is sent.
DRAIN_TIMEOUT_S = 120.0


async def drain_requests(requests: AsyncIterator[object]) -> None:
    """Reads (and drops) what the client is still sending before refusing a client stream
    (an upload).

    grpcio's asyncio client reports INTERNAL instead of the server's status when the server
    ends a client stream before the client has finished writing (grpc/grpc#36066), so a refusal
    is sent only once the client half-closes, or after a bounded wait.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in requests:
                pass
