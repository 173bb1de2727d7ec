"""The bulk paths against a `docaxis run` process, through docaxis_client over mutual TLS: a
batch submission with one bad document among good ones, back-pressure from a slow DMS on the
acknowledging stream, acknowledgements on the stream, and a batch acknowledgement in pull mode.
(tests/integration/test_throughput_paths.py covers each case in detail in-process.)"""

from __future__ import annotations

import uuid

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import BatchDocument
from docaxis_client.errors import item_error
from docaxis_client.streams import item_id
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess
from tests.integration.test_throughput_paths import next_item, nothing_more

pytestmark = pytest.mark.e2e


async def test_batch_submit_back_pressure_stream_and_batch_acknowledgements(
    axis_process: AxisProcess,
) -> None:
    sender, recipient = await register(axis_process, 2)
    async with axis_process.client(sender) as s, axis_process.client(recipient) as r:
        bad = make_header(sender, [recipient])
        bad.subject = ""
        batch = [
            BatchDocument(f"c-{uuid.uuid4()}", bad if n == 1 else make_header(sender, [recipient]))
            for n in range(6)
        ]
        results = await s.submit_batch(batch)
        refused = item_error(results[1].error)
        assert refused is not None
        assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
        good = [results[0], *results[2:]]
        assert [item_error(x.error) for x in good] == [None] * 5
        accepted = sorted(x.response.receipt.document_uuid for x in good)

        # A slow DMS: a window of 2 holds the third copy back until one is acknowledged on
        # the stream; each acknowledgement is confirmed on the stream once durable.
        async with r.receive_stream(window=2) as stream:
            first, second = await next_item(stream), await next_item(stream)
            await nothing_more(stream)
            stream.acknowledge(first)
            assert item_error((await stream.confirmed(item_id(first))).error) is None
            third = await next_item(stream)
            await nothing_more(stream)
            stream.acknowledge(second, third)
            for item in (second, third):
                assert item_error((await stream.confirmed(item_id(item))).error) is None
        pushed = [first, second, third]

        # The rest in pull mode: listed, fetched and acknowledged in one call with an unknown
        # id among them, each answered on its own.
        listed = (await r.list_pending()).items
        assert len(listed) == 2
        for pending in listed:
            await r.fetch(pending)
        answers = await r.acknowledge_batch(
            [
                *(pb.AcknowledgeRequest(delivery_id=i.delivery_id) for i in listed),
                pb.AcknowledgeRequest(delivery_id=str(uuid.uuid4())),
            ]
        )
        assert [item_error(a.error) for a in answers[:2]] == [None, None]
        unknown = item_error(answers[2].error)
        assert unknown is not None
        assert unknown.reason == "NOT_FOUND"
        delivered = [p.delivery.document_uuid for p in pushed] + [i.document_uuid for i in listed]
        assert sorted(delivered) == accepted
        assert (await r.list_pending()).items == []
        async with r.receive_stream() as reopened:
            await nothing_more(reopened)
        for document_uuid in accepted:
            track = await s.track(document_uuid)
            (copy,) = track.recipients
            assert copy.state == pb.DELIVERY_STATE_ACKNOWLEDGED
            assert [x.code for x in copy.statuses] == [pb.STATUS_CODE_ARRIVED]
