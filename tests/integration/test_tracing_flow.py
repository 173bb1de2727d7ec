"""One document's trace, recorded by the OpenTelemetry SDK's in-memory exporter: Submit, the
outbox relay's publish, the push to the recipient, its acknowledgement, and the status 01
notice published and pushed to the sender (and acknowledged there), all one trace."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from docaxis_client.client import AgencyClient
from docaxis_client.errors import NotFoundError
from docaxis_client.receive import ReceiveStream
from tests.conftest import Register, make_header
from tests.pki import SuitePki
from tests.tracing import span_exporter
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBMIT = "/docaxis.exchange.v1.ExchangeService/Submit"


async def next_of_kind(stream: ReceiveStream, kind: str) -> pb.ReceiveResponse:
    async with asyncio.timeout(15):
        while True:
            item = await stream.read()
            if item.WhichOneof("item") == kind:
                return item


def one(spans: Sequence[ReadableSpan], name: str, **attributes: str) -> ReadableSpan:
    """The one span called `name` whose docaxis.* attributes include `attributes`."""
    found = [
        s
        for s in spans
        if s.name == name
        and all((s.attributes or {}).get(f"docaxis.{k}") == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{name} {attributes}: {[s.name for s in spans]}"
    return found[0]


def parent_of(child: ReadableSpan) -> int:
    assert child.parent is not None, f"{child.name} has no parent"
    return int(child.parent.span_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def test_one_documents_trace_runs_from_submit_to_the_senders_status_01(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    exporter = span_exporter()
    exporter.clear()
    sender, recipient = await register_agencies(2)
    inbox, outbox = clients[recipient].receive(), clients[sender].receive()
    async with asyncio.timeout(15):
        await inbox.subscribed()
        await outbox.subscribed()
    response = await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    delivery = (await next_of_kind(inbox, "delivery")).delivery
    await clients[recipient].acknowledge(delivery.delivery_id)
    notice = (await next_of_kind(outbox, "status")).status
    assert notice.status.code == pb.STATUS_CODE_ARRIVED
    await clients[sender].acknowledge_notice(notice.notice_id)
    inbox.cancel()
    outbox.cancel()

    async def finished() -> Sequence[ReadableSpan]:
        return exporter.get_finished_spans()

    document_uuid = response.receipt.document_uuid
    submitted = one(await finished(), SUBMIT, document_uuid=document_uuid)
    assert submitted.context is not None
    trace_id = submitted.context.trace_id

    async def in_trace() -> list[ReadableSpan]:
        return [s for s in await finished() if s.context and s.context.trace_id == trace_id]

    # The sender's acknowledgement of the notice is the last span to end.
    spans = await eventually(
        in_trace, lambda found: sum(s.name == "docaxis.acknowledge" for s in found) == 2
    )
    publish_copy = one(spans, "docaxis.publish", item=delivery.delivery_id)
    push_copy = one(spans, "docaxis.push", item=delivery.delivery_id, agency=recipient)
    publish_notice = one(spans, "docaxis.publish", item=notice.notice_id)
    push_notice = one(spans, "docaxis.push", item=notice.notice_id, agency=sender)
    acknowledgements = [s for s in spans if s.name == "docaxis.acknowledge"]
    (copy_acknowledged,) = [a for a in acknowledgements if parent_of(a) == span_id(publish_copy)]
    (notice_acknowledged,) = [
        a for a in acknowledgements if parent_of(a) == span_id(publish_notice)
    ]
    # Submit -> outbox -> RabbitMQ -> push -> acknowledgement; the 01 notice it queues is
    # published in the document's trace and pushed to the sender, who acknowledges it.
    assert parent_of(publish_copy) == span_id(submitted)
    assert parent_of(push_copy) == span_id(publish_copy)
    assert parent_of(publish_notice) == span_id(submitted)
    assert parent_of(push_notice) == span_id(publish_notice)
    assert notice_acknowledged is not copy_acknowledged
    # The admin console's document page shows that trace's id.
    async with pki.channel(axis, pki.admin_certificate) as channel:
        timeline = await apb_grpc.AdminServiceStub(channel).GetDocumentTimeline(
            apb.GetDocumentTimelineRequest(document_uuid=document_uuid), timeout=30
        )
    assert timeline.trace_id == f"{trace_id:032x}"
    exporter.clear()  # the spans of the tests after this one need not be kept


async def test_an_acknowledgement_on_the_stream_is_in_the_documents_trace(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A DMS that acknowledges on its ReceiveStream: the acknowledgement's span continues the
    pushed copy's trace as Acknowledge's does."""
    exporter = span_exporter()
    sender, recipient = await register_agencies(2)
    async with clients[recipient].receive_stream() as stream:
        # Attached to its queue first: a copy published before the queue exists comes back
        # unroutable and is published again once declared (two publish spans, by design).
        await stream.subscribed()
        response = await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [recipient])
        )
        async with asyncio.timeout(15):
            item = await anext(aiter(stream))
            stream.acknowledge(item)
            await stream.confirmed(item.delivery.delivery_id)
    delivery_id = item.delivery.delivery_id

    async def acknowledged() -> list[ReadableSpan]:
        return [
            s
            for s in exporter.get_finished_spans()
            if s.name == "docaxis.acknowledge"
            and (s.attributes or {}).get("docaxis.item") == delivery_id
        ]

    (acknowledgement,) = await eventually(acknowledged)
    spans = exporter.get_finished_spans()
    submitted = one(spans, SUBMIT, document_uuid=response.receipt.document_uuid)
    publish_copy = one(spans, "docaxis.publish", item=delivery_id)
    assert parent_of(publish_copy) == span_id(submitted)
    assert parent_of(acknowledgement) == span_id(publish_copy)
    exporter.clear()


async def test_docaxis_continues_the_trace_of_a_dms_that_traces(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A DMS calling inside its own OpenTelemetry span: the client sends the span's context and
    docaxis's server span is its child, refusal included."""
    exporter = span_exporter()
    (agency,) = await register_agencies(1)
    dms_tracer = trace.get_tracer("a-dms")
    with dms_tracer.start_as_current_span("dms looks up") as dms, pytest.raises(NotFoundError):
        await clients[agency].track(str(uuid.uuid4()))
    (served,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "/docaxis.exchange.v1.ExchangeService/Track"
        and s.parent is not None
        and s.parent.span_id == dms.get_span_context().span_id
    ]
    assert served.context is not None
    assert served.context.trace_id == dms.get_span_context().trace_id
    exporter.clear()
