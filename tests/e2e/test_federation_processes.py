"""Federation with every hub a `docaxis run` process (province A, province B, national), each
with its own database and broker virtual host, province A with two replicas: kill -9 of the
national hub in the middle of a stream of documents from A to B (and of B's statuses back), then
a restart; kill -9 of the A replica whose forwarder to the national hub leads, the other taking
over. Nothing is lost and nothing is duplicated at the recipient, and the sender gets each status
once, in order: the test counts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import make_header
from tests.e2e.processes import AxisProcess, free_port
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

COMMUNE_A = Agency("000.05.00.H45", "Xã Gửi A", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
DEPARTMENT_B = Agency("000.00.15.H46", "Sở Nhận B", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))
DOCUMENTS = 24
KILLED_AFTER = 8
PEERS = {
    "province-a": ("national",),
    "province-b": ("national",),
    "national": ("province-a", "province-b"),
}
REPLICATED = "province-a"


@pytest.fixture
async def hubs(
    services: SuiteServices, tmp_path: Path, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[dict[str, tuple[AxisProcess, DirectoryHandlers]]]:
    addresses = {code: f"127.0.0.1:{free_port()}" for code in PEERS}
    async with AsyncExitStack() as stack:
        started: dict[str, tuple[AxisProcess, DirectoryHandlers]] = {}
        for code, peers in PEERS.items():
            url = await postgres.recreate_database(
                services.database_url, "docaxis_e2e_fed_" + code.replace("-", "_")
            )
            await migrate(url)
            pool = await postgres.create_pool(url, min_size=1, max_size=2)
            stack.push_async_callback(pool.close)
            peer = pki.write_pair(f"e2e-peer-{code}", pki.ca.issue_peer(code))
            directory = DirectoryHandlers(
                PostgresAgencies(pool), hubs=PostgresHubRoutes(pool), own_hub=code
            )
            amqp_url = services.amqp_vhost(f"e2e-fed-{code}")
            # Province A's second replica: the same database and broker, an address of its own.
            for name in (code, f"{code}-2") if code == REPLICATED else (code,):
                process = AxisProcess(
                    url,
                    amqp_url,
                    tmp_path,
                    ledger_key_file,
                    name=name,
                    pki=pki,
                    address=addresses[code] if name == code else None,
                    extra_env={
                        "DOCAXIS_HUB_CODE": code,
                        "DOCAXIS_PEERS": ",".join(f"{p}={addresses[p]}" for p in peers),
                        "DOCAXIS_PEER_CERT_FILE": str(peer.certificate),
                        "DOCAXIS_PEER_KEY_FILE": str(peer.key),
                        "DOCAXIS_PEER_SYNC_INTERVAL_S": "0.3",
                        "DOCAXIS_PEER_MAX_BACKOFF_S": "1",
                    },
                )
                started[name] = (process, directory)
        for process, _ in started.values():
            stack.push_async_callback(_stop, process)
        # All four at once (they took 10.5 s one after the other): a hub reaches its peers at
        # the addresses fixed above whenever they come up, as it does after a restart.
        async with asyncio.TaskGroup() as starting:
            for process, _ in started.values():
                starting.create_task(process.start())
        yield started


async def _stop(process: AxisProcess) -> None:
    if process.process is not None and process.process.poll() is None:
        await process.terminate()


def _leads_forwarder(process: AxisProcess, peer: str) -> bool:
    """Whether the process's last word on its forwarder to `peer` was that it leads."""
    said = [
        line
        for line in process.logs().splitlines()
        if '"leadership_changed"' in line and f'"forward_{peer}"' in line
    ]
    return bool(said) and '"leading": true' in said[-1]


async def _routed(hubs: dict[str, tuple[AxisProcess, DirectoryHandlers]]) -> None:
    """A's and B's agencies registered, and every hub routing between them."""
    a_directory, b_directory = hubs["province-a"][1], hubs["province-b"][1]
    national_directory = hubs["national"][1]
    await a_directory.register(COMMUNE_A)
    await b_directory.register(DEPARTMENT_B)
    for directory in (a_directory, b_directory):
        await directory.set_route("*", "national", "test")

    async def routed() -> bool:
        (there,) = await a_directory.resolve([DEPARTMENT_B.code], today_in_vietnam())
        (back,) = await b_directory.resolve([COMMUNE_A.code], today_in_vietnam())
        # The national hub must know both agencies too (from its pull of A's and B's
        # directories): until it does, it refuses what A forwards as INVALID_ADDRESSEE.
        across = await national_directory.resolve(
            [DEPARTMENT_B.code, COMMUNE_A.code], today_in_vietnam()
        )
        return (
            there.hub == "national"
            and back.hub == "national"
            and [entry.hub for entry in across] == ["province-b", "province-a"]
        )

    await eventually(routed, within=30)


# What B's department reports on each document after acknowledging it (01), in this order.
REPORTED = (pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_PROCESSING)


