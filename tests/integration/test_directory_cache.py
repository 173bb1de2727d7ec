"""Submit's kept directory reads (service_layer/directory_cache.py) on real Postgres: a change
committed through another connection decides the very next Submit, whether or not its
notification has been heard yet; the notification clears every listening process's cache; a
lost listening connection turns the cache off and it starts empty once listening again."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import grpc
import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from docaxis_client.client import AgencyClient
from docaxis_client.vietnam import today_in_vietnam
from services.bootstrap.directory_view import LocalDirectoryLookup
from services.common import postgres
from services.common.errors import RejectedError
from services.common.grpc_errors import error_details
from services.common.postgres_notifications import PostgresListener, PostgresSubscription
from services.directory.adapters.generation import CHANGED_CHANNEL, PostgresDirectoryGeneration
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_policies import PostgresSignaturePolicies
from services.directory.domain.codes import code_problem
from services.directory.domain.reorganisation import Reorganisation, ReorganisationKind
from services.directory.domain.signature_policy import SignatureForm, SignaturePolicy
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.domain.addresses import AddressState
from services.exchange.domain.model import Submission
from services.exchange.entrypoints.directory_changes import DirectoryChanges
from services.exchange.service_layer.directory_cache import DirectoryCache
from services.exchange.service_layer.handlers import ExchangeHandlers
from tests.conftest import Register, make_header, unique_code
from tests.unit.exchange.builders import header
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """This process's connections (the cache's side); changes go through the `directory`
    fixture's own pool, as another process's would."""
    pool = await postgres.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def kept_exchange(pool: asyncpg.Pool) -> tuple[ExchangeHandlers, DirectoryCache]:
    """An exchange whose Submit keeps its directory reads, with the cache on but no listener:
    no notification ever clears it, so only the generation checks keep it honest."""
    agencies = PostgresAgencies(pool)
    lookup = LocalDirectoryLookup(
        DirectoryHandlers(agencies),
        SignaturePolicyHandlers(PostgresSignaturePolicies(pool), agencies),
    )
    cache = DirectoryCache(lookup, PostgresDirectoryGeneration(pool))
    cache.set_listening(True)
    exchange = ExchangeHandlers(
        PostgresDocumentStore(pool), lookup, code_problem, kept_directory=cache
    )
    return exchange, cache


def a_submission(sender: str, recipients: list[str]) -> Submission:
    return Submission(
        f"c-{uuid.uuid4()}",
        header(recipients, sender=sender, number=str(uuid.uuid4().int % 10**6)),
        (),
    )


async def reorganise(
    directory: DirectoryHandlers, kind: ReorganisationKind, old: str, new: tuple[str, ...] = ()
) -> None:
    """Closes `old` from today (its last day was yesterday), through the directory's own pool."""
    await directory.record_reorganisation(
        Reorganisation(kind, today_in_vietnam(), (old,), new, note="sắp xếp")
    )


async def test_a_merge_committed_elsewhere_routes_the_next_submit_to_the_successor(
    pool: asyncpg.Pool, directory: DirectoryHandlers, register_agencies: Register
) -> None:
    """The recipient's resolution is kept (it was open); it merges into another agency through
    another connection; the next Submit, with no notification heard, is routed to the successor:
    its transaction found the generation moved, refused the stale decision, and it decided
    again. A cache trusted until notified would have routed it to the closed agency."""
    exchange, cache = kept_exchange(pool)
    sender, ward, commune = await register_agencies(3)
    first = await exchange.submit(sender, a_submission(sender, [ward]))
    assert [r.effective_recipient for r in first.receipt.routes] == [ward]
    assert cache.entries > 0
    await reorganise(directory, ReorganisationKind.MERGE, ward, (commune,))
    second = await exchange.submit(sender, a_submission(sender, [ward]))
    assert [(r.requested_recipient, r.effective_recipient) for r in second.receipt.routes] == [
        (ward, commune)
    ]


async def test_an_agency_closed_elsewhere_is_refused_at_once(
    pool: asyncpg.Pool, directory: DirectoryHandlers, register_agencies: Register
) -> None:
    """Kept open, closed without successor through another connection: the next Submit to it is
    refused INVALID_ADDRESSEE and nothing is stored."""
    exchange, _cache = kept_exchange(pool)
    sender, closing = await register_agencies(2)
    await exchange.submit(sender, a_submission(sender, [closing]))
    await reorganise(directory, ReorganisationKind.CLOSE, closing)
    refused = a_submission(sender, [closing])
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(sender, refused)
    assert failure.value.reason == "INVALID_ADDRESSEE"
    stored = await pool.fetchval(
        "SELECT count(*) FROM exchange.document WHERE consignment_id = $1", refused.consignment_id
    )
    assert stored == 0


async def test_a_sender_closed_by_sql_elsewhere_can_no_longer_send(
    pool: asyncpg.Pool, directory: DirectoryHandlers, database_url: str, register_agencies: Register
) -> None:
    """A change made outside docaxis (an operator's UPDATE in psql) bumps the generation too
    (the trigger, not the writing code, does it): the sender's kept resolution is not used."""
    exchange, _cache = kept_exchange(pool)
    sender, recipient = await register_agencies(2)
    await exchange.submit(sender, a_submission(sender, [recipient]))
    operator = await asyncpg.connect(database_url)
    try:
        await operator.execute(
            "UPDATE directory.agency SET valid_to = $2 WHERE code = $1",
            sender,
            today_in_vietnam() - dt.timedelta(days=1),
        )
    finally:
        await operator.close()
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(sender, a_submission(sender, [recipient]))
    assert failure.value.reason == "NOT_REGISTERED"


