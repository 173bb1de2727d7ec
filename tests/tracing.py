"""Spans recorded in this test process by the OpenTelemetry SDK's own in-memory exporter.

The provider is global and can be installed once per process: the first test that asks
installs it, and every later span of the process (the in-process axis included) is recorded.
"""

from __future__ import annotations

import functools

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@functools.cache
def span_exporter() -> InMemorySpanExporter:
    """The process's exporter, installed on first use (spans are exported as they end)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter
