"""The gateway's /metrics: its own families, then the services' exposition when they answer."""

from __future__ import annotations

import httpx

from gateway.metrics import SERVICES_SCRAPE_TIMEOUT_S, GatewayMetrics, probes_app
from services.common.metrics import AxisMetrics, SubmissionOutcome
from tests.exposition import sample


async def ready() -> bool:
    return True


async def scrape_metrics(services_answer: str | None) -> str:
    asked: list[float] = []

    async def scrape(timeout_s: float) -> str | None:
        asked.append(timeout_s)
        return services_answer

    metrics = GatewayMetrics()
    metrics.submissions.labels("rest").inc()
    transport = httpx.ASGITransport(app=probes_app(metrics, ready, scrape))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert asked == [SERVICES_SCRAPE_TIMEOUT_S]  # always with a deadline
    return response.text


async def test_the_services_exposition_follows_the_gateways_own() -> None:
    services = AxisMetrics()
    services.submitted(SubmissionOutcome.ACCEPTED)
    text = await scrape_metrics(await services.render())
    assert sample(text, "docaxis_gateway_submissions_total", api="rest") == 1
    assert sample(text, "docaxis_gateway_services_scrape_up") == 1
    assert sample(text, "docaxis_submissions_total", outcome="accepted") == 1


async def test_without_the_services_the_gateway_still_shows_its_own() -> None:
    text = await scrape_metrics(None)
    assert sample(text, "docaxis_gateway_submissions_total", api="rest") == 1
    assert sample(text, "docaxis_gateway_services_scrape_up") == 0
    assert sample(text, "docaxis_submissions_total", outcome="accepted") is None
