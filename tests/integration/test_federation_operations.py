"""Federation operations on the three hubs of test_federation.py (real Postgres, RabbitMQ and
gRPC with mutual TLS): what `docaxis peers` and the console's peers page show of each peer,
copies dead-lettered on the way to a peer and their audited resend, and the refusals."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as xpb

from docaxis_client.trust.receipts import TransportReceipt
from services import peers_cli
from services.common.grpc_errors import error_details
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam
from services.exchange.domain.model import DEFAULT_MAX_PUSHES
from services.exchange.service_layer.federation_ports import OutboundDocument
from services.exchange.service_layer.hop_receipts import HopReceipts
from services.settings import ClientSettings
from tests.conftest import make_header
from tests.integration.test_exchange_flow import next_delivery
from tests.integration.test_federation import (
    COMMUNE_A,
    DEPARTMENT_B,
    Federation,
    Hub,
    federation,
    hop_entries,
)
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration
__all__ = ["federation"]  # the three hubs (module-scoped fixture), started for this module

# Codes nobody registered: one A routes to a hub it does not peer with (its copies wait), one
# that A forwards to the national hub, which knows no hub serving it (refused: dead-lettered).
STRANDED = "000.00.88.H45"
NEIGHBOUR_A = Agency("000.04.00.H45", "Xã Láng giềng A", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
UNKNOWN_EVERYWHERE = "000.00.99.H47"


@pytest.fixture
async def admin_a(
    federation: Federation, pki: SuitePki
) -> AsyncIterator[apb_grpc.AdminServiceAsyncStub]:
    async with pki.channel(federation.a.address, pki.admin_certificate) as channel:
        yield apb_grpc.AdminServiceStub(channel)


async def _peers(hub: Hub, pki: SuitePki) -> dict[str, apb.Peer]:
    async with pki.channel(hub.address, pki.admin_certificate) as channel:
        listed = await apb_grpc.AdminServiceStub(channel).ListPeers(
            apb.ListPeersRequest(), timeout=10
        )
    return {p.hub: p for p in listed.peers}


async def _known_across(federation: Federation) -> None:
    """Until A routes B's department to the national hub, and the national hub knows B serves
    it (before, it refuses the copy: INVALID_ADDRESSEE)."""

    async def known() -> bool:
        today = today_in_vietnam()
        (r,) = await federation.a.directory.resolve([DEPARTMENT_B.code], today)
        (n,) = await federation.national.directory.resolve([DEPARTMENT_B.code], today)
        return r.hub == "national" and n.hub == "province-b"

    await eventually(known, within=20)


async def _send_across(federation: Federation, pki: SuitePki) -> str:
    """A's commune to B's department, received and acknowledged at B; the origin uuid."""
    await _known_across(federation)
    sender = pki.client(federation.a.address, COMMUNE_A.code)
    recipient = pki.client(federation.b.address, DEPARTMENT_B.code)
    try:
        header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
        origin = (await sender.submit(f"c-{uuid.uuid4()}", header)).receipt.document_uuid
        stream = recipient.receive()
        delivery = await next_delivery(stream, within=30)
        while delivery.header.code.number != header.code.number:  # another test's mail
            await recipient.acknowledge(delivery.delivery_id)
            delivery = await next_delivery(stream, within=30)
        await recipient.acknowledge(delivery.delivery_id)
        stream.cancel()
    finally:
        await sender.close()
        await recipient.close()
    return origin


async def test_each_hub_lists_its_peers_with_queue_circuit_contact_and_throughput(
    federation: Federation, pki: SuitePki
) -> None:
    """After a document crossed A → national → B: A sees the national hub up (closed circuit,
    contact, items handed over); the national hub sees both provinces, A's copy counted as
    received; a hub A routes to but does not peer with shows as not configured, with the copy
    waiting for it and its age."""
    a = federation.a
    await _send_across(federation, pki)
    await a.directory.set_route(STRANDED, "province-z", "test")
    client = pki.client(a.address, COMMUNE_A.code)
    try:
        await client.submit(f"c-{uuid.uuid4()}", make_header(COMMUNE_A.code, [STRANDED]))
    finally:
        await client.close()

    def settled(peers: dict[str, apb.Peer]) -> bool:
        national = peers.get("national")
        return national is not None and national.forwarded >= 1 and "province-z" in peers

    at_a = await eventually(lambda: _peers(a, pki), settled, within=20)
    national = at_a["national"]
    assert national.kind == "docaxis"
    assert national.address == federation.national.address
    assert national.state == apb.PEER_STATE_UP
    assert national.circuit == apb.CIRCUIT_STATE_CLOSED
    assert national.HasField("last_contact")
    assert national.HasField("reported_at")
    assert national.forwarded_per_minute > 0
    assert national.consecutive_failures == 0
    stranded = at_a["province-z"]
    assert stranded.state == apb.PEER_STATE_NOT_CONFIGURED
    assert stranded.queue_depth == 1
    assert stranded.HasField("oldest_queued_at")
    assert stranded.oldest_age_s >= 0
    assert stranded.kind == ""  # no forwarder reports it

    at_national = await eventually(
        lambda: _peers(federation.national, pki),
        lambda peers: peers.get("province-a", apb.Peer()).received_per_minute > 0,
        within=20,
    )
    assert set(at_national) == {"province-a", "province-b"}
    assert at_national["province-b"].forwarded >= 1


async def test_a_peers_dead_letters_are_listed_and_resent_audited(
    federation: Federation, pki: SuitePki, admin_a: apb_grpc.AdminServiceAsyncStub
) -> None:
    """A copy the national hub refuses for good is dead-lettered at A on its way there; the
    administrator lists the peer's dead letters and resends them all, each one audited in A's
    ledger with the administrator's certificate."""
    a = federation.a
    client = pki.client(a.address, COMMUNE_A.code)
    try:
        response = await client.submit(
            f"c-{uuid.uuid4()}", make_header(COMMUNE_A.code, [UNKNOWN_EVERYWHERE])
        )
    finally:
        await client.close()
    (route,) = response.receipt.routes

    async def dead() -> list[str]:
        listed = await admin_a.ListDeadLetters(apb.ListDeadLettersRequest(peer="national"))
        return [x.delivery_id for x in listed.dead_letters]

    await eventually(dead, lambda ids: route.delivery_id in ids, within=30)
    # Filtered by peer: a hub with no dead letters lists none.
    other = await admin_a.ListDeadLetters(apb.ListDeadLettersRequest(peer="province-z"))
    assert not other.dead_letters
    peers = await _peers(a, pki)
    assert peers["national"].dead_letters >= 1

    resent = await admin_a.ResendPeerDeadLetters(
        apb.ResendPeerDeadLettersRequest(hub="national", reason="Hub quốc gia đã cập nhật danh bạ")
    )
    assert route.delivery_id in [r.delivery_id for r in resent.resends]
    assert resent.remaining == 0
    mine = next(r for r in resent.resends if r.delivery_id == route.delivery_id)
    assert mine.dead_letter_reason == "national:INVALID_ADDRESSEE"
    assert "quản trị viên" in mine.administrator_subject

    async def audited() -> list[dict[str, object]]:
        rows = await a.pool.fetch(
            "SELECT convert_from(body, 'UTF8') AS body FROM ledger.entry WHERE doc_id = $1::uuid",
            uuid.UUID(response.receipt.document_uuid),
        )
        events = [json.loads(r["body"]).get("data", {}) for r in rows]
        return [e for e in events if e.get("event") == "resent"]

    (event,) = await eventually(audited, within=20)
    assert event["administrator_serial"] == mine.administrator_serial


