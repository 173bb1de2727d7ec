"""A closed ReceiveStream leaves no reference cycle on the server: its objects are freed by
reference counting as it ends, not by a full collection of the cyclic collector, which walks
every object the process holds with the event loop standing still (2.1-2.8 s after the 3,000
streams of the push circular closed: docs/perf/README.md, "The closed streams' garbage")."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections.abc import Iterator

import pytest

from docaxis_client.client import AgencyClient
from docaxis_client.streams import item_id
from services.exchange.entrypoints.streams import AcknowledgingStream as ServerStream
from tests.conftest import Register, make_header
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    """Only reference counting frees objects meanwhile (whatever a cycle holds stays)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def server_stream(agency: str) -> ServerStream:
    found = [o for o in gc.get_objects() if isinstance(o, ServerStream) and o.agency == agency]
    assert len(found) == 1
    return found[0]


async def test_a_closed_stream_is_freed_without_the_cyclic_collector(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    no_cyclic_collector: None,
) -> None:
    """A DMS receives two copies, acknowledges them on the stream and hangs up (the stream is
    cancelled: its push and read tasks and the call's handler end on CancelledError); the
    server's stream, its queue of answers and what it held are then gone with the collector
    off. On the old code the exceptions' tracebacks kept them in cycles (the stream's queue
    holding its tasks' exceptions, the call's wrapper naming the exception)."""
    sender, recipient = await register_agencies(2)
    for _ in range(2):
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    async with clients[recipient].receive_stream(window=10) as stream:
        items = []
        for _ in range(2):
            async with asyncio.timeout(15):
                items.append(await anext(aiter(stream)))
        stream.acknowledge(*items)
        for item in items:
            await stream.confirmed(item_id(item))
        # The stream itself has __slots__ without __weakref__: watched through its own queue.
        answers = weakref.ref(server_stream(recipient).out)

    async def freed() -> bool:
        return answers() is None

    await eventually(freed, within=10)


async def test_the_client_library_frees_a_stream_left_without_the_cyclic_collector(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    no_cyclic_collector: None,
) -> None:
    """The same on the DMS's side (docaxis_client): a stream left by its `async with` ends its
    reader on the call's CancelledError, which waited in the stream's queue of items with its
    traceback holding the reader's frame, which holds the stream: each stream of a DMS that
    reconnects stayed for a full collection (the push circular's 3,000 DMSs: 0.9-1.6 s)."""
    sender, recipient = await register_agencies(2)
    await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    async with clients[recipient].receive_stream(window=10) as stream:
        async with asyncio.timeout(15):
            item = await anext(aiter(stream))
        stream.acknowledge(item)
        await stream.confirmed(item_id(item))
    left = weakref.ref(stream)
    del stream

    async def freed() -> bool:
        return left() is None

    await eventually(freed, within=10)
