"""`docaxis health`: a running axis's gRPC health, asked over mutual TLS, as an exit status.

What an orchestrator's exec probe or a load balancer's check script runs where a plain-HTTP
probe (`/readyz`, DOCAXIS_PROBE_ADDRESS) is not wanted: it goes through the same TLS handshake
and certificate checks a DMS does. By default it presents the monitoring role's certificate
(`--cert/--key/--ca`, or the demo PKI's)."""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import CHANNEL_OPTIONS, open_channel
from docaxis_client.trust.chain import Role
from services import pki_cli
from services.settings import ClientSettings

SERVING = health_pb2.HealthCheckResponse.SERVING
# Exit statuses: 0 SERVING; NOT_SERVING (or unknown) and unreachable apart, for the log.
NOT_SERVING_EXIT = 1
UNREACHABLE_EXIT = 3


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    health = commands.add_parser(
        "health", help="exit 0 when the axis's gRPC health is SERVING (mutual TLS)"
    )
    pki_cli.add_client_options(health, client)
    health.add_argument("--service", default="", help="one service's status; default: overall")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds")
    health.add_argument(
        "--server-name",
        default=None,
        help="the name the server's certificate must carry when it is not the address's host "
        "(a probe dialling 127.0.0.1 inside the pod checks the certificate for its service name)",
    )


async def dispatch(args: argparse.Namespace) -> int:
    tls = pki_cli.client_tls(args, Role.MONITOR)
    if tls is not None and args.server_name:
        options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", args.server_name)]
        channel = grpc.aio.secure_channel(args.address, tls.channel_credentials(), options=options)
    else:
        channel = open_channel(args.address, tls)
    async with channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as exc:
            print(f"docaxis health: {args.address}: {exc.code().name}", file=sys.stderr)
            return UNREACHABLE_EXIT
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.address}: {status}")
    return 0 if answer.status == SERVING else NOT_SERVING_EXIT