async def test_a_copy_dead_lettered_after_invalid_receipts_says_why_until_resent(
    federation: Federation,
    pki: SuitePki,
    admin_a: apb_grpc.AdminServiceAsyncStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The national hub answers A's hand-overs of a copy with receipts signed by another hub
    until the push limit dead-letters it at A. The administrator's listing says
    MAX_PUSHES_EXCEEDED with the cause beside it (PEER_RECEIPT_INVALID, which check failed), as
    does the ledger event of the dead-lettering; the resend clears the cause, and with the
    peer's signing fixed the copy reaches B."""
    a = federation.a
    await _known_across(federation)
    header = make_header(COMMUNE_A.code, [DEPARTMENT_B.code])
    wrong_hub = HopReceipts(pki.ca.issue_peer("province-b").identity(), None)
    signing_broken = True
    genuine_check = HopReceipts.check

    def check(self: HopReceipts, peer: str, item: OutboundDocument, receipt: bytes) -> None:
        # Only this test's copy, on its way back from the national hub to A.
        mine = item.submission.header.code_number == header.code.number
        if mine and peer == "national" and signing_broken:
            at = dt.datetime.now(dt.UTC)
            receipt = wrong_hub.sign(item.origin_document_uuid, item.submission, item.recipient, at)
        genuine_check(self, peer, item, receipt)

    monkeypatch.setattr(HopReceipts, "check", check)
    client = pki.client(a.address, COMMUNE_A.code)
    try:
        response = await client.submit(f"c-{uuid.uuid4()}", header)
    finally:
        await client.close()
    (route,) = response.receipt.routes
    key = uuid.UUID(route.delivery_id)

    async def failure() -> str | None:
        why: str | None = await a.pool.fetchval(
            "SELECT last_failure_reason FROM exchange.delivery WHERE id = $1", key
        )
        return why

    assert await eventually(failure, within=30) == "PEER_RECEIPT_INVALID"
    # The limit's last hand-overs, each answered as the first (DOCAXIS_MAX_PUSHES, 20 here):
    # the copy counts as handed over all but once already, without waiting for the forwarder's
    # growing back-off eighteen more times.
    await a.pool.execute(
        "UPDATE exchange.delivery SET push_count = greatest(push_count, $2) WHERE id = $1",
        key,
        DEFAULT_MAX_PUSHES - 1,
    )

    async def dead() -> dict[str, apb.DeadLetter]:
        listed = await admin_a.ListDeadLetters(apb.ListDeadLettersRequest(peer="national"))
        return {x.delivery_id: x for x in listed.dead_letters}

    listed = (await eventually(dead, lambda found: route.delivery_id in found, within=30))[
        route.delivery_id
    ]
    assert (listed.reason, listed.push_count) == ("MAX_PUSHES_EXCEEDED", DEFAULT_MAX_PUSHES)
    assert listed.HasField("cause")
    assert listed.cause.reason == "PEER_RECEIPT_INVALID"
    assert "SIGNER_MISMATCH" in listed.cause.detail
    assert len(listed.cause.detail) <= 200
    (event,) = await eventually(
        lambda: hop_entries(a, response.receipt.document_uuid, "dead_lettered"), within=20
    )
    assert (event["reason"], event["cause"]) == ("MAX_PUSHES_EXCEEDED", "PEER_RECEIPT_INVALID")
    # The document's timeline shows it on the hand-over not done.
    (waiting,) = (await _timeline(a, pki, response.receipt.document_uuid)).hops.hand_overs
    assert waiting.state == xpb.DELIVERY_STATE_DEAD_LETTERED
    assert waiting.last_failure == listed.cause

    signing_broken = False  # the peer's certificate is fixed: the administrator resends
    resent = await admin_a.ResendDeadLetter(
        apb.ResendDeadLetterRequest(delivery_id=route.delivery_id, reason="Hub quốc gia đã sửa")
    )
    assert resent.resend.dead_letter_reason == "MAX_PUSHES_EXCEEDED"
    row = await a.pool.fetchrow(
        "SELECT last_failure_reason, last_failure_detail FROM exchange.delivery WHERE id = $1",
        key,
    )
    assert row is not None
    assert (row["last_failure_reason"], row["last_failure_detail"]) == (None, None)

    async def handed_over() -> str:
        state: str = await a.pool.fetchval(
            "SELECT state FROM exchange.delivery WHERE id = $1 AND hop_receipt IS NOT NULL", key
        )
        return state

    assert await eventually(handed_over, within=30) == "acknowledged"
    assert route.delivery_id not in await dead()
    (done,) = (await _timeline(a, pki, response.receipt.document_uuid)).hops.hand_overs
    assert not done.HasField("last_failure")


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (
            apb.ResendPeerDeadLettersRequest(hub="nowhere", reason="x"),
            grpc.StatusCode.NOT_FOUND,
            "PEER_UNKNOWN",
        ),
        (
            apb.ResendPeerDeadLettersRequest(hub="national", reason=" "),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION",
        ),
        (
            apb.ResendPeerDeadLettersRequest(hub="national", reason="x", limit=5000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION",
        ),
    ],
)
async def test_a_bad_peer_resend_is_refused_with_its_reason(
    admin_a: apb_grpc.AdminServiceAsyncStub,
    request_: apb.ResendPeerDeadLettersRequest,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await admin_a.ResendPeerDeadLetters(request_)
    details = error_details(refused.value)
    assert (details.code, details.reason) == (code, reason)


async def test_only_administrators_see_or_touch_the_peers(
    federation: Federation, pki: SuitePki
) -> None:
    """An agency and the monitoring role are PERMISSION_DENIED, for the list and the resend."""
    for issued in (pki.agency(COMMUNE_A.code).agency, pki.monitor_certificate):
        async with pki.channel(federation.a.address, issued) as channel:
            stub = apb_grpc.AdminServiceStub(channel)
            for call in (
                stub.ListPeers(apb.ListPeersRequest()),
                stub.ResendPeerDeadLetters(
                    apb.ResendPeerDeadLettersRequest(hub="national", reason="x")
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_docaxis_peers_prints_the_figures_and_json(
    federation: Federation, pki: SuitePki, capsys: pytest.CaptureFixture[str]
) -> None:
    await _send_across(federation, pki)
    env = pki.client_env(pki.admin_certificate, "peers-admin")
    parser = argparse.ArgumentParser()
    client = ClientSettings.from_env({**env, "DOCAXIS_ADDRESS": federation.national.address})
    peers_cli.add_commands(parser.add_subparsers(dest="command"), client)
    assert await peers_cli.dispatch(parser.parse_args(["peers"])) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("peer "))
    assert header.split()[:5] == ["peer", "kind", "state", "circuit", "queue"]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("province-")}
    assert set(rows) == {"province-a", "province-b"}
    assert rows["province-b"][1:4] == ["docaxis", "up", "closed"]
    assert await peers_cli.dispatch(parser.parse_args(["peers", "list", "--json"])) == 0
    # The indented answer, apart from the in-process servers' one-line log records.
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("{")
    answer = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    by_hub = {p["hub"]: p for p in answer["peers"]}
    assert by_hub["province-b"]["state"] == "PEER_STATE_UP"
    assert by_hub["province-b"]["circuit"] == "CIRCUIT_STATE_CLOSED"
    assert int(by_hub["province-b"]["forwarded"]) >= 1


async def _timeline(hub: Hub, pki: SuitePki, document_uuid: str) -> apb.GetDocumentTimelineResponse:
    async with pki.channel(hub.address, pki.admin_certificate) as channel:
        return await apb_grpc.AdminServiceStub(channel).GetDocumentTimeline(
            apb.GetDocumentTimelineRequest(document_uuid=document_uuid), timeout=10
        )


async def _local_uuid(hub: Hub, origin: str) -> str:
    return str(
        await hub.pool.fetchval(
            "SELECT uuid FROM exchange.document WHERE origin_uuid = $1 OR uuid = $1 LIMIT 1",
            uuid.UUID(origin),
        )
    )


async def test_the_timeline_of_each_hub_shows_its_hops_receipts_and_statuses_back(
    federation: Federation, pki: SuitePki
) -> None:
    """A's commune to B's department through the national hub, then B reports 03: A's timeline
    shows the hand-over to the national hub with its signed receipt and the 01 and 03 that came
    back; the national hub's shows the trace (A), the copy accepted from A with the statuses it
    handed back, and the hand-over to B; B's shows the trace of both hubs before it and the
    arrival from the national hub."""
    a, national, b = federation.a, federation.national, federation.b
    origin = await _send_across(federation, pki)
    delivery_id = await b.pool.fetchval(
        "SELECT id FROM exchange.delivery WHERE document_uuid = $1::uuid",
        await _local_uuid(b, origin),
    )
    recipient = pki.client(b.address, DEPARTMENT_B.code)
    try:
        await recipient.report_status(
            str(delivery_id), xpb.STATUS_CODE_ACCEPTED, status_id=f"s-{uuid.uuid4()}"
        )
    finally:
        await recipient.close()

    def back_at_a(timeline: apb.GetDocumentTimelineResponse) -> bool:
        (hand_over,) = timeline.hops.hand_overs
        return [s.code for s in hand_over.statuses_back] == [
            xpb.STATUS_CODE_ARRIVED,
            xpb.STATUS_CODE_ACCEPTED,
        ]

    at_a = await eventually(lambda: _timeline(a, pki, origin), back_at_a, within=30)
    assert at_a.hops.origin_document_uuid == origin
    assert not at_a.hops.trace  # submitted here: the trace starts when it leaves
    assert not at_a.hops.arrivals
    (out,) = at_a.hops.hand_overs
    assert (out.next_hub, out.recipient) == ("national", DEPARTMENT_B.code)
    assert out.state == xpb.DELIVERY_STATE_ACKNOWLEDGED
    assert out.HasField("handed_over_at")
    assert out.receipt_sha256 == hashlib.sha256(out.receipt).hexdigest()
    assert TransportReceipt.from_json(out.receipt).recipient == DEPARTMENT_B.code
    assert out.HasField("receipt_signed_at")
    assert out.receipt_key_id
    assert all(s.HasField("at") for s in out.statuses_back)

    def handed_back(timeline: apb.GetDocumentTimelineResponse) -> bool:
        (arrival,) = timeline.hops.arrivals
        return len(arrival.statuses_back) == 2 and all(
            s.HasField("at") for s in arrival.statuses_back
        )

    local = await _local_uuid(national, origin)
    at_national = await eventually(lambda: _timeline(national, pki, local), handed_back, within=30)
    assert [h.hub for h in at_national.hops.trace] == ["province-a", "national"]
    (arrival,) = at_national.hops.arrivals
    assert (arrival.from_hub, arrival.recipient) == ("province-a", DEPARTMENT_B.code)
    assert arrival.HasField("accepted_at")
    # The receipt the national hub signed for A is the one A keeps.
    assert arrival.receipt_sha256 == out.receipt_sha256
    (onward,) = at_national.hops.hand_overs
    assert onward.next_hub == "province-b"
    assert onward.HasField("handed_over_at")

    at_b = await _timeline(b, pki, await _local_uuid(b, origin))
    assert [h.hub for h in at_b.hops.trace] == ["province-a", "national", "province-b"]
    (arrival_b,) = at_b.hops.arrivals
    assert arrival_b.from_hub == "national"
    assert arrival_b.receipt_sha256 == onward.receipt_sha256
    assert not at_b.hops.hand_overs  # delivered here

    # A document that stays on one hub has no hops.
    await a.directory.register(NEIGHBOUR_A)
    sender = pki.client(a.address, COMMUNE_A.code)
    try:
        local_only = await sender.submit(
            f"c-{uuid.uuid4()}", make_header(COMMUNE_A.code, [NEIGHBOUR_A.code])
        )
    finally:
        await sender.close()
    alone = await _timeline(a, pki, local_only.receipt.document_uuid)
    assert not alone.HasField("hops")
