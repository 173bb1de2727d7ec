"""ReportService through a real grpc.aio server over a fake ReportStore: who may ask about whom,
validation as typed errors, and the answers as the handlers give them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.exchange.v1 import report_service_pb2 as rpb
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc
from grpc_health.v1 import health

from services.common.grpc_errors import error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.exchange.entrypoints.report_api import SERVICE_NAME, ReportServicer
from services.exchange.service_layer.reports import ReportHandlers
from tests.unit.exchange.builders import HEALTH, SENDER, fixed_clock
from tests.unit.exchange.test_reports import RecordingReportStore


@pytest.fixture
async def stub() -> AsyncIterator[rpb_grpc.ReportServiceAsyncStub]:
    handlers = ReportHandlers(RecordingReportStore(overdue=5), clock=fixed_clock)
    servicer = ReportServicer(handlers, HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: rpb_grpc.add_ReportServiceServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield rpb_grpc.ReportServiceStub(channel)
    await server.stop(None)


async def test_an_administrator_gets_the_statistics_of_the_agencies_asked_for(
    stub: rpb_grpc.ReportServiceAsyncStub,
) -> None:
    response = await stub.GetAgencyStatistics(
        rpb.GetAgencyStatisticsRequest(month="2026-10", agencies=[SENDER, HEALTH]),
        metadata=role_metadata(Role.ADMIN),
        timeout=5,
    )
    assert response.month == "2026-10"
    assert [a.agency for a in response.agencies] == [SENDER, HEALTH]


async def test_an_agency_asking_about_another_is_refused(
    stub: rpb_grpc.ReportServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetAgencyStatistics(
            rpb.GetAgencyStatisticsRequest(month="2026-10", agencies=[SENDER]),
            metadata=agency_metadata(HEALTH),
            timeout=5,
        )
    assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_malformed_month_names_its_field(stub: rpb_grpc.ReportServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetAgencyStatistics(
            rpb.GetAgencyStatisticsRequest(month="10/2026"),
            metadata=role_metadata(Role.ADMIN),
            timeout=5,
        )
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert [v.field for v in details.violations] == ["month"]


async def test_overdue_copies_say_when_the_list_was_cut(
    stub: rpb_grpc.ReportServiceAsyncStub,
) -> None:
    response = await stub.ListOverdue(
        rpb.ListOverdueRequest(limit=3), metadata=agency_metadata(HEALTH), timeout=5
    )
    assert (len(response.copies), response.truncated) == (3, True)
