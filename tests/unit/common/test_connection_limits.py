"""The per-connection limits on real gRPC connections: an idle connection is closed, a
half-open one is found by the server's keepalive and its calls end, while a busy client on the
same server keeps being served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health

from services.common.grpc_server import build_server
from services.common.limits import LimitSettings
from tests.freezing_proxy import FreezingProxy
from tests.waiting import eventually

SERVICE = "docaxis.test.v1.Ticker"
TICKS = f"/{SERVICE}/Ticks"
ECHO = f"/{SERVICE}/Echo"
# Each channel its own connection: channels to one address otherwise share one.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
FAST = LimitSettings(keepalive_time_s=0.2, keepalive_timeout_s=0.2, max_connection_idle_s=0.3)


class Ticker:
    """Ticks: a stream that yields one message each time `tick()` is called, on every open
    stream at once, and counts its streams' ends."""

    def __init__(self) -> None:
        self.generation = 0
        self.changed = asyncio.Condition()
        self.open = 0
        self.ended = 0

    async def tick(self) -> None:
        async with self.changed:
            self.generation += 1
            self.changed.notify_all()

    async def stream(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.open += 1
        seen = self.generation
        try:
            while True:
                async with self.changed:
                    while self.generation <= seen:
                        await self.changed.wait()
                    seen = self.generation
                yield b"tick"
        finally:
            self.open -= 1
            self.ended += 1

    def add(self, server: grpc.aio.Server) -> None:
        async def echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return request

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Ticks": grpc.unary_stream_rpc_method_handler(self.stream),
                        "Echo": grpc.unary_unary_rpc_method_handler(echo),
                    },
                ),
            )
        )


@pytest.fixture
async def ticker() -> AsyncIterator[tuple[Ticker, str]]:
    ticker = Ticker()
    server, port = build_server(
        "127.0.0.1:0", [ticker.add], [SERVICE], health.aio.HealthServicer(), limits=FAST
    )
    await server.start()
    yield ticker, f"127.0.0.1:{port}"
    await server.stop(None)


async def tick(ticker: Ticker, *calls: Any) -> None:
    """One more message on every open stream; each of `calls` must receive it."""
    await ticker.tick()
    async with asyncio.timeout(10):
        for call in calls:
            assert await call.read() == b"tick"


def echo(channel: grpc.aio.Channel, data: bytes) -> Awaitable[bytes]:
    return channel.unary_unary(ECHO, request_serializer=bytes, response_deserializer=bytes)(data)


def ticks(channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall[Any, bytes]:
    return channel.unary_stream(TICKS, request_serializer=bytes, response_deserializer=bytes)(b"")


async def streams_open(ticker: Ticker, count: int) -> None:
    """Waits until `count` streams are open on the server (so that they see the next tick)."""

    async def open_now() -> int:
        return ticker.open

    await eventually(open_now, lambda now: now == count)


async def test_an_idle_connection_is_closed_and_a_busy_one_is_kept(
    ticker: tuple[Ticker, str],
) -> None:
    """A connection without a call open past DOCAXIS_MAX_CONNECTION_IDLE_S gets GOAWAY (the
    channel falls back to IDLE) and reconnects on its next call; one holding a stream is not
    idle and keeps delivering."""
    server, address = ticker
    async with (
        grpc.aio.insecure_channel(address, OWN_CONNECTION) as idle,
        grpc.aio.insecure_channel(address, OWN_CONNECTION) as busy,
    ):
        assert await echo(idle, b"hello") == b"hello"
        assert idle.get_state() is grpc.ChannelConnectivity.READY
        stream = ticks(busy)
        await streams_open(server, 1)
        await tick(server, stream)

        async def idle_state() -> grpc.ChannelConnectivity:
            return idle.get_state()

        await eventually(idle_state, lambda state: state is not grpc.ChannelConnectivity.READY)
        assert busy.get_state() is grpc.ChannelConnectivity.READY
        await tick(server, stream)
        assert await echo(idle, b"again") == b"again"  # reconnects when called
        stream.cancel()


async def test_a_half_open_connection_is_found_by_keepalive_and_its_stream_ends(
    ticker: tuple[Ticker, str],
) -> None:
    """A client that vanishes without closing (the relay goes silent) stops answering the
    server's keepalive pings: the server closes the connection and the client's stream ends
    on the server, freeing what it held. Another client's stream keeps delivering."""
    server, address = ticker
    proxy = FreezingProxy(address)
    async with (
        proxy.running() as relayed,
        grpc.aio.insecure_channel(relayed, OWN_CONNECTION) as vanishing,
        grpc.aio.insecure_channel(address, OWN_CONNECTION) as steady,
    ):
        lost = ticks(vanishing)
        kept = ticks(steady)
        await streams_open(server, 2)
        await tick(server, lost, kept)
        proxy.freeze()

        async def ended() -> int:
            return server.ended

        await eventually(ended, lambda count: count == 1)
        assert server.open == 1
        await tick(server, kept)
        lost.cancel()
        kept.cancel()
