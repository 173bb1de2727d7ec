"""Abuse limits on a real axis (mutual TLS, Postgres, RabbitMQ): an agency past its rate or its
Receive streams is refused with RESOURCE_EXHAUSTED and a RetryInfo, while another agency on the
same axis keeps being served, its stream delivering."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient, BatchDocument
from docaxis_client.errors import DocaxisError, ResourceExhaustedError
from docaxis_client.receive import ReceiveStream
from services.common.limits import LimitSettings, Rate
from tests.conftest import Register, make_header, served, settings_for
from tests.freezing_proxy import FreezingProxy
from tests.infra import SuiteServices
from tests.integration.gateway.conftest import gateway_served
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

# Buckets that do not refill within a test (one token every 1,000 s): what an agency may do is
# its burst, whatever the machine's speed.
SUBMIT_BURST = 3
OTHER_BURST = 40
MAX_STREAMS = 2
LIMITS = LimitSettings(
    submit_rate=Rate(per_s=0.001, burst=SUBMIT_BURST),
    other_rate=Rate(per_s=0.001, burst=OTHER_BURST),
    max_receive_streams=MAX_STREAMS,
    # A vanished DMS is found within about a second.
    keepalive_time_s=0.5,
    keepalive_timeout_s=0.5,
)


@pytest.fixture(scope="module")
async def limited_axis(
    database_url: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[str]:
    """An axis on the suite's database and broker with tight per-agency limits."""
    settings = dataclasses.replace(
        settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki), limits=LIMITS
    )
    async with served(settings) as address:
        yield address


@pytest.fixture
async def limited_clients(
    limited_axis: str, pki: SuitePki
) -> AsyncIterator[dict[str, AgencyClient]]:
    made: dict[str, AgencyClient] = {}

    class Clients(dict[str, AgencyClient]):
        def __missing__(self, code: str) -> AgencyClient:
            client = self[code] = made[code] = pki.client(limited_axis, code)
            return client

    yield Clients()
    for client in made.values():
        await client.close()


async def submit(client: AgencyClient, sender: str, recipients: list[str]) -> str:
    response = await client.submit(f"c-{uuid.uuid4()}", make_header(sender, recipients))
    return response.receipt.document_uuid


async def delivered(stream: ReceiveStream, within: float = 15) -> str:
    async with asyncio.timeout(within):
        response = await stream.read()
    return response.delivery.document_uuid


async def first_delivered(streams: list[ReceiveStream]) -> str:
    """The document the first of `streams` to be pushed something gets; the others none."""
    readers = [asyncio.create_task(delivered(stream)) for stream in streams]
    done, pending = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED, timeout=15)
    for task in pending:
        task.cancel()
    (document,) = [task.result() for task in done]
    return document


async def reopened(client: AgencyClient) -> ReceiveStream | None:
    """A new Receive stream, or None while the agency is at its cap."""
    stream = client.receive()
    try:
        await stream.subscribed()
    except ResourceExhaustedError:
        return None
    return stream


async def refusal(call: object) -> DocaxisError:
    with pytest.raises(DocaxisError) as refused:
        await call  # type: ignore[misc]
    return refused.value


def assert_rate_limited(error: DocaxisError, limit: str) -> None:
    assert isinstance(error, ResourceExhaustedError)
    assert error.reason == "RATE_LIMITED"
    assert error.reason_code == common_pb2.ERROR_REASON_RATE_LIMITED
    assert error.metadata["limit"] == limit
    assert error.retryable
    # The bucket refills one token every 1,000 s: the wait is of that order, never zero.
    assert error.retry_delay_s is not None
    assert 1 < error.retry_delay_s <= 1000


async def test_an_agency_past_its_submit_rate_is_refused_while_another_keeps_sending(
    register_agencies: Register, limited_clients: dict[str, AgencyClient]
) -> None:
    """A runaway sender gets its burst, then RATE_LIMITED with a RetryInfo; a well-behaved
    sender on the same axis submits, and its recipient's stream delivers, meanwhile."""
    flooder, polite, recipient = await register_agencies(3)
    stream = limited_clients[recipient].receive()
    await stream.subscribed()
    outcomes = await asyncio.gather(
        *(submit(limited_clients[flooder], flooder, [recipient]) for _ in range(SUBMIT_BURST + 5)),
        return_exceptions=True,
    )
    accepted = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if not isinstance(o, str)]
    assert len(accepted) == SUBMIT_BURST
    assert len(refused) == 5
    for error in refused:
        assert isinstance(error, DocaxisError)
        assert_rate_limited(error, "submit")
    # Still refused: the flooder's bucket is empty, not merely busy.
    assert_rate_limited(
        await refusal(submit(limited_clients[flooder], flooder, [recipient])), "submit"
    )

    document = await submit(limited_clients[polite], polite, [recipient])
    seen = {await delivered(stream) for _ in range(SUBMIT_BURST + 1)}
    assert seen == {*accepted, document}
    stream.cancel()


