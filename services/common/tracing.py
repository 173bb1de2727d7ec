"""Traces along a document's path: OpenTelemetry spans for the gRPC calls, the outbox, the
RabbitMQ publish, the push to a DMS and its acknowledgement, joined by W3C trace context.

The context travels with the document: the Submit's span context is stored with the document
(``current_traceparent``) and every outbox row about it (its copies, and the status and recall
notices, 01 included) takes it from there; the relay publishes each row under a span of that
trace and puts its ``traceparent`` in the AMQP message headers; pushing the message to a DMS
and settling it once acknowledged are spans whose parent comes from those headers.

Export: OTLP over HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, configured by the standard OTEL_* variables.
Otherwise nothing is installed: the API's default provider makes every span a no-op.

Call sites stay one line; everything OpenTelemetry is here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "TRACEPARENT",
    "Span",
    "SpanKind",
    "annotate",
    "configure_tracing",
    "current_traceparent",
    "inject",
    "record_acknowledgement",
    "record_push",
    "recording",
    "rpc_span",
    "span",
    "trace_id_of",
]

TRACEPARENT = "traceparent"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# W3C trace context only, whatever OTEL_PROPAGATORS says: it is what the AMQP headers and the
# outbox rows carry.
_PROPAGATOR = TraceContextTextMapPropagator()
# A proxy: spans go to whichever provider is installed, also one installed after import.
_tracer = trace.get_tracer("docaxis")


def configure_tracing(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Installs an OTLP-exporting provider when an endpoint is configured; True if it did."""
    provider = otlp_provider(service_name, environ)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    return True


def otlp_provider(service_name: str, environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting to the configured OTLP/HTTP endpoint in batches, off the event
    loop (flushed at interpreter exit); None when no endpoint is configured."""
    endpoint = next((environ[name] for name in _ENDPOINT_VARIABLES if environ.get(name)), None)
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        exporter = OTLPSpanExporter(endpoint=environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
    else:  # the base endpoint: the exporter appends /v1/traces
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _context(carrier: Mapping[str, object] | None) -> Context | None:
    """The context a carrier's ``traceparent`` names (None: the current context)."""
    if carrier is None:
        return None
    text = {k: v for k, v in carrier.items() if isinstance(v, str)}
    return _PROPAGATOR.extract(text) if TRACEPARENT in text else None


@contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, object] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | bool] | None = None,
    current: bool = True,
    start_time: int | None = None,
) -> Iterator[Span]:
    """A span around the block: a child of the trace `parent` (headers or metadata carrying a
    ``traceparent``) names, or of the current span. With ``current=False`` it does not become
    the current span (for async generators, whose code between yields may run elsewhere)."""
    context = _context(parent)
    if current:
        with _tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        ) as opened:
            yield opened
        return
    opened = _tracer.start_span(
        name, context=context, kind=kind, attributes=attributes, start_time=start_time
    )
    try:
        yield opened
    except BaseException as exc:  # as start_as_current_span records it
        opened.record_exception(exc)
        opened.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        opened.end()


def recording() -> bool:
    """Whether spans are recorded (a provider is installed). Without one every span is a no-op:
    a path that makes one per message checks this once and skips them."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def rpc_span(
    method: str, metadata: Iterable[tuple[str, str | bytes]] | None, *, streaming: bool = False
) -> AbstractContextManager[Span]:
    """The server span of one gRPC call, continuing the caller's trace when its metadata
    carries a ``traceparent``. A stream's span is not made current: its handler is an async
    generator, and the push spans it opens take their parent from each message instead."""
    return span(
        method,
        parent=dict(metadata or ()),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.method": method},
        current=not streaming,
    )


def record_push(
    item_id: str, agency: str, headers: Mapping[str, object] | None, started_ns: int
) -> None:
    """A span for one item handed to a DMS's stream since `started_ns` (its batch was claimed
    together), in the trace its message headers carry."""
    if not recording():
        return  # a span without a provider is a no-op: 50 Python calls for nothing, each copy
    with span(
        "docaxis.push",
        parent=headers or {},
        kind=SpanKind.CONSUMER,
        attributes={"docaxis.item": item_id, "docaxis.agency": agency},
        current=False,
        start_time=started_ns,
    ):
        pass


def record_acknowledgement(item_id: str, headers: Mapping[str, object] | None) -> None:
    """A span for a pushed item's acknowledgement, once it is stored and its broker message is
    settled, in the trace the message headers carry."""
    if not recording():
        return  # as record_push
    with span(
        "docaxis.acknowledge",
        parent=headers or {},
        kind=SpanKind.CONSUMER,
        attributes={"docaxis.item": item_id},
        current=False,
    ):
        pass


def annotate(**attributes: str | int | bool) -> None:
    """Adds ``docaxis.<name>`` attributes to the current span (e.g. the document's uuid)."""
    current = trace.get_current_span()
    for key, value in attributes.items():
        current.set_attribute(f"docaxis.{key}", value)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store with work done later (an outbox
    row); None outside any recorded span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def inject(headers: MutableMapping[str, object], traced: Span) -> None:
    """Puts `traced`'s context into message headers as ``traceparent``."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(traced))
    headers.update(carrier)


def trace_id_of(traceparent: str | None) -> str:
    """The 32-hex-digit trace id of a ``traceparent`` ("" when there is none)."""
    if not traceparent:
        return ""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""
