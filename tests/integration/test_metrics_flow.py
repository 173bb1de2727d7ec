"""The services' metrics on real Postgres and RabbitMQ, read with MetricsService.GetMetrics over
mutual TLS: what a document's journey counts, and who may read it.

The axis is shared by the whole session, so counters are compared before and after; gauges are
read for agencies only this test uses."""

from __future__ import annotations

import uuid

import grpc
import pytest
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.credentials import TlsCredentials
from services.common.grpc_errors import error_details
from tests.conftest import Register, make_header
from tests.exposition import sample
from tests.integration.test_exchange_flow import next_delivery
from tests.pki import SuitePki

pytestmark = pytest.mark.integration


async def get_metrics(address: str, tls: TlsCredentials) -> str:
    async with open_channel(address, tls) as channel:
        stub = mpb_grpc.MetricsServiceStub(channel)
        response = await stub.GetMetrics(mpb.GetMetricsRequest(), timeout=10)
    return response.exposition


def counted(text: str, name: str, **labels: str) -> float:
    return sample(text, name, **labels) or 0.0


async def test_a_documents_journey_shows_in_the_metrics(
    axis: str, pki: SuitePki, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, online, offline = await register_agencies(3)
    before = await get_metrics(axis, pki.monitor)

    stream = clients[online].receive()
    upload = await clients[sender].upload_stream(b"%PDF-1.7 metrics")
    consignment = f"c-{uuid.uuid4()}"
    header = make_header(sender, [online, offline])
    attachments = [upload.ref("cv.pdf", "application/pdf")]
    first = await clients[sender].submit(consignment, header, attachments)
    again = await clients[sender].submit(consignment, header, attachments)
    assert again.replayed
    assert again.receipt.document_uuid == first.receipt.document_uuid
    delivery = await next_delivery(stream)
    await clients[online].acknowledge(delivery.delivery_id)
    stream.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # submitting as another agency
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(online, [offline]))
    assert error_details(refused.value).reason == "SENDER_MISMATCH"

    after = await get_metrics(axis, pki.admin)

    def delta(name: str, **labels: str) -> float:
        return counted(after, name, **labels) - counted(before, name, **labels)

    assert delta("docaxis_submissions_total", outcome="accepted") == 1
    assert delta("docaxis_submissions_total", outcome="replayed") == 1
    submit = "docaxis.exchange.v1.ExchangeService/Submit"
    assert delta("docaxis_rejections_total", method=submit, reason="SENDER_MISMATCH") == 1
    assert delta("docaxis_deliveries_total", mode="push") >= 1
    assert delta("docaxis_acknowledgements_total", kind="delivery") == 1
    assert delta("docaxis_delivery_latency_seconds_count") >= 1
    # The offline agency's copy waits; the online one's was acknowledged.
    assert sample(after, "docaxis_queue_depth", agency=offline) == 1
    age = sample(after, "docaxis_queue_oldest_age_seconds", agency=offline)
    assert age is not None
    assert age >= 0
    assert sample(after, "docaxis_queue_depth", agency=online) is None
    assert sample(after, "docaxis_metrics_probe_up", probe="queues") == 1
    assert sample(after, "docaxis_metrics_probe_up", probe="ledger") == 1
    tree_size = sample(after, "docaxis_ledger_tree_size")
    assert tree_size is not None
    assert tree_size >= 0
    assert sample(after, "docaxis_ledger_lag_seconds") is not None
    for certificate in ("tls_server", "hub"):
        expiry = sample(
            after, "docaxis_certificate_expiry_timestamp_seconds", certificate=certificate
        )
        assert expiry is not None
        assert expiry > 0


async def test_an_agency_may_not_read_the_metrics(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get_metrics(axis, pki.tls(pki.agency(code).agency))
    details = error_details(refused.value)
    assert details.code is grpc.StatusCode.PERMISSION_DENIED
    assert details.reason == "PERMISSION_DENIED"
    assert details.metadata["role"] == "agency"
