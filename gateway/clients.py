"""The services, as the gateway reaches them: one mutual-TLS channel with the gateway's own
certificate (urn:docaxis:role:gateway), and per call the agency it acts for in
`x-docaxis-on-behalf-of` (which the services believe from the gateway role only) with the
certificate that agency presented."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(slots=True)
class Services:
    channel: grpc.aio.Channel
    exchange: pb_grpc.ExchangeServiceAsyncStub
    directory: dpb_grpc.DirectoryServiceAsyncStub
    reports: rpb_grpc.ReportServiceAsyncStub
    admin: apb_grpc.AdminServiceAsyncStub
    ledger: lpb_grpc.LedgerServiceAsyncStub
    health: health_pb2_grpc.HealthStub
    timeout_s: float

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        ca_file: str,
        cert_file: str,
        key_file: str,
        timeout_s: float,
        server_name: str = "",
    ) -> Services:
        """`target` may name several replicas ("ipv4:10.0.0.1:50051,10.0.0.2:50051"): calls
        spread over those that answer; `server_name` is then the name their certificates carry
        (by default the target's own host is checked)."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca_file).read_bytes(),
            private_key=Path(key_file).read_bytes(),
            certificate_chain=Path(cert_file).read_bytes(),
        )
        channel = grpc.aio.secure_channel(
            target,
            credentials,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.lb_policy_name", "round_robin"),
                *([("grpc.ssl_target_name_override", server_name)] if server_name else []),
            ],
        )
        return cls(
            channel,
            pb_grpc.ExchangeServiceStub(channel),
            dpb_grpc.DirectoryServiceStub(channel),
            rpb_grpc.ReportServiceStub(channel),
            apb_grpc.AdminServiceStub(channel),
            lpb_grpc.LedgerServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
            timeout_s,
        )

    async def serving(self) -> bool:
        """Readiness: the services' gRPC health says SERVING."""
        try:
            response = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def metrics_exposition(self, timeout_s: float) -> str | None:
        """The services' Prometheus exposition (GetMetrics, as the gateway itself: no agency
        header), or None when they do not answer within `timeout_s`."""
        stub: mpb_grpc.MetricsServiceAsyncStub = mpb_grpc.MetricsServiceStub(self.channel)
        try:
            response = await stub.GetMetrics(mpb.GetMetricsRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return None
        return response.exposition

    async def close(self) -> None:
        await self.channel.close()
