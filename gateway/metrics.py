"""Prometheus metrics counted at the gateway, and the plain-HTTP /metrics, /livez, /readyz app
(a separate loopback listener: a monitoring tool needs no agency certificate)."""

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

    def render(self) -> bytes:
        return generate_latest(self.registry)


def probes_app(metrics: GatewayMetrics, ready: Callable[[], Awaitable[bool]]) -> Starlette:
    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

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
