"""Through a real gRPC server with the limits on: the limits resolve each call's caller first
and the servicer's resolution takes it from there (identity._RESOLVED), yet every call is still
its own caller, and what the servicer checks beyond the limits' resolution is still checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health

from docaxis_client import errors
from docaxis_client.delegation import ON_BEHALF_HEADER
from services.common.grpc_errors import domain_errors
from services.common.grpc_limits import AgencyCallLimits
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, agency_metadata
from services.common.limits import AgencyLimits, LimitSettings

SERVICE = "docaxis.test.v1.WhoAmI"
CALL = f"/{SERVICE}/Call"
AGENCIES = ("000.00.01.H45", "000.00.02.H45", "000.00.03.H45")
CLOSED = "000.00.09.H45"
AT_ONCE = 12


class WhoAmI:
    """Call: the agency the call acts as, when it starts and again once `AT_ONCE` calls are in
    (so that every call's two resolutions interleave with the others')."""

    def __init__(self, callers: HeaderCallerResolver) -> None:
        self.callers = callers
        self.arrived = 0
        self.all_in = asyncio.Event()

    async def call(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async with domain_errors(context):
            first = (await self.callers.authenticate(context)).require_agency()
            if request == b"together":
                self.arrived += 1
                if self.arrived == AT_ONCE:
                    self.all_in.set()
                await self.all_in.wait()
            again = self.callers.resolve(context).require_agency()
        return f"{first} {again}".encode()

    def add(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(self.call)}
                ),
            )
        )


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    async def is_open(code: str) -> bool:
        return code != CLOSED

    callers = HeaderCallerResolver(is_open)
    handler = WhoAmI(callers)
    server, port = build_server(
        "127.0.0.1:0",
        [handler.add],
        [SERVICE],
        health.aio.HealthServicer(),
        agency_limits=AgencyCallLimits(
            AgencyLimits(LimitSettings()), lambda context: callers.resolve(context).agency_code
        ),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


async def call(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], request: bytes = b""
) -> str:
    method = channel.unary_unary(CALL, request_serializer=bytes, response_deserializer=bytes)
    answer: bytes = await method(request, metadata=metadata, timeout=30)
    return answer.decode()


async def test_calls_in_flight_together_each_act_as_their_own_agency(
    channel: grpc.aio.Channel,
) -> None:
    codes = [AGENCIES[index % len(AGENCIES)] for index in range(AT_ONCE)]
    answers = await asyncio.gather(
        *(call(channel, agency_metadata(code), b"together") for code in codes)
    )
    assert answers == [f"{code} {code}" for code in codes]


async def test_what_the_servicer_checks_is_checked_after_the_limits_resolved_the_caller(
    channel: grpc.aio.Channel,
) -> None:
    """The limits resolve the caller (no directory look-up); the servicer's `authenticate` then
    refuses an agency closed in the directory, and a caller the limits could not resolve (an
    agency claiming the gateway's delegation) is refused by the servicer's own resolution."""
    with pytest.raises(grpc.aio.AioRpcError) as closed, errors.decoded_errors():
        await call(channel, agency_metadata(CLOSED))
    assert isinstance(closed.value, errors.PermissionDeniedError)
    assert closed.value.reason == "NOT_REGISTERED"
    forged = (*agency_metadata(AGENCIES[0]), (ON_BEHALF_HEADER, AGENCIES[1]))
    with pytest.raises(grpc.aio.AioRpcError) as delegated, errors.decoded_errors():
        await call(channel, forged)
    assert isinstance(delegated.value, errors.PermissionDeniedError)
    assert "only the gateway" in delegated.value.error.message
    assert await call(channel, agency_metadata(AGENCIES[0])) == f"{AGENCIES[0]} {AGENCIES[0]}"
