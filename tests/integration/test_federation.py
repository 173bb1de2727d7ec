"""Federation on real Postgres, RabbitMQ and gRPC with mutual TLS: three hubs on loopback
(province A, province B, national), each with its own database and broker virtual host. Each
pulls its peers' directories through the delta feed, so A resolves B's codes, merged ones
included, and mail for them is routed to the next hop instead of refused."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.receive import ReceiveStream
from docaxis_client.trust.receipts import TransportReceipt
from gateway.edxml import read_document
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam
from services.directory.domain.reorganisation import (
    AddressState,
    Reorganisation,
    ReorganisationKind,
)
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import make_header, served, settings_for
from tests.e2e.processes import free_port
from tests.infra import SuiteServices
from tests.integration.gateway.conftest import gateway_served
from tests.integration.test_exchange_flow import next_delivery, no_delivery
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

COMMUNE_A = Agency("000.01.00.H45", "Xã Thử A", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
DEPARTMENT_B = Agency("000.00.13.H46", "Sở Y tế B", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))
OLD_WARD_B = Agency("000.02.00.H46", "Phường cũ B", AgencyKind.WARD, dt.date(2019, 1, 1))
NEW_WARD_B = Agency("000.03.00.H46", "Phường mới B", AgencyKind.WARD, dt.date(2025, 7, 1))
MINISTRY = Agency("000.00.00.G99", "Bộ Thử", AgencyKind.MINISTRY, dt.date(2019, 1, 1))
# A's ward that a reorganisation merges into B's department while mail waits for it.
WARD_A = Agency("000.05.00.H45", "Phường A sáp nhập", AgencyKind.WARD, dt.date(2019, 1, 1))


@dataclass(frozen=True, slots=True)
class Hub:
    code: str
    address: str
    database_url: str
    directory: DirectoryHandlers
    pool: asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Federation:
    a: Hub
    b: Hub
    national: Hub


@pytest.fixture(scope="module")
async def federation(
    services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[Federation]:
    """Province A and B each peer with the national hub only; the national hub with both."""
    ports = {code: free_port() for code in ("province-a", "province-b", "national")}
    peers = {
        "province-a": ("national",),
        "province-b": ("national",),
        "national": ("province-a", "province-b"),
    }
    async with AsyncExitStack() as stack:
        hubs: dict[str, Hub] = {}
        for code, port in ports.items():
            name = "docaxis_fed_" + code.replace("-", "_")
            url = await postgres.recreate_database(services.database_url, name)
            await migrate(url)
            peer_pair = pki.write_pair(f"peer-{code}", pki.ca.issue_peer(code))
            settings = dataclasses.replace(
                settings_for(
                    url,
                    services.amqp_vhost(f"fed-{code}"),
                    ledger_key_file,
                    f"127.0.0.1:{port}",
                    pki=pki,
                ),
                hub_code=code,
                peers=tuple((peer, f"127.0.0.1:{ports[peer]}") for peer in peers[code]),
                peer_sync_interval_s=0.2,
                reroute_interval_s=0.2,
                peer_cert_file=str(peer_pair.certificate),
                peer_key_file=str(peer_pair.key),
            )
            pool = await postgres.create_pool(url, min_size=1, max_size=2)
            stack.push_async_callback(pool.close)
            directory = DirectoryHandlers(
                PostgresAgencies(pool), hubs=PostgresHubRoutes(pool), own_hub=code
            )
            address = await stack.enter_async_context(served(settings))
            hubs[code] = Hub(code, address, url, directory, pool)
        a, b, national = hubs["province-a"], hubs["province-b"], hubs["national"]
        await a.directory.register(COMMUNE_A)
        await a.directory.register(WARD_A)
        for agency in (DEPARTMENT_B, OLD_WARD_B, NEW_WARD_B):
            await b.directory.register(agency)
        await national.directory.register(MINISTRY)
        await b.directory.record_reorganisation(
            Reorganisation(
                ReorganisationKind.MERGE,
                dt.date(2025, 7, 1),
                (OLD_WARD_B.code,),
                (NEW_WARD_B.code,),
            )
        )
        for hub in (a, b):
            await hub.directory.set_route("*", "national", "test")
        yield Federation(a, b, national)


async def test_a_province_resolves_another_provinces_codes_after_a_delta_sync(
    federation: Federation,
) -> None:
    """A learns B's agencies through the national hub's feed: B's department and B's merged
    ward (along its successor) route to the national hub, the next hop."""
    a = federation.a
    today = today_in_vietnam()

    async def resolved() -> dict[str, tuple[str | None, str | None]]:
        found = await a.directory.resolve(
            [DEPARTMENT_B.code, OLD_WARD_B.code, MINISTRY.code], today
        )
        return {r.code: (r.effective, r.hub) for r in found}

    answer = await eventually(
        resolved, lambda r: r[OLD_WARD_B.code] == (NEW_WARD_B.code, "national"), within=20
    )
    assert answer == {
        DEPARTMENT_B.code: (DEPARTMENT_B.code, "national"),
        OLD_WARD_B.code: (NEW_WARD_B.code, "national"),
        MINISTRY.code: (MINISTRY.code, "national"),
    }
    # The national hub knows which province serves each; A's own commune stays A's.
    n = await federation.national.directory.resolve([DEPARTMENT_B.code, COMMUNE_A.code], today)
    assert [(r.effective, r.hub) for r in n] == [
        (DEPARTMENT_B.code, "province-b"),
        (COMMUNE_A.code, "province-a"),
    ]
    (own,) = await a.directory.resolve([COMMUNE_A.code], today)
    assert own.hub is None

    # The pulls are directory facts in each hub's ledger (sequenced from staging).
    async def pulled() -> list[str]:
        rows = await a.pool.fetch(
            "SELECT convert_from(body, 'UTF8') AS body FROM ledger.entry "
            "WHERE entry_type = 'directory'"
        )
        return [row["body"] for row in rows if '"pulled"' in row["body"]]

    (fact,) = (await eventually(pulled))[:1]
    assert DEPARTMENT_B.code in fact


async def test_mail_for_another_hubs_agency_is_routed_to_the_next_hop(
    federation: Federation, pki: SuitePki
) -> None:
    """A submission from A's commune to B's department is accepted (not INVALID_ADDRESSEE); its
    copy waits for the national hub, and the routing fact names the hop."""
    a = federation.a

    async def known() -> bool:
        (r,) = await a.directory.resolve([DEPARTMENT_B.code], today_in_vietnam())
        return r.hub == "national"

    await eventually(known, within=20)
    client: AgencyClient = pki.client(a.address, COMMUNE_A.code)
    try:
        response = await client.submit(
            f"c-{uuid.uuid4()}", make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
        )
    finally:
        await client.close()
    (route,) = response.receipt.routes
    assert route.effective_recipient == DEPARTMENT_B.code
    via = await a.pool.fetchval(
        "SELECT via_hub FROM exchange.delivery WHERE id = $1", uuid.UUID(route.delivery_id)
    )
    assert via == "national"


async def _known_everywhere(federation: Federation) -> None:
    async def known() -> bool:
        (r,) = await federation.a.directory.resolve([DEPARTMENT_B.code], today_in_vietnam())
        (back,) = await federation.b.directory.resolve([COMMUNE_A.code], today_in_vietnam())
        return r.hub == "national" and back.hub == "national"

    await eventually(known, within=20)


def _statuses(track: pb.TrackResponse) -> list[str]:
    return [pb.StatusCode.Name(s.code) for s in track.recipients[0].statuses]


async def test_a_commune_in_a_reaches_a_department_in_b_through_the_national_hub(
    federation: Federation, pki: SuitePki
) -> None:
    """Delivered once at B; B's statuses and the answer to A's recall come back to A along the
    same hops; each hub's ledger holds its hop and the document carries the trace of every hub;
    A keeps the national hub's signed receipt of the hand-over."""
    a, national, b = federation.a, federation.national, federation.b
    await _known_everywhere(federation)
    sender = pki.client(a.address, COMMUNE_A.code)
    recipient = pki.client(b.address, DEPARTMENT_B.code)
    try:
        stored = await sender.upload_stream(b"%PDF-1.7 federated attachment")
        attachment = stored.ref("cong-van.pdf", "application/pdf")
        header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
        response = await sender.submit(f"c-{uuid.uuid4()}", header, [attachment])
        origin = response.receipt.document_uuid
        stream = recipient.receive()
        delivery = await next_delivery(stream, within=30)
        while delivery.header.code.number != header.code.number:  # an earlier test's mail
            await recipient.acknowledge(delivery.delivery_id)
            delivery = await next_delivery(stream, within=30)
        assert delivery.header.sender == COMMUNE_A.code
        assert [a.sha256 for a in delivery.attachments] == [attachment.sha256]
        await recipient.acknowledge(delivery.delivery_id)
        await no_delivery(stream, within=1.0)
        stream.cancel()
        # B's copy came through the national hub: the trace names every hub, oldest first.
        trace = await b.pool.fetchval(
            "SELECT trace::text FROM exchange.document WHERE origin_uuid = $1", uuid.UUID(origin)
        )
        assert [hop["hub"] for hop in json.loads(trace)] == ["province-a", "national", "province-b"]
        await recipient.report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=f"s-{uuid.uuid4()}"
        )

        async def tracked() -> pb.TrackResponse:
            return await sender.track(origin)

        track = await eventually(
            tracked, lambda t: "STATUS_CODE_ACCEPTED" in _statuses(t), within=30
        )
        assert _statuses(track)[:2] == ["STATUS_CODE_ARRIVED", "STATUS_CODE_ACCEPTED"]
        # The recall travels to B, B agrees, and the answer comes back to A.
        await sender.recall(origin, "gửi nhầm", [DEPARTMENT_B.code])
        stream = recipient.receive()
        async with asyncio.timeout(30):
            item = await stream.read()
        assert item.WhichOneof("item") == "recall"
        await recipient.acknowledge_notice(item.recall.notice_id)
        await recipient.report_status(
            delivery.delivery_id, pb.STATUS_CODE_RECALL_AGREED, status_id=f"s-{uuid.uuid4()}"
        )
        stream.cancel()
        track = await eventually(
            tracked, lambda t: "STATUS_CODE_RECALL_AGREED" in _statuses(t), within=30
        )
        assert _statuses(track)[-1] == "STATUS_CODE_RECALL_AGREED"
    finally:
        await sender.close()
        await recipient.close()
    # A keeps the national hub's signed receipt of the hand-over.
    hop_receipt = await a.pool.fetchval(
        "SELECT hop_receipt FROM exchange.delivery WHERE document_uuid = $1", uuid.UUID(origin)
    )
    assert TransportReceipt.from_json(hop_receipt).recipient == DEPARTMENT_B.code
    # Every hub's ledger records its hop: forwarded out at A and the national hub, forwarded in
    # at the national hub and B.
    for hub, wanted in (
        (a, {"forwarded"}),
        (national, {"forwarded_in", "forwarded"}),
        (b, {"forwarded_in"}),
    ):
        found = await eventually(
            lambda hub=hub: hop_events(hub, origin),  # type: ignore[misc]
            lambda events, wanted=wanted: wanted <= events,  # type: ignore[misc]
            within=20,
        )
        assert wanted <= found


