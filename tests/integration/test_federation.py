"""Federation on real Postgres, RabbitMQ and gRPC with mutual TLS: three hubs on loopback
(province A, province B, national), each with its own database and broker virtual host. Each
pulls its peers' directories through the delta feed, so A resolves B's codes, merged ones
included, and mail for them is routed to the next hop instead of refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.errors import DocaxisError
from docaxis_client.receive import ReceiveStream
from docaxis_client.trust.receipts import TransportReceipt, verify_hop_receipt
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
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_federation import PostgresFederationStore
from services.exchange.adapters.postgres_peers import PostgresPeerStates
from services.exchange.service_layer.federation_ports import OutboundDocument
from services.exchange.service_layer.hop_receipts import HopReceipts
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
# A's ward that sends, then is merged into B's department while a notice waits for it.
SENDER_A = Agency("000.06.00.H45", "Phường gửi A", AgencyKind.WARD, dt.date(2019, 1, 1))
# A department B registers only once mail for it is on its way; a code no hub ever knows.
LATE_B = Agency("000.00.21.H46", "Sở đăng ký muộn B", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))
NOWHERE = "000.00.77.H46"
# How long after acceptance a copy the next hub cannot place is handed over again (short here).
REFUSAL_WINDOW_S = 8.0


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
                peer_refusal_window_s=REFUSAL_WINDOW_S,
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


async def _none_for_the_hop_walk(federation: Federation) -> None:
    """Every notice this version staged (a recall's, a status's, an acknowledgement's 01) says
    its hop was kept: none is left for the walk of notices a process of an earlier version
    staged (migration 0039, service_layer/notice_hops.py), which stops a day after the upgrade."""
    for hub in (federation.a, federation.b, federation.national):
        assert (
            await hub.pool.fetchval("SELECT count(*) FROM exchange.notice WHERE NOT hop_kept") == 0
        )


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

    # A's first pull may predate the national hub's own pull of B: B's codes come in a later one.
    facts = await eventually(pulled, lambda found: any(DEPARTMENT_B.code in f for f in found))
    assert any(DEPARTMENT_B.code in fact for fact in facts)


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
    """A knows B's department and B knows A's commune from the pulled directories (the `*`
    route alone names the national hub too, before any pull: not enough for the national hub
    to know where to go on)."""

    async def known() -> bool:
        (r,) = await federation.a.directory.resolve([DEPARTMENT_B.code], today_in_vietnam())
        (back,) = await federation.b.directory.resolve([COMMUNE_A.code], today_in_vietnam())
        return all(
            found.hub == "national" and found.state is AddressState.OPEN for found in (r, back)
        )

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
    # A keeps the national hub's signed receipt of the hand-over, which an auditor verifies
    # offline as the national hub's (its peer certificate) receipt of this document for B.
    kept = TransportReceipt.from_json(await kept_receipt(a, origin))
    verify_hop_receipt(kept, pki.trust(), hub_code="national")
    assert (kept.document_uuid, kept.recipient) == (origin, DEPARTMENT_B.code)
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
        signed = await PostgresFederationStore(receiving.pool).accepted_receipt(
            origin, DEPARTMENT_B.code
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


async def test_a_receipt_that_does_not_prove_the_hand_over_leaves_the_copy_to_hand_over_again(
    federation: Federation, pki: SuitePki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The national hub's receipt of A's copy is replaced on its way back twice, as a peer that
    misbehaves would answer: signed by province-b, then by a trusted national certificate but
    for another document. A refuses both (PEER_RECEIPT_INVALID), keeps the copy waiting and
    hands it over again; the national hub answers the retry with its first, genuine receipt,
    which A keeps. Nothing lost, nothing doubled: one copy accepted at the national hub and at
    B, one hand-over in A's ledger, naming the genuine receipt."""
    a, national, b = federation.a, federation.national, federation.b
    await _known_everywhere(federation)
    header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
    wrong_hub = HopReceipts(pki.ca.issue_peer("province-b").identity(), None)
    another_document = HopReceipts(pki.ca.issue_peer("national").identity(), None)
    replaced: list[str] = []
    genuine_check = HopReceipts.check

    def check(self: HopReceipts, peer: str, item: OutboundDocument, receipt: bytes) -> None:
        # Only this test's copy, on its way back from the national hub to A.
        mine = item.submission.header.code_number == header.code.number
        if mine and peer == "national" and len(replaced) < 2:
            signer, origin = (
                (wrong_hub, item.origin_document_uuid)
                if not replaced
                else (another_document, str(uuid.uuid4()))
            )
            at = dt.datetime.now(dt.UTC)
            receipt = signer.sign(origin, item.submission, item.recipient, at)
            replaced.append(peer)
        genuine_check(self, peer, item, receipt)

    monkeypatch.setattr(HopReceipts, "check", check)
    sender = pki.client(a.address, COMMUNE_A.code)
    try:
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
    finally:
        await sender.close()

    async def kept() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await a.pool.fetchrow(
            "SELECT hop_receipt, push_count FROM exchange.delivery WHERE document_uuid = $1 "
            "AND hop_receipt IS NOT NULL",
            uuid.UUID(origin),
        )
        return row

    row = await eventually(kept, within=60)
    assert row is not None
    assert replaced == ["national", "national"]
    assert row["push_count"] == 3  # handed over three times: two refused receipts, one kept
    # The copy remembers why its last hand-over failed, but its timeline shows the hand-over
    # done, not that failure: it is history.
    assert (
        await a.pool.fetchval(
            "SELECT last_failure_reason FROM exchange.delivery WHERE document_uuid = $1",
            uuid.UUID(origin),
        )
        == "PEER_RECEIPT_INVALID"
    )
    hops = await PostgresAdminStore(a.pool).hops(origin)
    assert hops is not None
    assert [h.last_failure for h in hops.hand_overs] == [None]
    served = await kept_receipt(a, origin)
    receipt = TransportReceipt.from_json(served)
    verify_hop_receipt(receipt, pki.trust(), hub_code="national")
    assert (receipt.document_uuid, receipt.recipient) == (origin, DEPARTMENT_B.code)
    signed = await national.pool.fetchval(
        "SELECT count(*) FROM exchange.forwarded_copy WHERE origin_uuid = $1",
        uuid.UUID(origin),
    )
    assert signed == 1
    assert (
        await PostgresFederationStore(national.pool).accepted_receipt(origin, DEPARTMENT_B.code)
        == served
    )

    async def at_b() -> int:
        count: int = await b.pool.fetchval(
            "SELECT count(*) FROM exchange.delivery d JOIN exchange.document doc "
            "ON doc.uuid = d.document_uuid WHERE doc.origin_uuid = $1",
            uuid.UUID(origin),
        )
        return count

    assert await eventually(at_b, within=30) == 1
    out = await eventually(lambda: hop_entries(a, origin, "forwarded"), within=20)
    assert [d["hop_receipt_sha256"] for d in out] == [hashlib.sha256(served).hexdigest()]


async def kept_receipt(hub: Hub, document_uuid: str) -> bytes:
    """The next hub's receipt of the document's one hand-over, as `hub` serves it (its
    timeline; stored without its chain)."""
    hops = await PostgresAdminStore(hub.pool).hops(document_uuid)
    assert hops is not None
    (hand_over,) = hops.hand_overs
    return hand_over.receipt


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


async def _next_item(
    stream: ReceiveStream,
    client: AgencyClient,
    wanted: Callable[[pb.ReceiveResponse], bool],
    within: float = 30,
) -> pb.ReceiveResponse:
    """The next item `wanted` picks; any other (an earlier test's mail) is acknowledged on the
    way."""
    async with asyncio.timeout(within):
        while True:
            item = await stream.read()
            if wanted(item):
                return item
            kind = item.WhichOneof("item")
            with contextlib.suppress(DocaxisError):  # e.g. a copy withdrawn meanwhile
                if kind == "delivery":
                    await client.acknowledge(item.delivery.delivery_id)
                elif kind is not None:
                    await client.acknowledge_notice(getattr(item, kind).notice_id)


def _status_of(document_uuid: str) -> Callable[[pb.ReceiveResponse], bool]:
    return lambda i: i.WhichOneof("item") == "status" and i.status.document_uuid == document_uuid


async def _delivered(
    federation: Federation, sender: AgencyClient, recipient: AgencyClient, subject: str
) -> tuple[str, pb.Delivery, pb.ReceiveResponse]:
    """A document from A's commune to B's department, received and acknowledged at B: (its
    uuid at A, B's delivery, A's 01 notice, acknowledged)."""
    await _known_everywhere(federation)
    header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code], subject=subject)
    origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
    inbox = recipient.receive()
    delivery = await _next_document(inbox, recipient, header.code.number)
    await recipient.acknowledge(delivery.delivery_id)
    inbox.cancel()
    notices = sender.receive()
    arrived = await _next_item(notices, sender, _status_of(origin))
    await sender.acknowledge_notice(arrived.status.notice_id)
    notices.cancel()
    return origin, delivery, arrived


