"""`make demo-federation`: a cross-hub send on the two hubs of `make run HUBS=2`. A ward of
hub A (Quảng Ninh) writes to a department of hub B (Hồ Chí Minh City): B's department receives
it once (pushed by hub B, its attachment fetched from hub A), its statuses come back to the
sender, the sender recalls the document and B's agreement comes back; then each hub's
administrator shows the hop (the per-hop timeline: hand-over with hub B's signed receipt at A,
the arrival from A at B) and the ledger entries that record it on both hubs.

Each agency talks only to its own hub, over mutual TLS with its own hub's demo PKI (each hub has
a CA of its own; the hubs trust each other's)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.credentials import TlsCredentials
from docaxis_client.errors import DocaxisError
from docaxis_client.receive import ReceiveStream, ReceiveStreamError
from docaxis_client.vietnam import VIETNAM
from services.demo import DemoPki

WARD_A = "000.00.71.H45"  # Ủy ban nhân dân phường Hạ Long (hub A, Quảng Ninh)
# Its chairwoman, who signs (deploy/local/second-hub.sh issues her certificate).
SIGNER_A = "Trần Thị Bình"
DEPARTMENT_B = "000.00.11.H29"  # Sở Nội vụ Thành phố Hồ Chí Minh (hub B)
STEP_TIMEOUT_S = 60.0
# How long the recipient watches for a second copy after the first (a bounded look).
DUPLICATE_WATCH_S = 3.0

T = TypeVar("T")


class FederationDemoError(Exception):
    pass


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo narrates


def _vietnam(stamp: object) -> str:
    when = stamp.ToDatetime(dt.UTC)  # type: ignore[attr-defined]  # a protobuf Timestamp
    return f"{when.astimezone(VIETNAM):%H:%M:%S}"


async def _until(what: str, attempt: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Asks again every half second until `done`, for at most STEP_TIMEOUT_S."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        value = await attempt()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise FederationDemoError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def _admin(address: str, pki: Path) -> grpc.aio.Channel:
    admin = pki / "roles" / "admin" / "admin"
    tls = TlsCredentials.from_files(
        ca=pki / "bundle.pem", cert=admin.with_suffix(".pem"), key=admin.with_suffix(".key")
    )
    return open_channel(address, tls)


def _statuses(track: pb.TrackResponse) -> list[str]:
    return [f"{s.code:02d}" for r in track.recipients for s in r.statuses]


async def run_federation_demo(a_address: str, a_pki: Path, b_address: str, b_pki: Path) -> int:
    try:
        await _demo(a_address, DemoPki(a_pki), b_address, DemoPki(b_pki))
    except (
        FederationDemoError,
        TimeoutError,
        ReceiveStreamError,
        grpc.aio.AioRpcError,
    ) as exc:
        _say(f"federation demo FAILED: {exc!r}")
        return 1
    _say("federation demo passed")
    return 0


async def _submit_when_routed(
    sender: AgencyClient, header: common_pb2.DocumentHeader, refs: list[common_pb2.AttachmentRef]
) -> pb.SubmitResponse:
    """Hub A refuses B's code (INVALID_ADDRESSEE) until its routes to hub B are set: asks
    again meanwhile."""
    consignment = f"demo-federation-{uuid.uuid4()}"
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        try:
            return await sender.submit(consignment, header, refs)
        except DocaxisError as exc:
            if exc.reason != "INVALID_ADDRESSEE" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


async def _next_item(stream: ReceiveStream) -> pb.ReceiveResponse:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        return await stream.read()


async def _demo(a_address: str, a: DemoPki, b_address: str, b: DemoPki) -> None:
    sender = AgencyClient.connect(
        a_address,
        tls=a.tls(WARD_A),
        person=a.person(WARD_A, SIGNER_A),
        organization=a.organization(WARD_A),
    )
    recipient = AgencyClient.connect(b_address, tls=b.tls(DEPARTMENT_B))
    try:
        _say(f"1. {DEPARTMENT_B} (hub B) connects its push stream to hub B")
        stream = recipient.receive()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await stream.subscribed()
        body = "Công văn liên thông giữa hai trục (docaxis demo)".encode()
        upload = await sender.upload_stream(body)
        refs = [upload.ref("cong-van.txt", "text/plain")]
        today = dt.datetime.now(VIETNAM).date()
        header = common_pb2.DocumentHeader(
            sender=WARD_A,
            recipients=[DEPARTMENT_B],
            code=common_pb2.DocumentCode(
                number=str(time.time_ns() // 1_000_000 % 10**11), notation="UBND"
            ),
            promulgation_place="Hạ Long",
            promulgation_date=today.isoformat(),
            document_type=1,
            type_name="Công văn",
            subject="Về việc phối hợp liên thông văn bản giữa hai tỉnh, thành phố",
            # The signer's name comes from her certificate.
            signer=common_pb2.Signer(competence="TM. ỦY BAN NHÂN DÂN", position="Chủ tịch"),
            priority=common_pb2.PRIORITY_NORMAL,
            business_type=common_pb2.BUSINESS_TYPE_NEW,
        )
        _say(f"2. {WARD_A} (hub A) submits a document to {DEPARTMENT_B}, served by hub B")
        receipt = (await _submit_when_routed(sender, header, refs)).receipt
        _say(f"   hub A accepted it as {receipt.document_uuid} and routed it to hub B")

        while True:
            item = await _next_item(stream)
            if item.WhichOneof("item") != "delivery":
                notice = item.status if item.HasField("status") else item.recall
                await recipient.acknowledge_notice(notice.notice_id)  # an earlier run's
                continue
            delivery = item.delivery
            if delivery.header.document_id == receipt.document_id:
                break
            await recipient.acknowledge(delivery.delivery_id)  # an earlier run's
        with tempfile.TemporaryDirectory(prefix="docaxis-demo-federation-") as folder:
            digest = await recipient.download(
                delivery.document_uuid,
                delivery.attachments[0].sha256,
                Path(folder) / delivery.attachments[0].name,
            )
        if digest != hashlib.sha256(body).hexdigest():
            raise FederationDemoError("the attachment changed on its way")
        await recipient.acknowledge(delivery.delivery_id)
        _say(
            f"3. {DEPARTMENT_B} received it from hub B as {delivery.document_uuid} "
            f"(attachment fetched across the hubs, SHA-256 verified) and acknowledged it"
        )
        try:
            async with asyncio.timeout(DUPLICATE_WATCH_S):
                while True:
                    again = await stream.read()
                    if (
                        again.WhichOneof("item") == "delivery"
                        and again.delivery.header.document_id == receipt.document_id
                    ):
                        raise FederationDemoError("a second copy arrived")
        except TimeoutError:
            _say(f"   delivered once: no second copy within {DUPLICATE_WATCH_S:.0f} s")
        stream.cancel()  # a read that timed out ends its call: the next step subscribes again

        await recipient.report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=f"demo-{uuid.uuid4()}"
        )
        track = await _until(
            "the statuses at hub A",
            lambda: sender.track(receipt.document_uuid),
            lambda t: "03" in _statuses(t),
        )
        _say(
            f"4. B registered it (03); back at hub A the sender sees {', '.join(_statuses(track))}"
        )

        await sender.recall(receipt.document_uuid, "Gửi nhầm đơn vị", [DEPARTMENT_B])
        _say("5. the sender recalls it; the recall travels to hub B")
        stream = recipient.receive()
        while True:
            item = await _next_item(stream)
            if item.WhichOneof("item") == "recall":
                break
            if item.HasField("status"):
                await recipient.acknowledge_notice(item.status.notice_id)
        await recipient.acknowledge_notice(item.recall.notice_id)
        await recipient.report_status(
            delivery.delivery_id, pb.STATUS_CODE_RECALL_AGREED, status_id=f"demo-{uuid.uuid4()}"
        )
        track = await _until(
            "the recall's answer at hub A",
            lambda: sender.track(receipt.document_uuid),
            lambda t: "15" in _statuses(t),
        )
        _say(f"   {DEPARTMENT_B} agreed (15); at hub A: {', '.join(_statuses(track))}")
        stream.cancel()
        await _show_hops(a_address, a, receipt.document_uuid, b_address, b, delivery.document_uuid)
    finally:
        await sender.close()
        await recipient.close()


async def _show_hops(
    a_address: str, a: DemoPki, a_uuid: str, b_address: str, b: DemoPki, b_uuid: str
) -> None:
    """Each hub's administrator: the document's hops, and the ledger entries of the hop."""
    _say("6. each hub's administrator sees the hop, and each hub's ledger records it:")
    await _show_hub("hub A", a_address, a, a_uuid, "forwarded")
    await _show_hub("hub B", b_address, b, b_uuid, "forwarded_in")


def _codes(statuses: Sequence[apb.StatusBack]) -> str:
    return ", ".join(f"{s.code:02d}" for s in statuses) or "none"


async def _show_hub(name: str, address: str, pki: DemoPki, document_uuid: str, wanted: str) -> None:
    async with _admin(address, pki.folder) as channel:
        timeline = await apb_grpc.AdminServiceStub(channel).GetDocumentTimeline(
            apb.GetDocumentTimelineRequest(document_uuid=document_uuid), timeout=10
        )
        hops = timeline.hops
        trace = " -> ".join(h.hub for h in hops.trace) or "(submitted here)"
        _say(f"   {name}: trace {trace}")
        for arrival in hops.arrivals:
            _say(
                f"   {name}: accepted from hub {arrival.from_hub} at "
                f"{_vietnam(arrival.accepted_at)}, receipt {arrival.receipt_sha256[:16]}…, "
                f"statuses handed back: {_codes(arrival.statuses_back)}"
            )
        for out in hops.hand_overs:
            if not out.HasField("handed_over_at"):
                raise FederationDemoError(f"{name}: not handed over to {out.next_hub}")
            _say(
                f"   {name}: handed over to hub {out.next_hub} at "
                f"{_vietnam(out.handed_over_at)}, its signed receipt "
                f"{out.receipt_sha256[:16]}… kept; statuses back: {_codes(out.statuses_back)}"
            )
        events = await _until(
            f"the {wanted} entry in {name}'s ledger",
            lambda: _hop_events(channel, document_uuid),
            lambda found: wanted in found,
        )
        _say(f"   {name}: ledger entries of the document: {', '.join(events)}")


async def _hop_events(channel: grpc.aio.Channel, document_uuid: str) -> list[str]:
    """The `event` of each ledger entry about the document (as an auditor reads the log)."""
    ledger = lpb_grpc.LedgerServiceStub(channel)
    listed = await ledger.GetDocumentEvents(
        lpb.GetDocumentEventsRequest(document_uuid=document_uuid), timeout=10
    )
    events = []
    for event in listed.events:
        entries = await ledger.GetEntries(
            lpb.GetEntriesRequest(start=event.index, end=event.index + 1), timeout=10
        )
        events += [
            str(json.loads(entry.body).get("data", {}).get("event", event.entry_type))
            for entry in entries.entries
        ]
    return events
