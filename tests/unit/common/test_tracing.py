"""The tracing helpers with the real OpenTelemetry SDK (its in-memory exporter)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing
from tests.tracing import span_exporter


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = span_exporter()
    exporter.clear()
    return exporter


def test_a_traceparent_written_down_continues_the_trace_later(
    spans: InMemorySpanExporter,
) -> None:
    """What an outbox row stores and a message header carries joins the original trace."""
    with tracing.span("submit") as submit:
        stored = tracing.current_traceparent()
    headers: dict[str, object] = {"x-other": 1}
    with tracing.span("publish", parent={"traceparent": stored}) as publish:
        tracing.inject(headers, publish)
    with tracing.span("push", parent=headers, current=False):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    trace_id = submit.get_span_context().trace_id
    assert {s.context.trace_id for s in by_name.values()} == {trace_id}
    assert by_name["publish"].parent is not None
    assert by_name["publish"].parent.span_id == submit.get_span_context().span_id
    assert by_name["push"].parent is not None
    assert by_name["push"].parent.span_id == publish.get_span_context().span_id
    assert tracing.trace_id_of(stored) == f"{trace_id:032x}"


def test_without_a_parent_a_span_starts_its_own_trace(spans: InMemorySpanExporter) -> None:
    """Headers without a traceparent (an older message) start a fresh trace, not an error."""
    with tracing.span("a"):
        pass
    with tracing.span("b", parent={"x-docaxis": "1"}):
        pass
    a, b = spans.get_finished_spans()
    assert a.context is not None
    assert b.context is not None
    assert a.context.trace_id != b.context.trace_id
    assert b.parent is None


def test_annotations_are_namespaced(spans: InMemorySpanExporter) -> None:
    with tracing.span("submit"):
        tracing.annotate(document_uuid="u-1", recipients=2)
    (submit,) = spans.get_finished_spans()
    assert dict(submit.attributes or {}) == {
        "docaxis.document_uuid": "u-1",
        "docaxis.recipients": 2,
    }


def test_nothing_is_configured_without_an_endpoint() -> None:
    """No OTEL_EXPORTER_OTLP_* endpoint: no provider installed, spans stay no-ops."""
    assert not tracing.configure_tracing("docaxis", environ={})
    assert not tracing.configure_tracing("docaxis", environ={"OTEL_SERVICE_NAME": "x"})


def test_trace_ids_of_malformed_traceparents_are_empty() -> None:
    assert tracing.trace_id_of(None) == ""
    assert tracing.trace_id_of("garbage") == ""


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP receiver: records each POST's path and body."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def test_spans_are_exported_over_otlp_when_an_endpoint_is_configured() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: the SDK's OTLP/HTTP exporter posts the spans, with the
    service name, to <endpoint>/v1/traces."""
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        provider = tracing.otlp_provider("docaxis-test", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        assert provider is not None
        with provider.get_tracer("test").start_as_current_span("exported-span"):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    request = ExportTraceServiceRequest()
    (path, body), *_ = _Collector.received
    request.ParseFromString(body)
    assert path == "/v1/traces"
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "docaxis-test"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["exported-span"]


def test_a_push_and_its_acknowledgement_are_spans_in_the_messages_trace(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.span("publish") as publish:
        headers: dict[str, object] = {}
        tracing.inject(headers, publish)
    tracing.record_push("d-1", "000.00.02.H29", headers, started_ns=1)
    tracing.record_acknowledgement("d-1", headers)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    for name in ("docaxis.push", "docaxis.acknowledge"):
        parent = by_name[name].parent
        assert parent is not None
        assert parent.span_id == publish.get_span_context().span_id


def test_without_a_provider_a_push_and_its_acknowledgement_make_no_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a provider every span is a no-op (about 50 Python calls each, two a copy): the
    relay's rule, checked once (`recording`), holds for the pushes and acknowledgements too."""

    def no_span(*args: object, **kwargs: object) -> None:
        raise AssertionError("a span was made")

    monkeypatch.setattr(tracing, "recording", lambda: False)
    monkeypatch.setattr(tracing, "span", no_span)
    tracing.record_push("d-1", "000.00.02.H29", {"traceparent": "x"}, started_ns=1)
    tracing.record_acknowledgement("d-1", None)