async def test_statuses_reach_the_sender_across_two_hops_in_the_order_they_were_reported(
    federation: Federation, pki: SuitePki
) -> None:
    """B's department reports 03, 04, 05, 06 while the national hub has not yet recorded its
    hand-over of the copy (as after a crash between B's answer and its record): the national
    hub asks for them again, B hands them over again, after a back-off and in their order, and
    A's commune is notified of 01, 03, 04, 05, 06 in that order, none missing."""
    a, national = federation.a, federation.national
    sender = pki.client(a.address, COMMUNE_A.code)
    recipient = pki.client(federation.b.address, DEPARTMENT_B.code)
    try:
        origin, delivery, arrived = await _delivered(federation, sender, recipient, "Thứ tự")
        assert arrived.status.status.code == pb.STATUS_CODE_ARRIVED
        copy = await national.pool.fetchrow(
            "SELECT d.id, d.state, d.acknowledged_at FROM exchange.delivery d "
            "JOIN exchange.document doc ON doc.uuid = d.document_uuid WHERE doc.origin_uuid = $1",
            uuid.UUID(origin),
        )
        assert copy is not None
        assert copy["state"] == "acknowledged"
        await national.pool.execute(
            "UPDATE exchange.delivery SET state = 'pushed', acknowledged_at = NULL WHERE id = $1",
            copy["id"],
        )
        codes = [
            pb.STATUS_CODE_ACCEPTED,
            pb.STATUS_CODE_ASSIGNED,
            pb.STATUS_CODE_PROCESSING,
            pb.STATUS_CODE_COMPLETED,
        ]
        start = dt.datetime.now(dt.UTC)
        for minute, code in enumerate(codes):
            await recipient.report_status(
                delivery.delivery_id,
                code,
                status_id=f"s-{uuid.uuid4()}",
                occurred_at=start + dt.timedelta(seconds=minute),
            )

        async def deferred() -> int:
            # B's forwarder was asked to hand them over again (each a push of the notice).
            count: int = await federation.b.pool.fetchval(
                "SELECT coalesce(max(n.push_count), 0) FROM exchange.notice n "
                "JOIN exchange.delivery d ON d.id = n.delivery_id WHERE d.id = $1",
                uuid.UUID(delivery.delivery_id),
            )
            return count

        await eventually(deferred, lambda count: count >= 2, within=30)
        # Each notice keeps its hop (the 01 the acknowledgement wrote, the others each report),
        # by which B's ListPeers counts the four waiting for the national hub.
        hops = await federation.b.pool.fetch(
            "SELECT via_hub FROM exchange.notice WHERE delivery_id = $1",
            uuid.UUID(delivery.delivery_id),
        )
        assert [r["via_hub"] for r in hops] == ["national"] * 5
        await _none_for_the_hop_walk(federation)
        waiting = {q.hub: q for q in await PostgresPeerStates(federation.b.pool).queues(start)}
        assert waiting["national"].depth >= len(codes)
        await national.pool.execute(
            "UPDATE exchange.delivery SET state = $2, acknowledged_at = $3 WHERE id = $1",
            copy["id"],
            copy["state"],
            copy["acknowledged_at"],
        )
        notices = sender.receive()
        seen = []
        for _ in codes:
            item = await _next_item(notices, sender, _status_of(origin))
            seen.append(item.status.status.code)
            await sender.acknowledge_notice(item.status.notice_id)
        notices.cancel()
        assert seen == codes
        track = await sender.track(origin)
        assert [s.code for s in track.recipients[0].statuses] == [pb.STATUS_CODE_ARRIVED, *codes]
    finally:
        await sender.close()
        await recipient.close()


