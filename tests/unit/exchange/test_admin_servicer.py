"""AdminService through a real grpc.aio server over fakes of its stores: administrators only,
every bad search field at once, pages of found documents."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from grpc_health.v1 import health

from services.common.grpc_errors import error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.exchange.entrypoints.admin_api import SERVICE_NAME, AdminServicer
from services.exchange.service_layer.admin import AdminHandlers
from tests.unit.exchange.builders import HEALTH, SENDER
from tests.unit.exchange.test_admin import admin, admin_store


@pytest.fixture
async def stub(admin: AdminHandlers) -> AsyncIterator[apb_grpc.AdminServiceAsyncStub]:
    """`admin` is test_admin.py's: AdminHandlers over the fake admin, document and lifecycle
    stores, five documents found."""
    servicer = AdminServicer(admin, HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: apb_grpc.add_AdminServiceServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield apb_grpc.AdminServiceStub(channel)
    await server.stop(None)


async def test_an_administrator_pages_through_the_documents_found(
    stub: apb_grpc.AdminServiceAsyncStub,
) -> None:
    first = await stub.SearchDocuments(
        apb.SearchDocumentsRequest(sender=SENDER, page_size=2),
        metadata=role_metadata(Role.ADMIN),
        timeout=5,
    )
    assert len(first.documents) == 2
    assert first.next_page_token
    rest = await stub.SearchDocuments(
        apb.SearchDocumentsRequest(sender=SENDER, page_size=10, page_token=first.next_page_token),
        metadata=role_metadata(Role.ADMIN),
        timeout=5,
    )
    assert (len(rest.documents), rest.next_page_token) == (3, "")


async def test_an_agency_is_refused(stub: apb_grpc.AdminServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SearchDocuments(
            apb.SearchDocumentsRequest(), metadata=agency_metadata(HEALTH), timeout=5
        )
    assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_every_bad_search_field_is_reported_at_once(
    stub: apb_grpc.AdminServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SearchDocuments(
            apb.SearchDocumentsRequest(
                code="/x", submitted_from="2025-08-03", submitted_to="2025-08-02", page_size=201
            ),
            metadata=role_metadata(Role.ADMIN),
            timeout=5,
        )
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert [v.field for v in details.violations] == ["code", "submitted_to", "page_size"]


__all__ = ["admin", "admin_store"]  # test_admin.py's fixtures, used through `stub`
