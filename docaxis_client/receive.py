"""An agency's push stream (Receive), which says when it is subscribed.

docaxis sends the stream's initial metadata, with ``x-docaxis-subscribed: true``, once the
stream is attached to the agency's queue: from then on everything addressed to the agency is
pushed on it. A DMS (or a test) that must not miss the first push awaits ``subscribed()``
before doing what causes it, instead of sleeping and hoping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.errors import decoded_errors

# Initial metadata of a Receive stream that is attached to its agency's queue.
SUBSCRIBED_HEADER = "x-docaxis-subscribed"

ReceiveCall = grpc.aio.UnaryStreamCall[pb.ReceiveRequest, pb.ReceiveResponse]


class ReceiveStreamError(Exception):
    """The stream ended before docaxis said it was subscribed."""


class ReceiveStream:
    """Deliveries, status notices and recall notices pushed to this agency, oldest first.

    Iterate it (``async for item in stream``) or ``read()`` one item at a time; acknowledge
    each item with ``AgencyClient.acknowledge`` / ``acknowledge_notice`` or it is pushed again
    on the next stream. ``cancel()`` hangs up. Refusals raise typed ``DocaxisError``s.
    """

    def __init__(self, call: ReceiveCall) -> None:
        self.call = call

    async def subscribed(self) -> None:
        """Returns once docaxis has attached the stream to the agency's queue; raises the
        stream's error if it was refused (e.g. UNAUTHENTICATED) instead."""
        with decoded_errors():
            metadata = await self.call.initial_metadata()
        if metadata.get(SUBSCRIBED_HEADER) == "true":
            return
        # No header: the call ended without subscribing; reading surfaces its status.
        with decoded_errors():
            item = await self.call.read()
        raise ReceiveStreamError(
            "the stream ended before it was subscribed"
            if item is grpc.aio.EOF
            else "docaxis pushed before saying the stream was subscribed (an older server?)"
        )

    async def read(self) -> pb.ReceiveResponse:
        """The next pushed item; ReceiveStreamError when the stream has ended."""
        with decoded_errors():
            item = await self.call.read()
        if not isinstance(item, pb.ReceiveResponse):  # grpc.aio.EOF
            raise ReceiveStreamError("the stream has ended")
        return item

    async def __aiter__(self) -> AsyncIterator[pb.ReceiveResponse]:
        with decoded_errors():
            async for item in self.call:
                yield item

    def cancel(self) -> bool:
        """Hangs up; unacknowledged items are pushed again on the next stream."""
        return self.call.cancel()
