"""`make run` + `make demo` in miniature: DMSs talk gRPC straight to `docaxis run`, and the
gateway's /metrics (python -m gateway) shows what they sent, read from the services with
MetricsService.GetMetrics; without the services it still answers with its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess, GatewayProcess
from tests.exposition import sample

pytestmark = pytest.mark.e2e


async def test_the_gateways_metrics_show_documents_sent_over_grpc(
    axis_process: AxisProcess, tmp_path: Path
) -> None:
    sender, recipient = await register(axis_process, 2)
    gateway = GatewayProcess(axis_process, tmp_path)
    await gateway.start()
    try:
        async with axis_process.client(sender) as dms:
            upload = await dms.upload_stream(b"%PDF-1.7 metrics e2e")
            for _ in range(2):
                await dms.submit(
                    f"c-{uuid.uuid4()}",
                    make_header(sender, [recipient]),
                    [upload.ref("cv.pdf", "application/pdf")],
                )
        async with httpx.AsyncClient(base_url=gateway.probes_url, timeout=10) as probes:
            served = (await probes.get("/metrics")).text
            # The services go away: the gateway answers with its own metrics and says so.
            assert await axis_process.terminate() == 0
            alone = (await probes.get("/metrics")).text
    finally:
        code = await gateway.terminate()
    assert code == 0, gateway.logs()

    assert sample(served, "docaxis_gateway_services_scrape_up") == 1
    assert sample(served, "docaxis_submissions_total", outcome="accepted") == 2
    assert sample(served, "docaxis_queue_depth", agency=recipient) == 2
    assert sample(
        served, "docaxis_gateway_certificate_expiry_timestamp_seconds", certificate="client"
    )
    assert sample(alone, "docaxis_gateway_services_scrape_up") == 0
    assert sample(alone, "docaxis_submissions_total", outcome="accepted") is None
    assert sample(
        alone, "docaxis_gateway_certificate_expiry_timestamp_seconds", certificate="client"
    )
