"""MetricsService over gRPC: the process's Prometheus exposition, for operators only."""

from __future__ import annotations

from typing import Any

import grpc
from docaxis.ops.v1 import metrics_service_pb2 as pb
from docaxis.ops.v1 import metrics_service_pb2_grpc as pb_grpc

from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.common.metrics import EXPOSITION_CONTENT_TYPE, AxisMetrics

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["MetricsService"].full_name


class MetricsServicer(pb_grpc.MetricsServiceServicer):
    def __init__(self, metrics: AxisMetrics, callers: CallerResolver) -> None:
        self._metrics = metrics
        self._callers = callers

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMetricsResponse:
        async with domain_errors(context):
            self._callers.resolve_operator(context)
        return pb.GetMetricsResponse(
            exposition=await self._metrics.render(), content_type=EXPOSITION_CONTENT_TYPE
        )
