"""ReportService over gRPC."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from docaxis.exchange.v1 import report_service_pb2 as pb
from docaxis.exchange.v1 import report_service_pb2_grpc as pb_grpc

from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.exchange.domain.deadlines import rate
from services.exchange.entrypoints.convert import timestamp
from services.exchange.service_layer.report_ports import (
    AgencyMonth,
    OverdueCopy,
    ReportedCopy,
    StalledCopy,
    StalledStep,
)
from services.exchange.service_layer.reports import ReportHandlers

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ReportService"].full_name


def _reported_to_pb(copy: ReportedCopy) -> dict[str, str]:
    """The fields OverdueCopy and StalledCopy share, by their (common) names."""
    return {
        "delivery_id": copy.delivery_id,
        "document_uuid": copy.document_uuid,
        "document_id": copy.document_id,
        "subject": copy.subject,
        "sender": copy.sender,
        "recipient": copy.recipient,
    }


def overdue_to_pb(copy: OverdueCopy) -> pb.OverdueCopy:
    return pb.OverdueCopy(
        **_reported_to_pb(copy),
        due_date=copy.due_date.isoformat(),
        accepted_at=timestamp(copy.accepted_at),
    )


def statistics_to_pb(month: AgencyMonth) -> pb.AgencyStatistics:
    figures = pb.AgencyStatistics(
        agency=month.agency,
        sent=month.sent,
        recalled=month.recalled,
        received=month.received,
        rejected=month.rejected,
        completed=month.completed,
        with_due_date=month.with_due_date,
        completed_on_time=month.completed_on_time,
        arrived_same_day=month.arrived_same_day,
        registered_same_day=month.registered_same_day,
    )
    on_time = rate(month.completed_on_time, month.with_due_date)
    if on_time is not None:
        figures.on_time_percent = on_time
    same_day = rate(month.arrived_same_day, month.received)
    if same_day is not None:
        figures.same_day_percent = same_day
    return figures


_STEP_TO_PB = {
    StalledStep.NOT_ARRIVED: pb.STALLED_STEP_NOT_ARRIVED,
    StalledStep.NOT_REGISTERED: pb.STALLED_STEP_NOT_REGISTERED,
}


def stalled_to_pb(copy: StalledCopy) -> pb.StalledCopy:
    return pb.StalledCopy(
        **_reported_to_pb(copy),
        step=_STEP_TO_PB[copy.step],
        waiting_since=timestamp(copy.waiting_since),
        overdue_from=timestamp(copy.overdue_from),
    )


class ReportServicer(pb_grpc.ReportServiceServicer):
    def __init__(self, handlers: ReportHandlers, callers: CallerResolver) -> None:
        self._handlers = handlers
        self._callers = callers

    async def ListOverdue(
        self, request: pb.ListOverdueRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListOverdueResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            as_of = request.as_of.ToDatetime(dt.UTC) if request.HasField("as_of") else None
            copies, truncated = await self._handlers.overdue(
                caller, request.agency, as_of, request.limit
            )
            return pb.ListOverdueResponse(
                copies=[overdue_to_pb(c) for c in copies], truncated=truncated
            )

    async def GetAgencyStatistics(
        self, request: pb.GetAgencyStatisticsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAgencyStatisticsResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            months = await self._handlers.statistics(caller, request.month, list(request.agencies))
            return pb.GetAgencyStatisticsResponse(
                month=request.month, agencies=[statistics_to_pb(m) for m in months]
            )

    async def ListStalledSteps(
        self, request: pb.ListStalledStepsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListStalledStepsResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            as_of = request.as_of.ToDatetime(dt.UTC) if request.HasField("as_of") else None
            copies, truncated = await self._handlers.stalled(
                caller, request.agency, as_of, request.arrival_grace_minutes, request.limit
            )
            return pb.ListStalledStepsResponse(
                copies=[stalled_to_pb(c) for c in copies], truncated=truncated
            )