async def _send_and_count(
    sending: AxisProcess,
    receiving: AxisProcess,
    fault: Callable[[int], Awaitable[None]],
    *,
    statuses_back: bool = True,
) -> None:
    """DOCUMENTS documents from A to B, `fault(index)` before each; every one reaches B once,
    and (`statuses_back`) B's statuses on each (01 at its acknowledgement, then 03 and 05)
    reach A's commune once each and in that order."""
    sender, recipient = sending.client(COMMUNE_A.code), receiving.client(DEPARTMENT_B.code)
    received: list[tuple[str, str]] = []  # (document number, delivery id), as pushed
    sent: dict[str, str] = {}  # document number: uuid at A
    notified: dict[str, list[int]] = {}  # document uuid at A: status codes, as pushed to A

    async def receive() -> None:
        stream = recipient.receive()
        try:
            while True:
                response = await stream.read()
                delivery = response.delivery
                received.append((delivery.header.code.number, delivery.delivery_id))
                await recipient.acknowledge(delivery.delivery_id)
                start = dt.datetime.now(dt.UTC)
                for offset, code in enumerate(REPORTED, 1):
                    await recipient.report_status(
                        delivery.delivery_id,
                        code,
                        status_id=f"{delivery.delivery_id}-{code}",
                        occurred_at=start + dt.timedelta(milliseconds=offset),
                    )
        finally:
            stream.cancel()

    async def statuses() -> None:
        stream = sender.receive()
        try:
            while True:
                response = await stream.read()
                notice = response.status
                notified.setdefault(notice.document_uuid, []).append(notice.status.code)
                await sender.acknowledge_notice(notice.notice_id)
        finally:
            stream.cancel()

    tasks = [asyncio.create_task(receive()), asyncio.create_task(statuses())]
    try:
        for index in range(DOCUMENTS):
            await fault(index)
            header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
            response = await sender.submit(f"c-{uuid.uuid4()}", header)
            sent[header.code.number] = response.receipt.document_uuid

        def all_in(_: object) -> bool:
            done = {number for number, _ in received} >= set(sent)
            return done and (
                not statuses_back
                or all(
                    len(notified.get(origin, [])) >= 1 + len(REPORTED) for origin in sent.values()
                )
            )

        await eventually(lambda: asyncio.sleep(0, received), all_in, within=120)
        await asyncio.sleep(2)  # a bounded look for late duplicates (asserted below)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()
        await recipient.close()
    copies: dict[str, set[str]] = {}
    for number, delivery_id in received:
        copies.setdefault(number, set()).add(delivery_id)
    assert sorted(copies) == sorted(sent)  # nothing lost, nothing from elsewhere
    assert all(len(ids) == 1 for ids in copies.values()), copies  # one copy each at B
    if statuses_back:
        # Each status once, in the order B's department reported it, whatever the hops went
        # through.
        wanted = [pb.STATUS_CODE_ARRIVED, *REPORTED]
        got = {origin: notified.get(origin) for origin in sent.values()}
        assert got == dict.fromkeys(sent.values(), wanted)


async def test_kill_9_of_the_national_hub_loses_and_duplicates_nothing(
    hubs: dict[str, tuple[AxisProcess, DirectoryHandlers]],
) -> None:
    await _routed(hubs)
    national = hubs["national"][0]

    async def kill_and_restart_national(index: int) -> None:
        if index == KILLED_AFTER:
            national.kill()  # mid-stream: A keeps accepting and storing
        if index == 2 * KILLED_AFTER:
            await national.start()

    await _send_and_count(hubs["province-a"][0], hubs["province-b"][0], kill_and_restart_national)
    logs = hubs["province-a"][0].logs() + hubs["province-a-2"][0].logs()
    assert "peer_unreachable" in logs  # the outage was real and was ridden out


async def test_kill_9_of_the_replica_leading_a_forwarder_hands_it_to_the_other(
    hubs: dict[str, tuple[AxisProcess, DirectoryHandlers]],
) -> None:
    """One forwarder per peer for the whole axis: of A's two replicas one forwards to the
    national hub; killed mid-stream, the other takes the forwarder over and what was queued or
    in flight reaches B once."""
    await _routed(hubs)
    replicas = [hubs["province-a"][0], hubs["province-a-2"][0]]
    await eventually(
        lambda: asyncio.sleep(0, [_leads_forwarder(r, "national") for r in replicas]),
        lambda leading: sorted(leading) == [False, True],
        within=30,
    )
    leader, other = sorted(replicas, key=lambda r: not _leads_forwarder(r, "national"))

    async def kill_the_leader(index: int) -> None:
        if index == KILLED_AFTER:
            leader.kill()

    # The national hub reaches A at the first replica's address only: with that one killed, B's
    # statuses cannot come back (documents still go out through the other).
    addressed = hubs["province-a"][0]
    await _send_and_count(
        other, hubs["province-b"][0], kill_the_leader, statuses_back=leader is not addressed
    )
    assert _leads_forwarder(other, "national"), other.logs()[-3000:]