async def test_a_recall_before_the_far_dms_acknowledged_withdraws_the_copy_and_answers_15(
    federation: Federation, pki: SuitePki
) -> None:
    """The copy reached B and was pushed to the department's DMS, which did not acknowledge it:
    A's recall withdraws it at B (no longer acknowledgeable nor readable there, the DMS is told
    it is withdrawn) and B answers 15 for it, which travels back to A's commune."""
    await _known_everywhere(federation)
    sender = pki.client(federation.a.address, COMMUNE_A.code)
    recipient = pki.client(federation.b.address, DEPARTMENT_B.code)
    try:
        header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code], subject="Thu hồi sớm")
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
        inbox = recipient.receive()
        delivery = await _next_document(inbox, recipient, header.code.number)

        async def handed_over() -> pb.TrackResponse:
            return await sender.track(origin)

        # A's copy is handed over to the national hub (acknowledged there, by its receipt).
        await eventually(
            handed_over,
            lambda t: t.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED,
            within=30,
        )
        await sender.recall(origin, "gửi nhầm nơi nhận", [DEPARTMENT_B.code])
        told = await _next_item(
            inbox,
            recipient,
            lambda i: (
                i.WhichOneof("item") == "recall" and i.recall.delivery_id == delivery.delivery_id
            ),
        )
        assert told.recall.withdrawn
        await recipient.acknowledge_notice(told.recall.notice_id)
        inbox.cancel()
        with pytest.raises(DocaxisError) as refused:
            await recipient.acknowledge(delivery.delivery_id)
        assert refused.value.reason == "COPY_WITHDRAWN"
        with pytest.raises(DocaxisError) as unseen:
            await recipient.track(delivery.document_uuid)
        assert unseen.value.reason == "NOT_FOUND"
        notices = sender.receive()
        answer = await _next_item(notices, sender, _status_of(origin))
        await sender.acknowledge_notice(answer.status.notice_id)
        notices.cancel()
        assert answer.status.status.code == pb.STATUS_CODE_RECALL_AGREED
        track = await sender.track(origin)
        assert (track.recipients[0].state, track.recipients[0].recall_state) == (
            pb.DELIVERY_STATE_WITHDRAWN,
            pb.RECALL_STATE_AGREED,
        )
        await _none_for_the_hop_walk(federation)
    finally:
        await sender.close()
        await recipient.close()