async def test_a_batch_costs_one_token_per_document(
    register_agencies: Register, limited_clients: dict[str, AgencyClient]
) -> None:
    """SubmitBatch cannot multiply the rate: a batch larger than what is left is refused
    whole, one that fits is accepted."""
    sender, recipient = await register_agencies(2)
    client = limited_clients[sender]

    def batch(size: int) -> list[BatchDocument]:
        return [
            BatchDocument(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
            for _ in range(size)
        ]

    await submit(client, sender, [recipient])
    left = SUBMIT_BURST - 1
    assert_rate_limited(await refusal(client.submit_batch(batch(left + 1))), "submit")
    results = await client.submit_batch(batch(left))
    assert [bool(result.error) for result in results] == [False] * left
    assert_rate_limited(await refusal(client.submit_batch(batch(1))), "submit")


async def test_an_agency_past_its_call_rate_is_refused_while_another_keeps_reading(
    register_agencies: Register, limited_clients: dict[str, AgencyClient]
) -> None:
    """Reads take from their own bucket: a Track flood is refused once past the burst, and
    neither the flooder's submissions nor another agency's reads are affected."""
    flooder, polite = await register_agencies(2)
    document = await submit(limited_clients[flooder], flooder, [polite])
    outcomes = await asyncio.gather(
        *(limited_clients[flooder].track(document) for _ in range(OTHER_BURST + 10)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 10
    for error in refused:
        assert isinstance(error, DocaxisError)
        assert_rate_limited(error, "other")
    await submit(limited_clients[flooder], flooder, [polite])  # the submit bucket is its own
    for _ in range(5):
        track = await limited_clients[polite].track(document)
        assert track.document_uuid == document


async def test_the_stream_past_the_cap_is_refused_and_the_open_ones_keep_delivering(
    register_agencies: Register, limited_clients: dict[str, AgencyClient]
) -> None:
    """A DMS that opens stream after stream gets CONCURRENCY_LIMITED past the cap; its open
    streams still deliver, another agency's stream opens and delivers, and closing one of the
    flooder's streams frees its slot."""
    sender, flooder, polite = await register_agencies(3)
    streams = [limited_clients[flooder].receive() for _ in range(MAX_STREAMS)]
    for stream in streams:
        await stream.subscribed()
    refused = await refusal(limited_clients[flooder].receive().subscribed())
    assert isinstance(refused, ResourceExhaustedError)
    assert refused.reason == "CONCURRENCY_LIMITED"
    assert refused.reason_code == common_pb2.ERROR_REASON_CONCURRENCY_LIMITED
    assert refused.metadata["limit"] == "receive_streams"
    assert refused.retryable
    assert refused.retry_delay_s is not None
    assert refused.retry_delay_s > 0

    polite_stream = limited_clients[polite].receive()
    await polite_stream.subscribed()
    to_flooder = await submit(limited_clients[sender], sender, [flooder])
    to_polite = await submit(limited_clients[sender], sender, [polite])
    assert await delivered(polite_stream) == to_polite
    # The broker hands the flooder's copy to one of its open streams.
    assert await first_delivered(streams) == to_flooder

    streams[0].cancel()
    # Each attempt takes a token of the flooder's "other" bucket: poll slowly.
    again = await eventually(lambda: reopened(limited_clients[flooder]), within=10, every=0.2)
    assert again is not None
    for stream in [*streams, again, polite_stream]:
        stream.cancel()


async def test_a_vanished_dms_frees_its_stream_slot_once_keepalive_finds_it(
    register_agencies: Register,
    limited_axis: str,
    pki: SuitePki,
    limited_clients: dict[str, AgencyClient],
) -> None:
    """A DMS at its stream cap whose machine vanishes (its connection goes silent, no FIN)
    would hold its slots for ever without keepalive: the server's unanswered ping ends the
    connection and its stream, and the agency's next DMS can subscribe. Meanwhile another
    agency's stream keeps delivering."""
    sender, flooder, polite = await register_agencies(3)
    proxy = FreezingProxy(limited_axis)
    async with proxy.running() as relayed:
        vanishing = pki.client(relayed, flooder)
        try:
            lost = vanishing.receive()
            await lost.subscribed()
            held = limited_clients[flooder].receive()
            await held.subscribed()
            assert await reopened(limited_clients[flooder]) is None  # at the cap
            polite_stream = limited_clients[polite].receive()
            await polite_stream.subscribed()

            proxy.freeze()
            to_polite = await submit(limited_clients[sender], sender, [polite])
            assert await delivered(polite_stream) == to_polite
            again = await eventually(
                lambda: reopened(limited_clients[flooder]), within=15, every=0.3
            )
            assert again is not None
            to_flooder = await submit(limited_clients[sender], sender, [flooder])
            assert await first_delivered([held, again]) == to_flooder
            for stream in (held, again, polite_stream):
                stream.cancel()
        finally:
            await vanishing.close()


async def test_rest_calls_share_the_agency_allowance_and_get_429_with_retry_after(
    register_agencies: Register, limited_axis: str, pki: SuitePki
) -> None:
    """Through the gateway an agency draws on the same buckets as over gRPC (the gateway acts
    on its behalf): past its burst it gets 429 problem+json RATE_LIMITED with Retry-After,
    while another agency's REST calls are answered."""
    flooder, polite = await register_agencies(2)
    async with (
        gateway_served(limited_axis, pki) as gateway,
        gateway.client(gateway.agency_pair(flooder)) as flooding,
        gateway.client(gateway.agency_pair(polite)) as calm,
    ):
        answers = [await flooding.get("/v1/inbox") for _ in range(OTHER_BURST + 3)]
        assert [a.status_code for a in answers].count(200) == OTHER_BURST
        refused = answers[-1]
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 < int(refused.headers["retry-after"]) <= 1000
        body = refused.json()
        assert (body["reason"], body["retryable"]) == ("RATE_LIMITED", True)
        assert body["metadata"]["limit"] == "other"
        for _ in range(5):
            answer = await calm.get("/v1/inbox")
            assert answer.status_code == 200
            assert answer.json().get("items", []) == []


async def test_a_recipient_that_never_reads_its_stream_holds_up_no_one_else(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A DMS that opens ReceiveStream and then never reads nor acknowledges is pushed its
    window and no more; the rest of its mail waits in its own queue, another agency's stream
    delivers everything meanwhile, and once the hog hangs up nothing of its mail is lost."""
    sender, hog, polite = await register_agencies(3)
    window = 2

    async def opening() -> AsyncIterator[pb.ReceiveStreamRequest]:
        yield pb.ReceiveStreamRequest(window=window)
        await asyncio.Event().wait()  # never anything more

    hog_call: Any = clients[hog].exchange.ReceiveStream(opening())
    async with asyncio.timeout(15):
        await hog_call.initial_metadata()  # subscribed; nothing is ever read after this
    polite_stream = clients[polite].receive()
    await polite_stream.subscribed()

    for_hog = [await submit(clients[sender], sender, [hog]) for _ in range(6)]
    for_polite = [await submit(clients[sender], sender, [polite]) for _ in range(3)]
    assert {await delivered(polite_stream) for _ in for_polite} == set(for_polite)

    async def pushed_to_hog() -> int:
        tracks = [await clients[sender].track(document) for document in for_hog]
        return sum(track.recipients[0].push_count for track in tracks)

    # The window fills, and stays full: no acknowledgement ever comes.
    assert await eventually(pushed_to_hog, lambda count: count >= window) == window
    document = await submit(clients[sender], sender, [polite])
    assert await delivered(polite_stream) == document
    assert await pushed_to_hog() == window

    hog_call.cancel()
    reader = clients[hog].receive()
    seen = set()
    for _ in for_hog:
        async with asyncio.timeout(15):
            item = (await reader.read()).delivery
        seen.add(item.document_uuid)
        await clients[hog].acknowledge(item.delivery_id)
    assert seen == set(for_hog)
    reader.cancel()
    polite_stream.cancel()


async def test_an_upload_past_the_rate_is_refused_with_the_typed_error(
    register_agencies: Register, limited_clients: dict[str, AgencyClient]
) -> None:
    """The client-streaming calls (uploads) are refused like the others: RESOURCE_EXHAUSTED
    RATE_LIMITED, not a broken stream, and nothing is stored; another agency uploads."""
    flooder, polite = await register_agencies(2)
    client = limited_clients[flooder]
    data = b"%PDF-1.7 " + b"x" * (6 * 1024 * 1024)
    outcomes = await asyncio.gather(
        *(client.upload_stream(data) for _ in range(OTHER_BURST + 3)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 3
    for error in refused:
        assert isinstance(error, DocaxisError)
        assert_rate_limited(error, "other")
    upload = await limited_clients[polite].upload_stream(data)
    assert upload.size == len(data)
