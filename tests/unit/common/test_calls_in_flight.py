"""The cap on an agency's calls in flight, through a real gRPC server and the limits
interceptor: calls that do not end (a stalled upload, a slow database) fill only their own
agency's slots; the call past the cap is refused CONCURRENCY_LIMITED, another agency is served,
and a slot frees when a call ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health

from docaxis_client import errors
from services.common.grpc_limits import AgencyCallLimits
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, agency_metadata
from services.common.limits import AgencyLimits, LimitSettings
from tests.waiting import eventually

SERVICE = "docaxis.test.v1.Slow"
CALL = f"/{SERVICE}/Call"
MAX_CALLS = 2
STALLER, POLITE = "000.00.01.H45", "000.00.02.H45"


class Slow:
    """Call: answers at once, or (request b"wait") once `go_on` is set."""

    def __init__(self) -> None:
        self.go_on = asyncio.Event()

    async def call(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if request == b"wait":
            await self.go_on.wait()
        return b"done"

    def add(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(self.call)}
                ),
            )
        )


@pytest.fixture
async def slow() -> AsyncIterator[tuple[Slow, AgencyLimits, grpc.aio.Channel]]:
    handler = Slow()
    limits = AgencyLimits(LimitSettings(max_calls_in_flight=MAX_CALLS))
    callers = HeaderCallerResolver()
    server, port = build_server(
        "127.0.0.1:0",
        [handler.add],
        [SERVICE],
        health.aio.HealthServicer(),
        agency_limits=AgencyCallLimits(
            limits, lambda context: callers.resolve(context).agency_code
        ),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield handler, limits, channel
    await server.stop(None)


def call(channel: grpc.aio.Channel, agency: str, request: bytes) -> Awaitable[bytes]:
    method = channel.unary_unary(CALL, request_serializer=bytes, response_deserializer=bytes)
    return method(request, metadata=agency_metadata(agency), timeout=30)


async def test_an_agency_past_its_calls_in_flight_is_refused_and_another_is_served(
    slow: tuple[Slow, AgencyLimits, grpc.aio.Channel],
) -> None:
    handler, limits, channel = slow
    stalled = [asyncio.ensure_future(call(channel, STALLER, b"wait")) for _ in range(MAX_CALLS)]

    async def held() -> int:
        return limits.calls.held(STALLER)

    await eventually(held, lambda count: count == MAX_CALLS)
    with pytest.raises(grpc.aio.AioRpcError) as failure, errors.decoded_errors():
        await call(channel, STALLER, b"now")
    refused = failure.value
    assert isinstance(refused, errors.ResourceExhaustedError)
    assert refused.reason == "CONCURRENCY_LIMITED"
    assert refused.metadata == {"limit": "calls_in_flight", "retryable": "true"}
    assert (refused.retryable, refused.retry_delay_s) == (True, 1.0)

    for _ in range(5):  # another agency is served meanwhile, its calls counted on their own
        assert await call(channel, POLITE, b"now") == b"done"
    assert limits.calls.held(POLITE) == 0

    handler.go_on.set()
    assert await asyncio.gather(*stalled) == [b"done"] * MAX_CALLS
    assert limits.calls.held(STALLER) == 0
    assert await call(channel, STALLER, b"now") == b"done"
