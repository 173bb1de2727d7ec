"""Receiving with acknowledgements on the stream itself (the ReceiveStream RPC); refusals of
single acknowledgements are read with docaxis_client.errors.item_error.

    async with client.receive_stream(window=64) as stream:
        await stream.subscribed()             # optional: attached, nothing addressed is missed
        async for item in stream:
            store(item)                       # durably, in the DMS
            stream.acknowledge(item)          # sent on the stream, confirmed when durable
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self, cast

import grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.errors import decoded_errors
from docaxis_client.receive import SUBSCRIBED_HEADER, ReceiveStreamError


def item_id(item: pb.ReceiveResponse | pb.AcknowledgeRequest) -> str:
    """The id a pushed item is acknowledged with (delivery id or notice id)."""
    if isinstance(item, pb.AcknowledgeRequest):
        return item.delivery_id or item.notice_id
    which = item.WhichOneof("item")
    if which == "delivery":
        return item.delivery.delivery_id
    if which == "status":
        return item.status.notice_id
    return item.recall.notice_id


def acknowledgement_of(item: pb.ReceiveResponse) -> pb.AcknowledgeRequest:
    if item.WhichOneof("item") == "delivery":
        return pb.AcknowledgeRequest(delivery_id=item.delivery.delivery_id)
    return pb.AcknowledgeRequest(notice_id=item_id(item))


class AcknowledgingStream:
    """One ReceiveStream call: iterate the pushed items, acknowledge each once stored.

    At most `window` items await an acknowledgement at once: the server pushes no more until
    some are acknowledged (set_window changes it). Acknowledgements are sent at once and
    confirmed by the server when durable: `confirmed(id)` waits for that. The answers of the
    last `keep_confirmed` confirmed acknowledgements stay readable with `confirmed`; older ones
    are forgotten, so that a stream open for months holds a bounded number of them.
    """

    def __init__(
        self,
        stub: pb_grpc.ExchangeServiceStub,
        metadata: Sequence[tuple[str, str]],
        window: int,
        keep_confirmed: int = 4096,
    ) -> None:
        self._requests: asyncio.Queue[pb.ReceiveStreamRequest | None] = asyncio.Queue()
        self._requests.put_nowait(pb.ReceiveStreamRequest(window=window))
        # The generated stub types the synchronous call; on an aio channel it is this.
        self._call = cast(
            "grpc.aio.StreamStreamCall[pb.ReceiveStreamRequest, pb.ReceiveStreamResponse]",
            stub.ReceiveStream(self._outgoing(), metadata=metadata),  # type: ignore[arg-type]
        )
        self._items: asyncio.Queue[pb.ReceiveResponse | BaseException | None] = asyncio.Queue()
        self._confirmations: dict[str, asyncio.Future[pb.AcknowledgeResult]] = {}
        # Confirmations that came, oldest first: the ones forgotten past keep_confirmed.
        self._answered: deque[tuple[str, asyncio.Future[pb.AcknowledgeResult]]] = deque()
        self._keep_confirmed = keep_confirmed
        self._reader = asyncio.create_task(self._read())

    async def _outgoing(self) -> AsyncIterator[pb.ReceiveStreamRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self._call:
                if response.HasField("item"):
                    self._items.put_nowait(response.item)
                for result in response.acknowledged:
                    self._answer(item_id(result.item), result)
            self._items.put_nowait(None)
        except BaseException as exc:
            self._items.put_nowait(exc)
            for waiting in self._confirmations.values():
                if waiting.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    # The DMS hung up itself: nothing to report on what nobody awaits.
                    waiting.cancel()
                else:
                    waiting.set_exception(exc)
            if not isinstance(exc, grpc.aio.AioRpcError | asyncio.CancelledError):
                raise

    def _answer(self, acknowledged_id: str, result: pb.AcknowledgeResult) -> None:
        waiting = self._confirmations.get(acknowledged_id)
        if waiting is None or waiting.done():
            return
        waiting.set_result(result)
        self._answered.append((acknowledged_id, waiting))
        while len(self._answered) > self._keep_confirmed:
            oldest, answer = self._answered.popleft()
            # Unless the id was acknowledged again since: its newer answer is the one kept.
            if self._confirmations.get(oldest) is answer:
                del self._confirmations[oldest]

    async def subscribed(self) -> None:
        """Returns once docaxis has attached the stream to the agency's queue (from then on
        everything addressed to the agency is pushed on it); raises the stream's error if it
        was refused instead (e.g. UNAUTHENTICATED)."""
        with decoded_errors():
            metadata = await self._call.initial_metadata()
        if metadata.get(SUBSCRIBED_HEADER) == "true":
            return
        # No header: the call ended without subscribing; its status says why.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await self._reader
        with decoded_errors():
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise grpc.aio.AioRpcError(
                    code,
                    await self._call.initial_metadata(),
                    await self._call.trailing_metadata(),
                    await self._call.details(),
                )
        raise ReceiveStreamError("the stream ended before it was subscribed")

    async def __aiter__(self) -> AsyncIterator[pb.ReceiveResponse]:
        while True:
            item = await self._items.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def acknowledge(self, *items: pb.ReceiveResponse | pb.AcknowledgeRequest) -> None:
        """Sends acknowledgements of pushed (or fetched) items on the stream."""
        requests = [
            i if isinstance(i, pb.AcknowledgeRequest) else acknowledgement_of(i) for i in items
        ]
        loop = asyncio.get_running_loop()
        for request in requests:
            waiting = self._confirmations.get(item_id(request))
            if waiting is None or waiting.done():
                self._confirmations[item_id(request)] = loop.create_future()
        self._requests.put_nowait(pb.ReceiveStreamRequest(acknowledgements=requests))

    async def confirmed(self, acknowledged_id: str) -> pb.AcknowledgeResult:
        """The server's answer to the latest acknowledgement of this id sent with
        `acknowledge`: durable (check `errors.item_error(result.error)` for a refusal).
        KeyError if this id was never acknowledged on the stream, or its answer is among
        those forgotten (more than `keep_confirmed` answers came after it)."""
        return await self._confirmations[acknowledged_id]

    def set_window(self, window: int) -> None:
        self._requests.put_nowait(pb.ReceiveStreamRequest(window=window))

    async def close(self) -> None:
        """Half-closes: the server answers the acknowledgements sent so far, then ends."""
        self._requests.put_nowait(None)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await self._reader

    def cancel(self) -> None:
        """Hangs up at once; unacknowledged items are pushed again later."""
        self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await self._reader
        # What the reader queued is never read now: its CancelledError among it, whose traceback
        # holds the reader's frame, which holds this stream. Left there, that cycle kept each
        # stream a DMS leaves for the cyclic collector's full collection. Iterating a stream
        # left ends at once (as after the server ended it), never waits.
        while not self._items.empty():
            self._items.get_nowait()
        self._items.put_nowait(None)