async def test_a_recall_while_the_copy_is_in_transit_at_the_national_hub_answers_15(
    federation: Federation, pki: SuitePki
) -> None:
    """B is slow to store the copy (its hand-over waits on B's lock of the copy): A's recall
    withdraws it at the national hub, which answers 15 back to A at once; once B stored the
    copy, the recall goes on and withdraws it there too: the department never gets it."""
    a, national, b = federation.a, federation.national, federation.b
    await _known_everywhere(federation)
    sender = pki.client(a.address, COMMUNE_A.code)
    recipient = pki.client(b.address, DEPARTMENT_B.code)
    header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code], subject="Thu hồi dọc đường")
    try:
        async with b.pool.acquire() as held, held.transaction():
            origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
            # The key B takes to store the copy (postgres_federation._KEY_LOCK).
            await held.execute(
                "SELECT pg_advisory_xact_lock(hashtext('exchange.forwarded_copy:' || $1 || $2))",
                origin,
                DEPARTMENT_B.code,
            )

            async def at_national() -> str | None:
                state: str | None = await national.pool.fetchval(
                    "SELECT d.state FROM exchange.delivery d JOIN exchange.document doc "
                    "ON doc.uuid = d.document_uuid WHERE doc.origin_uuid = $1",
                    uuid.UUID(origin),
                )
                return state

            assert await eventually(at_national, lambda s: s == "pushed", within=30)
            await sender.recall(origin, "gửi nhầm nơi nhận", [DEPARTMENT_B.code])
            notices = sender.receive()
            answer = await _next_item(notices, sender, _status_of(origin))
            await sender.acknowledge_notice(answer.status.notice_id)
            notices.cancel()
            assert answer.status.status.code == pb.STATUS_CODE_RECALL_AGREED
            assert await at_national() == "withdrawn"

        async def at_b() -> str | None:
            state: str | None = await b.pool.fetchval(
                "SELECT d.state FROM exchange.delivery d JOIN exchange.document doc "
                "ON doc.uuid = d.document_uuid WHERE doc.origin_uuid = $1",
                uuid.UUID(origin),
            )
            return state

        assert await eventually(at_b, lambda s: s == "withdrawn", within=30)
        inbox = recipient.receive()
        with contextlib.suppress(TimeoutError):
            mine = await _next_item(
                inbox,
                recipient,
                lambda i: (
                    i.WhichOneof("item") == "delivery"
                    and i.delivery.header.code.number == header.code.number
                ),
                within=1.5,
            )
            pytest.fail(f"the withdrawn copy was delivered: {mine}")
        inbox.cancel()
        track = await sender.track(origin)
        assert track.recipients[0].recall_state == pb.RECALL_STATE_AGREED
    finally:
        await sender.close()
        await recipient.close()


