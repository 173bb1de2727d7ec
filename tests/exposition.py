"""Reading a Prometheus text exposition in tests: one sample's value by name and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels`, or None when it is not exposed."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def family_names(exposition: str) -> set[str]:
    """Every sample name exposed (a counter's `_total`, a histogram's `_bucket`, …)."""
    return {
        found.name
        for family in text_string_to_metric_families(exposition)
        for found in family.samples
    }


# The sample names prometheus_client derives from a family of each type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def defined_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name `registry` can expose, whether or not a sample exists yet."""
    return {
        family.name + suffix for family in registry.collect() for suffix in _SUFFIXES[family.type]
    }