async def test_the_recipients_edxml_names_every_hub_and_both_ends_of_each_hop_log_it(
    federation: Federation, pki: SuitePki
) -> None:
    """B's department, an edXML DMS behind B's gateway, gets A's document with one TraceHeader
    per system that handled it: the sender, then A, the national hub and B, oldest first. Each
    hand-over is in the ledgers of both hubs, the sending one's entry naming the digest of the
    receipt the receiving one signed, so either hub's auditor can prove it."""
    a, national, b = federation.a, federation.national, federation.b
    await _known_everywhere(federation)
    sender = pki.client(a.address, COMMUNE_A.code)
    try:
        header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
    finally:
        await sender.close()

    async def arrived() -> uuid.UUID | None:
        found: uuid.UUID | None = await b.pool.fetchval(
            "SELECT uuid FROM exchange.document WHERE origin_uuid = $1", uuid.UUID(origin)
        )
        return found

    at_b = str(await eventually(arrived, within=30))
    async with (
        gateway_served(b.address, pki) as gateway,
        gateway.client(gateway.agency_pair(DEPARTMENT_B.code)) as http,
    ):
        listed = (
            await http.get("/axis/getReceivedEdocList", params={"messagetype": "edoc"})
        ).json()
        (doc_id,) = [i["docId"] for i in listed["data"] if i["documentUuid"] == at_b]
        body = (await http.get("/axis/getEdoc", params={"docId": doc_id})).json()
        assert body["status"] == "OK", body
        done = await http.post("/axis/updateStatus", data={"docId": doc_id, "status": "done"})
        assert done.json()["status"] == "OK"
    package = read_document(base64.b64decode(body["data"]["content"])).raise_for_errors()
    trace = package.trace.trace_headers
    assert [t.organ_id for t in trace] == [
        COMMUNE_A.code,
        "province-a",
        "national",
        "province-b",
    ]
    times = [t.timestamp for t in trace]
    assert None not in times
    assert times == sorted(times)  # type: ignore[type-var]
    # Both ends of each hop: the sender's `forwarded` entry names the digest of the receipt
    # the receiver signed and logged with its `forwarded_in` entry (and answered to a retry).
    for sending, receiving in ((a, national), (national, b)):
        signed = await receiving.pool.fetchval(
            "SELECT hop_receipt FROM exchange.forwarded_copy "
            "WHERE origin_uuid = $1 AND recipient = $2",
            uuid.UUID(origin),
            DEPARTMENT_B.code,
        )
        assert signed
        out = await eventually(
            lambda hub=sending: hop_entries(hub, origin, "forwarded"),  # type: ignore[misc]
            within=20,
        )
        assert [(d["hub"], d["hop_receipt_sha256"]) for d in out] == [
            (receiving.code, hashlib.sha256(signed).hexdigest())
        ]
        into = await eventually(
            lambda hub=receiving: hop_entries(hub, origin, "forwarded_in"),  # type: ignore[misc]
            within=20,
        )
        assert [(d["from_hub"], d["origin"]) for d in into] == [(sending.code, origin)]


