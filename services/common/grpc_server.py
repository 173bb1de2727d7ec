"""Building a gRPC aio server with health, reflection, and our one interceptor (grpc_calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.grpc_calls import CallInterceptor, RefusalSink
from services.common.grpc_limits import AgencyCallLimits, channel_options
from services.common.grpc_text import control_problems as control_problems
from services.common.limits import LimitSettings

DEFAULT_LIMITS = LimitSettings()

__all__ = ["DEFAULT_LIMITS", "RefusalSink", "build_server", "control_problems", "set_serving"]


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.aio.Server], None]],
    service_names: Iterable[str],
    health_servicer: health.aio.HealthServicer,
    *,
    credentials: grpc.ServerCredentials | None = None,
    refusals: RefusalSink | None = None,
    share_port: bool = False,
    limits: LimitSettings = DEFAULT_LIMITS,
    agency_limits: AgencyCallLimits | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A server with our services, grpc.health.v1 and reflection; returns it and its bound port.
    `refusals` is told of every refused call (the metrics count them). `share_port`: several
    worker processes listen on the same address (SO_REUSEPORT; the kernel spreads connections
    among them); otherwise a port already in use is an error. `limits` bounds each connection;
    `agency_limits`, when given, each agency's calls."""
    server = grpc.aio.server(
        interceptors=[CallInterceptor(refusals, agency_limits)],
        options=[*channel_options(limits), ("grpc.so_reuseport", 1 if share_port else 0)],
    )
    for add in register:
        add(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not available")
    return server, port


async def set_serving(
    health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await health_servicer.set(name, status)
