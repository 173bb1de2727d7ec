"""ExchangeService through a real grpc.aio server over the fake stores and directory (the
inbox port is not reached by these unary calls): typed refusals for callers and bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as xpb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as xpb_grpc
from grpc_health.v1 import health

from services.common.grpc_errors import error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.common.metrics import AxisMetrics
from services.exchange.adapters.rabbit import InFlight
from services.exchange.entrypoints.grpc_api import SERVICE_NAME, ExchangeServicer, add_to_server
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.inbox_ports import Inbox
from tests.unit.exchange.builders import SENDER


class NoInboxes:
    """Receive streams are not part of these tests."""

    def consume(
        self, agency_code: str, *, prefetch: int | None = None
    ) -> AbstractAsyncContextManager[Inbox]:
        raise AssertionError("no Receive stream in these tests")


@pytest.fixture
async def stub(exchange: ExchangeHandlers) -> AsyncIterator[xpb_grpc.ExchangeServiceAsyncStub]:
    servicer = ExchangeServicer(
        exchange, HeaderCallerResolver(), NoInboxes(), InFlight(), metrics=AxisMetrics()
    )
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: add_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield xpb_grpc.ExchangeServiceStub(channel)
    await server.stop(None)


async def test_tracking_a_document_never_sent_is_not_found(
    stub: xpb_grpc.ExchangeServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Track(
            xpb.TrackRequest(document_uuid=str(uuid.uuid4())),
            metadata=agency_metadata(SENDER),
            timeout=5,
        )
    assert error_details(refused.value).code is grpc.StatusCode.NOT_FOUND


async def test_only_agencies_track_and_submit(stub: xpb_grpc.ExchangeServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Track(
            xpb.TrackRequest(document_uuid=str(uuid.uuid4())),
            metadata=role_metadata(Role.MONITOR),
            timeout=5,
        )
    assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_submission_without_a_header_lists_every_missing_field(
    stub: xpb_grpc.ExchangeServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Submit(
            xpb.SubmitRequest(
                consignment_id="c-1", header=common_pb2.DocumentHeader(sender=SENDER)
            ),
            metadata=agency_metadata(SENDER),
            timeout=5,
        )
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    fields = {v.field for v in details.violations}
    assert {"header.code.number", "header.recipients", "header.subject"} <= fields, fields