async def hop_entries(hub: Hub, origin: str, event: str) -> list[dict[str, str]]:
    """The data of the document's ledger entries at `hub` whose `event` is `event`."""
    local = await hub.pool.fetchval(
        "SELECT uuid FROM exchange.document WHERE origin_uuid = $1 OR uuid = $1 LIMIT 1",
        uuid.UUID(origin),
    )
    rows = await hub.pool.fetch(
        "SELECT convert_from(body, 'UTF8') AS body FROM ledger.entry WHERE doc_id = $1", local
    )
    data = [json.loads(r["body"]).get("data", {}) for r in rows]
    return [d for d in data if d.get("event") == event]


async def hop_events(hub: Hub, origin: str) -> set[str]:
    """The `event`s of the document's ledger entries at `hub` (its copy of the origin
    document)."""
    local = await hub.pool.fetchval(
        "SELECT uuid FROM exchange.document WHERE origin_uuid = $1 OR uuid = $1 LIMIT 1",
        uuid.UUID(origin),
    )
    rows = await hub.pool.fetch(
        "SELECT convert_from(body, 'UTF8') AS body FROM ledger.entry WHERE doc_id = $1", local
    )
    return {str(json.loads(r["body"]).get("data", {}).get("event")) for r in rows}


async def _next_document(stream: ReceiveStream, client: AgencyClient, number: str) -> pb.Delivery:
    """The next delivery of the document numbered `number`; earlier tests' mail is acknowledged
    on the way."""
    delivery = await next_delivery(stream, within=30)
    while delivery.header.code.number != number:
        await client.acknowledge(delivery.delivery_id)
        delivery = await next_delivery(stream, within=30)
    return delivery


