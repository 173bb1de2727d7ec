"""deploy/grafana/docaxis.json is a dashboard Grafana can import, and it queries only metrics
the code defines (services and gateway), so that it cannot drift from them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.metrics import GatewayMetrics
from services.common.metrics import AxisMetrics
from tests.exposition import defined_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "docaxis.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
METRIC = re.compile(r"\bdocaxis_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_it_is_an_importable_dashboard_with_a_templated_prometheus(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["title"]
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["title"]
        assert panel["type"] in {"timeseries", "bargauge", "stat"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == DATASOURCE
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["expr"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)


def test_a_provisioned_copy_resolves_its_data_source_through_a_variable(
    dashboard: dict[str, Any],
) -> None:
    """Grafana's file provisioning (deploy/compose) ignores __inputs: the panels' ${DS_PROMETHEUS}
    must then name a data source variable, which picks the default Prometheus."""
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )


def test_every_metric_it_queries_is_one_the_code_defines(dashboard: dict[str, Any]) -> None:
    services = AxisMetrics()
    # The per-peer families exist where federation or a national axis is wired.
    services.watch_peers(list)
    services.watch_polled_peers(list)
    defined = defined_names(services.registry) | defined_names(GatewayMetrics().registry)
    queried = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert queried, "the dashboard queries no docaxis metric"
    assert queried <= defined, f"not defined by the code: {sorted(queried - defined)}"


def test_the_latency_quantiles_are_read_from_the_histogram(dashboard: dict[str, Any]) -> None:
    quantiles = [e for e in expressions(dashboard) if e.startswith("histogram_quantile(")]
    assert {e.split(",")[0] for e in quantiles} == {
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    }
    assert all("docaxis_delivery_latency_seconds_bucket" in e and "by (le)" in e for e in quantiles)