async def test_an_agency_registered_after_a_refusal_is_reached_at_once(
    pool: asyncpg.Pool, directory: DirectoryHandlers, register_agencies: Register
) -> None:
    """The other direction: a code kept as unknown (a Submit to it was refused) is registered
    through another connection; the next Submit to it is not refused from memory."""
    exchange, _cache = kept_exchange(pool)
    (sender,) = await register_agencies(1)
    newcomer = unique_code()
    with pytest.raises(RejectedError):
        await exchange.submit(sender, a_submission(sender, [newcomer]))
    await directory.register(
        agency_from_pb(
            dpb.Agency(
                code=newcomer,
                name="Cơ quan mới thành lập",
                kind=dpb.AGENCY_KIND_DEPARTMENT,
                valid_from="2019-01-01",
            )
        )
    )
    accepted = await exchange.submit(sender, a_submission(sender, [newcomer]))
    assert [r.effective_recipient for r in accepted.receipt.routes] == [newcomer]


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe)


class GatedNotifications:
    """Postgres notifications whose next subscription waits for `opened`: the test decides when
    a lost listener may listen again, so that a change can commit while nobody listens."""

    def __init__(self, database_url: str) -> None:
        self._notifications = PostgresListener(database_url).channel(CHANGED_CHANNEL)
        self.opened = asyncio.Event()
        self.opened.set()

    async def subscribe(self, on_payload: Callable[[str], None]) -> PostgresSubscription:
        await self.opened.wait()
        return await self._notifications.subscribe(on_payload)


async def test_a_change_is_heard_and_a_lost_listener_starts_empty(
    pool: asyncpg.Pool, directory: DirectoryHandlers, database_url: str, register_agencies: Register
) -> None:
    """A change committed elsewhere clears the cache (its NOTIFY heard); with the listening
    connection killed, the cache answers nothing from memory, and a change committed while it
    was away (its notification lost) is not answered from what was kept before."""
    agencies = PostgresAgencies(pool)
    cache = DirectoryCache(
        LocalDirectoryLookup(DirectoryHandlers(agencies)), PostgresDirectoryGeneration(pool)
    )
    # Registered before listening: their own notifications would clear the cache at moments
    # this test does not choose.
    first, second, successor = await register_agencies(3)
    notifications = GatedNotifications(database_url)
    stop = asyncio.Event()
    listener = asyncio.create_task(DirectoryChanges(notifications, cache).run(stop))
    try:
        await until(lambda: cache.listening)
        today = today_in_vietnam()

        async def state(code: str) -> AddressState:
            return (await cache.reads().resolve([code], today))[code].state

        assert await state(first) is AddressState.OPEN
        assert cache.entries == 1
        await reorganise(directory, ReorganisationKind.MERGE, first, (successor,))
        await until(lambda: cache.entries == 0)
        assert await state(first) is AddressState.CLOSED

        assert await state(second) is AddressState.OPEN
        notifications.opened.clear()
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = $1",
            f'LISTEN "{CHANGED_CHANNEL}"',
        )
        assert killed >= 1
        await until(lambda: not cache.listening)
        assert cache.entries == 0
        # Committed while nobody listens: its notification is lost.
        await reorganise(directory, ReorganisationKind.MERGE, second, (successor,))
        notifications.opened.set()
        await until(lambda: cache.listening)
        assert cache.entries == 0
        assert await state(second) is AddressState.CLOSED
    finally:
        notifications.opened.set()  # a subscription waiting at the gate would never end
        stop.set()
        await listener


async def test_the_cache_is_bounded(
    pool: asyncpg.Pool, directory: DirectoryHandlers, register_agencies: Register
) -> None:
    """At most `kept` resolutions: the least recently used go first."""
    cache = DirectoryCache(
        LocalDirectoryLookup(DirectoryHandlers(PostgresAgencies(pool))),
        PostgresDirectoryGeneration(pool),
        kept=3,
    )
    cache.set_listening(True)
    codes = await register_agencies(5)
    reads = cache.reads()
    for code in codes:
        await reads.resolve([code], today_in_vietnam())
    assert cache.entries == 3


async def test_a_policy_tightened_elsewhere_refuses_the_next_submit(
    axis: str,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    pool: asyncpg.Pool,
) -> None:
    """docaxis as served (its cache listening): a sender's documents pass under the default
    policy; an administrator's change made through another connection (the person signature
    must now be PAdES) refuses its very next manifest-signed Submit."""
    del axis  # served: the clients reach it
    sender, recipient = await register_agencies(2)
    await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    await PostgresSignaturePolicies(pool).save(
        SignaturePolicy(
            agency_code=sender, person_forms=frozenset({SignatureForm.PADES}), updated_by="test"
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    assert error_details(failure.value).reason.startswith("SIGNATURE")


async def test_a_merge_recorded_elsewhere_reroutes_the_served_submit(
    axis: str,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    directory: DirectoryHandlers,
) -> None:
    """docaxis as served: a recipient merged through another connection right after a Submit
    to it: the next Submit to it is routed to the successor."""
    del axis
    sender, ward, commune = await register_agencies(3)
    first = await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [ward]))
    assert [r.effective_recipient for r in first.receipt.routes] == [ward]
    await reorganise(directory, ReorganisationKind.MERGE, ward, (commune,))
    second = await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [ward]))
    assert [r.effective_recipient for r in second.receipt.routes] == [commune]
