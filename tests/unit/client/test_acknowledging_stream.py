"""The SDK's AcknowledgingStream against an in-process ReceiveStream that confirms every
acknowledgement at once: a long-lived stream keeps a bounded number of answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.streams import AcknowledgingStream


async def confirming_receive_stream(
    request_iterator: AsyncIterator[pb.ReceiveStreamRequest],
    context: grpc.aio.ServicerContext[pb.ReceiveStreamRequest, pb.ReceiveStreamResponse],
) -> AsyncIterator[pb.ReceiveStreamResponse]:
    """ReceiveStream that pushes nothing and confirms each acknowledgement once read."""
    async for request in request_iterator:
        if request.acknowledgements:
            yield pb.ReceiveStreamResponse(
                acknowledged=[pb.AcknowledgeResult(item=a) for a in request.acknowledgements]
            )


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.ExchangeServiceStub]:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        confirming_receive_stream,
        request_deserializer=pb.ReceiveStreamRequest.FromString,
        response_serializer=pb.ReceiveStreamResponse.SerializeToString,
    )
    service = pb.DESCRIPTOR.services_by_name["ExchangeService"].full_name
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {"ReceiveStream": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.ExchangeServiceStub(channel)
    await server.stop(None)


def _ack(delivery_id: str) -> pb.AcknowledgeRequest:
    return pb.AcknowledgeRequest(delivery_id=delivery_id)


async def test_only_the_latest_answers_are_kept(stub: pb_grpc.ExchangeServiceStub) -> None:
    """With keep_confirmed=3, after five confirmed acknowledgements the first two are
    forgotten (KeyError) and the last three still answer; memory stays bounded."""
    async with AcknowledgingStream(stub, [], window=10, keep_confirmed=3) as stream:
        ids = [f"d{index}" for index in range(5)]
        for delivery_id in ids:
            stream.acknowledge(_ack(delivery_id))
            answer = await stream.confirmed(delivery_id)
            assert answer.item.delivery_id == delivery_id
        for forgotten in ids[:2]:
            with pytest.raises(KeyError):
                await stream.confirmed(forgotten)
        for kept in ids[2:]:
            assert (await stream.confirmed(kept)).item.delivery_id == kept


async def test_an_id_acknowledged_again_awaits_its_new_answer(
    stub: pb_grpc.ExchangeServiceStub,
) -> None:
    """An id acknowledged a second time gets a new answer, and that answer is not dropped when
    its first one is forgotten."""
    async with AcknowledgingStream(stub, [], window=10, keep_confirmed=2) as stream:
        stream.acknowledge(_ack("a"))
        first = await stream.confirmed("a")
        stream.acknowledge(_ack("a"), _ack("b"))
        assert (await stream.confirmed("b")).item.delivery_id == "b"
        second = await stream.confirmed("a")
        assert second.item.delivery_id == "a"
        assert second is not first


async def test_iterating_a_stream_left_ends_at_once(stub: pb_grpc.ExchangeServiceStub) -> None:
    """Once its `async with` is left, a stream yields nothing more and does not wait (what its
    reader had queued, its CancelledError among it, is dropped there, so that no cycle keeps the
    stream)."""
    async with AcknowledgingStream(stub, [], window=10) as stream:
        stream.acknowledge(_ack("a"))
        await stream.confirmed("a")
    async with asyncio.timeout(5):
        assert [item async for item in stream] == []
