"""Prometheus metrics counted at the gateway, and the plain-HTTP /metrics, /livez, /readyz app
(a separate loopback listener: a monitoring tool needs no agency certificate).

/metrics shows the gateway's own families (all `docaxis_gateway_*`) followed by the services'
(`docaxis_*`, fetched with MetricsService.GetMetrics), so one scrape sees the whole axis, including
what DMSs send over gRPC without passing through the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.problems import Problem

# Well within a Prometheus scrape timeout (10 s by default): a slow services process costs its
# own metrics, never the gateway's.
SERVICES_SCRAPE_TIMEOUT_S = 3.0

# The services' exposition within the deadline, or None when they did not answer.
ServicesScrape = Callable[[float], Awaitable[str | None]]


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            "docaxis_gateway_submissions",
            "Documents accepted through the gateway (REST and edXML), by API.",
            ["api"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "docaxis_gateway_deliveries",
            "Deliveries fetched by recipients through the gateway, by API.",
            ["api"],
            registry=self.registry,
        )
        self.acknowledgements = Counter(
            "docaxis_gateway_acknowledgements",
            "Deliveries and notices acknowledged through the gateway, by API.",
            ["api"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "docaxis_gateway_rejections",
            "Requests refused with a problem, by stable reason and HTTP status.",
            ["reason", "status"],
            registry=self.registry,
        )

        self.certificate_expiry = Gauge(
            "docaxis_gateway_certificate_expiry_timestamp_seconds",
            "When the gateway's own certificates expire (server: HTTPS; client: towards the "
            "services), as a Unix time.",
            ["certificate"],
            registry=self.registry,
        )
        self.services_scrape_up = Gauge(
            "docaxis_gateway_services_scrape_up",
            "1 when the services answered GetMetrics for this scrape (their docaxis_* families "
            "follow), 0 when they did not.",
            registry=self.registry,
        )

    def count_rejection(self, problem: Problem) -> None:
        self.rejections.labels(problem.reason, str(problem.status)).inc()

    def render(self, services: str | None) -> bytes:
        """The gateway's exposition, then the services' when they answered (`services`)."""
        self.services_scrape_up.set(0 if services is None else 1)
        own = generate_latest(self.registry)
        return own if services is None else own + services.encode("utf-8")


def probes_app(
    metrics: GatewayMetrics, ready: Callable[[], Awaitable[bool]], scrape: ServicesScrape
) -> Starlette:
    async def metrics_endpoint(request: Request) -> Response:
        services = await scrape(SERVICES_SCRAPE_TIMEOUT_S)
        return Response(metrics.render(services), media_type=CONTENT_TYPE_LATEST)

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if await ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "detail": "services not SERVING"}, 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/livez", livez),
            Route("/readyz", readyz),
        ]
    )