async def test_mail_waiting_for_a_ward_merged_into_another_hubs_agency_is_forwarded_there(
    federation: Federation, pki: SuitePki
) -> None:
    """The reroute sweep gives a moved copy the successor's next hop: A's ward, merged into B's
    department, has its waiting copy forwarded through the national hub to B."""
    a, b = federation.a, federation.b
    await _known_everywhere(federation)

    async def pulled() -> bool:
        # Routed to the national hub by the '*' route before, a known agency only once pulled.
        (r,) = await a.directory.resolve([DEPARTMENT_B.code], today_in_vietnam())
        return r.state is AddressState.OPEN

    await eventually(pulled, within=20)
    sender = pki.client(a.address, COMMUNE_A.code)
    recipient = pki.client(b.address, DEPARTMENT_B.code)
    try:
        header = make_header(COMMUNE_A.code, [WARD_A.code])
        submitted = await sender.submit(f"c-{uuid.uuid4()}", header)
        (route,) = submitted.receipt.routes
        assert route.effective_recipient == WARD_A.code
        await a.directory.record_reorganisation(
            Reorganisation(
                ReorganisationKind.MERGE, today_in_vietnam(), (WARD_A.code,), (DEPARTMENT_B.code,)
            )
        )
        stream = recipient.receive()
        delivery = await _next_document(stream, recipient, header.code.number)
        assert (delivery.requested_recipient, delivery.header.sender) == (
            WARD_A.code,
            COMMUNE_A.code,
        )
        await recipient.acknowledge(delivery.delivery_id)
        stream.cancel()
        moved = await a.pool.fetchrow(
            "SELECT recipient, via_hub FROM exchange.delivery WHERE id = $1",
            uuid.UUID(route.delivery_id),
        )
        assert moved is not None
        assert (moved["recipient"], moved["via_hub"]) == (DEPARTMENT_B.code, "national")
    finally:
        await sender.close()
        await recipient.close()