async def test_an_update_and_a_reply_cross_the_hubs_linked_to_the_original(
    federation: Federation, pki: SuitePki
) -> None:
    """A's update of a delivered document reaches B's department linked to the original, with a
    pending decision on the original that the department refuses (16), which A sees; the
    department's reply reaches A's commune linked to the original both ways."""
    sender = pki.client(federation.a.address, COMMUNE_A.code)
    recipient = pki.client(federation.b.address, DEPARTMENT_B.code)
    try:
        origin, delivery, _ = await _delivered(federation, sender, recipient, "Kế hoạch")
        original = await sender.track(origin)
        header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code], subject="Kế hoạch (cập nhật)")
        header.code.CopyFrom(original.header.code)
        header.business_type = common_pb2.BUSINESS_TYPE_UPDATE
        header.response_for.append(original.header.document_id)
        update = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt
        inbox = recipient.receive()
        new_version = await _next_item(
            inbox,
            recipient,
            lambda i: (
                i.WhichOneof("item") == "delivery"
                and i.delivery.header.business_type == common_pb2.BUSINESS_TYPE_UPDATE
                and i.delivery.header.subject == header.subject
            ),
        )
        await recipient.acknowledge(new_version.delivery.delivery_id)
        asked = await _next_item(
            inbox,
            recipient,
            lambda i: (
                i.WhichOneof("item") == "recall" and i.recall.delivery_id == delivery.delivery_id
            ),
        )
        await recipient.acknowledge_notice(asked.recall.notice_id)
        inbox.cancel()
        assert asked.recall.reason.startswith("Cập nhật")
        at_b = await recipient.track(new_version.delivery.document_uuid)
        assert [link.document_uuid for link in at_b.in_reply_to] == [delivery.document_uuid]
        await recipient.report_status(
            delivery.delivery_id, pb.STATUS_CODE_RECALL_REFUSED, status_id=f"s-{uuid.uuid4()}"
        )

        async def tracked() -> pb.TrackResponse:
            return await sender.track(origin)

        track = await eventually(
            tracked,
            lambda t: t.recipients[0].recall_state == pb.RECALL_STATE_REFUSED,
            within=30,
        )
        assert _statuses(track)[-1] == "STATUS_CODE_RECALL_REFUSED"
        assert [r.document_uuid for r in track.replies] == [update.document_uuid]

        reply_header = make_header(DEPARTMENT_B.code, [COMMUNE_A.code], subject="Trả lời")
        reply_header.response_for.append(original.header.document_id)
        reply = (await recipient.submit(f"c-{uuid.uuid4()}", reply_header)).receipt
        notices = sender.receive()
        got = await _next_item(
            notices,
            sender,
            lambda i: (
                i.WhichOneof("item") == "delivery"
                and i.delivery.header.subject == reply_header.subject
                and i.delivery.header.code.number == reply_header.code.number
            ),
        )
        await sender.acknowledge(got.delivery.delivery_id)
        notices.cancel()
        assert list(got.delivery.header.response_for) == [original.header.document_id]
        seen = await sender.track(origin)
        assert [(r.document_uuid, r.sender) for r in seen.replies] == [
            (update.document_uuid, COMMUNE_A.code),
            (got.delivery.document_uuid, DEPARTMENT_B.code),
        ]
        answered = await sender.track(got.delivery.document_uuid)
        # Every version of the DocumentId it answers: the original and the update.
        assert [r.document_uuid for r in answered.in_reply_to] == [origin, update.document_uuid]
        assert reply.document_uuid != got.delivery.document_uuid  # B's uuid, A's own copy
    finally:
        await sender.close()
        await recipient.close()


