"""The acknowledging stream against a client that writes without reading: it stops reading the
client's requests once its unsent answers pile up, instead of storing and working on all."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.common.errors import DomainError, NotFoundError
from services.common.identity import HeaderCallerResolver
from services.common.metrics import AxisMetrics
from services.exchange.entrypoints.streams import (
    MAX_ACKNOWLEDGING,
    MAX_UNSENT,
    AcknowledgingStream,
    Pusher,
)
from services.exchange.service_layer.inbox_ports import InFlight
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import ItemKind
from services.exchange.service_layer.ports import Acknowledgement
from tests.waiting import eventually


class RefusingLifecycle:
    """acknowledge_items for ids nobody pushed: each refused NOT_FOUND, after a turn of the
    loop, as a database would answer later; counts the batches still being answered."""

    def __init__(self) -> None:
        self.answering = 0

    async def acknowledge_items(
        self, agency: str, items: Sequence[tuple[ItemKind, str]]
    ) -> list[Acknowledgement | DomainError]:
        self.answering += 1
        try:
            await asyncio.sleep(0)
            return [NotFoundError(f"no such item {item}") for _, item in items]
        finally:
            self.answering -= 1


async def test_a_client_that_acknowledges_without_reading_is_no_longer_read() -> None:
    lifecycle = RefusingLifecycle()
    stream = AcknowledgingStream(
        "000.00.00.H45",
        cast(Pusher, None),  # nothing is pushed in this test
        cast(LifecycleHandlers, lifecycle),
        cast(InFlight, None),  # refused items were never in flight
        HeaderCallerResolver(),
        AxisMetrics(),
        cast(Any, None),
    )
    sent = 0

    async def flood() -> AsyncIterator[pb.ReceiveStreamRequest]:
        nonlocal sent
        for _ in range(100_000):
            sent += 1
            yield pb.ReceiveStreamRequest(
                acknowledgements=[pb.AcknowledgeRequest(delivery_id=str(uuid.uuid4()))]
            )

    reader = asyncio.create_task(stream.read(flood()))

    async def stalled() -> bool:
        return stream.out.qsize() >= MAX_UNSENT and lifecycle.answering == 0

    await eventually(stalled)
    stopped_at = sent
    assert stopped_at <= MAX_UNSENT + MAX_ACKNOWLEDGING + 1
    assert stream.out.qsize() <= MAX_UNSENT + MAX_ACKNOWLEDGING

    answers = stream.responses()
    for _ in range(100):  # the client reads some answers: the stream reads on
        answer = await anext(answers)
        assert isinstance(answer, pb.ReceiveStreamResponse)  # no item pushed: answers only
        assert answer.acknowledged[0].error  # refused on its own, NOT_FOUND

    async def read_on() -> int:
        return sent

    await eventually(read_on, lambda now: now > stopped_at)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