async def _a_copy(a: Hub, origin: str) -> asyncpg.Record:
    row = await a.pool.fetchrow(
        "SELECT id, state, push_count, refusals, dead_letter_reason FROM exchange.delivery "
        "WHERE document_uuid = $1",
        uuid.UUID(origin),
    )
    assert row is not None
    return row


async def test_a_copy_the_national_hub_cannot_place_yet_is_delivered_once_b_registers_it(
    federation: Federation, pki: SuitePki
) -> None:
    """A's commune writes to a department B registers only later: the national hub refuses the
    copy (INVALID_ADDRESSEE: its directory does not know the code), A hands it over again with
    back-off (not counted as pushes), and once B registered the department and the national hub
    pulled B's directory, it is delivered at B, once."""
    a, b = federation.a, federation.b
    await _known_everywhere(federation)
    sender = pki.client(a.address, COMMUNE_A.code)
    recipient = pki.client(b.address, LATE_B.code)
    try:
        header = make_header(COMMUNE_A.code, [LATE_B.code], subject="Chờ danh bạ")
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
        refused = await eventually(
            lambda: _a_copy(a, origin), lambda row: row["refusals"] >= 1, within=30
        )
        assert refused["state"] == "queued"
        await b.directory.register(LATE_B)
        inbox = recipient.receive()
        delivery = await _next_document(inbox, recipient, header.code.number)
        await recipient.acknowledge(delivery.delivery_id)
        await no_delivery(inbox, within=1.0)
        inbox.cancel()
        handed = await eventually(
            lambda: _a_copy(a, origin), lambda row: row["state"] == "acknowledged", within=30
        )
        # Each refusal gave its hand-over back: one push, the one the national hub stored.
        assert handed["push_count"] == 1
        assert "refused" in await hop_events(a, origin)
    finally:
        await sender.close()
        await recipient.close()


async def test_a_copy_no_hub_can_place_fails_after_the_window_and_the_sender_is_told(
    federation: Federation, pki: SuitePki
) -> None:
    """Mail for a code no hub knows is refused by the national hub; A retries with back-off
    (a handful of refusals in the window, not a spin) until the window from acceptance has
    passed, then the copy is dead-lettered (`national:INVALID_ADDRESSEE`, resendable) and A's
    commune is notified with a 02 that says why."""
    a = federation.a
    await _known_everywhere(federation)
    sender = pki.client(a.address, COMMUNE_A.code)
    try:
        header = make_header(COMMUNE_A.code, [NOWHERE], subject="Không ai biết")
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
        notices = sender.receive()
        told = await _next_item(notices, sender, _status_of(origin), within=REFUSAL_WINDOW_S + 30)
        await sender.acknowledge_notice(told.status.notice_id)
        notices.cancel()
        assert told.status.status.code == pb.STATUS_CODE_REJECTED
        assert "INVALID_ADDRESSEE" in told.status.status.description
        assert told.status.status.status_id == "docaxis:undeliverable"
        failed = await _a_copy(a, origin)
        assert (failed["state"], failed["dead_letter_reason"]) == (
            "dead_lettered",
            "national:INVALID_ADDRESSEE",
        )
        # Retried with back-off from 1 s (jittered, doubling) within the window: a spin would
        # have been refused hundreds of times.
        assert 2 <= failed["refusals"] <= 8
        track = await sender.track(origin)
        assert track.recipients[0].state == pb.DELIVERY_STATE_DEAD_LETTERED
        assert _statuses(track) == ["STATUS_CODE_REJECTED"]
    finally:
        await sender.close()


async def test_a_notice_for_a_sender_merged_into_another_hubs_agency_goes_to_that_hub(
    federation: Federation, pki: SuitePki
) -> None:
    """A's ward sent a document to A's commune and left the commune's 01 unread; the ward is
    merged into B's department. The reroute sweep gives the waiting notice to the department and
    to the department's next hop, the national hub (not the ward's own queue here, which no DMS
    reads any more), where it is settled; so is the commune's 03 reported after the merger."""
    a = federation.a
    await _known_everywhere(federation)
    await a.directory.register(SENDER_A)
    ward = pki.client(a.address, SENDER_A.code)
    commune = pki.client(a.address, COMMUNE_A.code)
    try:
        header = make_header(SENDER_A.code, [COMMUNE_A.code], subject="Phường gửi")
        origin = (await ward.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
        inbox = commune.receive()
        delivery = await _next_document(inbox, commune, header.code.number)
        await commune.acknowledge(delivery.delivery_id)
        inbox.cancel()
    finally:
        await ward.close()
        await commune.close()

    async def notice() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await a.pool.fetchrow(
            "SELECT n.agency, n.acknowledged_at, n.via_hub FROM exchange.notice n "
            "JOIN exchange.delivery d ON d.id = n.delivery_id WHERE d.document_uuid = $1",
            uuid.UUID(origin),
        )
        return row

    assert await eventually(notice, lambda row: row is not None, within=30)
    await a.directory.record_reorganisation(
        Reorganisation(
            ReorganisationKind.MERGE, today_in_vietnam(), (SENDER_A.code,), (DEPARTMENT_B.code,)
        )
    )
    moved = await eventually(
        notice,
        lambda row: row is not None and row["acknowledged_at"] is not None,
        within=30,
    )
    assert moved is not None
    assert moved["agency"] == DEPARTMENT_B.code
    assert moved["via_hub"] == "national"
    # A status reported after the merger goes to the successor, through its hub too.
    commune = pki.client(a.address, COMMUNE_A.code)
    try:
        await commune.report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=f"s-{uuid.uuid4()}"
        )
    finally:
        await commune.close()

    async def later() -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await a.pool.fetch(
            "SELECT n.agency, n.acknowledged_at FROM exchange.notice n "
            "JOIN exchange.delivery d ON d.id = n.delivery_id WHERE d.document_uuid = $1",
            uuid.UUID(origin),
        )
        return rows

    settled = await eventually(
        later,
        lambda rows: len(rows) == 2 and all(r["acknowledged_at"] is not None for r in rows),
        within=30,
    )
    assert {r["agency"] for r in settled} == {DEPARTMENT_B.code}
