"""A docaxis hub under a national axis: the national-axis emulator runs as a real process (HTTPS
with the suite's CA), docaxis over mutual TLS on real Postgres and RabbitMQ. Documents and
statuses cross both ways, through the per-peer queue on the way out and the poller on the way
in; the axis being down, answering 5xx or refusing for good loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from gateway.edxml import DocumentPackage, StatusPackage, read_edxml
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam
from services.directory.service_layer.handlers import DirectoryHandlers
from services.national.settings import NationalAxisSettings
from tests.conftest import make_header, served, settings_for
from tests.exposition import sample
from tests.infra import SuiteServices
from tests.integration.test_exchange_flow import next_delivery
from tests.integration.test_metrics_flow import get_metrics
from tests.national_axis import (
    EmulatorProcess,
    SystemSeed,
    agency,
    document_edxml,
    started,
    status_edxml,
)
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

NATIONAL = "vdxp"  # the national axis's hub code in this hub's routes
COMMUNE = Agency("000.05.00.H47", "Xã Thử Quốc Gia", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
MINISTRY = "000.00.00.G97"
LOCKED_MINISTRY = "000.00.01.G97"
DEPARTMENT = "000.00.02.G97"  # another agency of the ministry's system
HUB_SYSTEM = SystemSeed("docaxis-h47", (COMMUNE.code,))
MINISTRY_SYSTEM = SystemSeed("bo-thu-g97", (MINISTRY, LOCKED_MINISTRY, DEPARTMENT))


@dataclass(frozen=True, slots=True)
class UnderNational:
    address: str
    pool: asyncpg.Pool
    directory: DirectoryHandlers
    emulator: EmulatorProcess


@pytest.fixture(scope="module")
async def hub(
    services: SuiteServices,
    ledger_key_file: Path,
    pki: SuitePki,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[UnderNational]:
    folder = tmp_path_factory.mktemp("national")
    emulator = await started(
        EmulatorProcess(
            folder,
            [HUB_SYSTEM, MINISTRY_SYSTEM],
            [
                agency(COMMUNE.code, COMMUNE.name, "000.00.00.H47"),
                agency(MINISTRY, "Bộ Thử G97"),
                agency(LOCKED_MINISTRY, "Cục Khóa", MINISTRY, locked=True),
                agency(DEPARTMENT, "Vụ Thử", MINISTRY),
            ],
            page_limit=4,
            date_format="dmy",
            tls=(pki.server.certificate, pki.server.key),
            ca_file=pki.bundle,
        )
    )
    # From here on whatever fails stops what was started (the emulator, the pool).
    pool: asyncpg.Pool | None = None
    try:
        secret_file = folder / "national.secret"
        secret_file.write_text(HUB_SYSTEM.secret, "utf-8")
        secret_file.chmod(0o600)
        url = await postgres.recreate_database(services.database_url, "docaxis_national_h47")
        await migrate(url)
        settings = dataclasses.replace(
            settings_for(url, services.amqp_vhost("national-h47"), ledger_key_file, pki=pki),
            hub_code="province-h47",
            peer_max_backoff_s=0.5,
            # A locked or unknown receiver is retried this long (the axis's registry may catch
            # up), then dead-lettered.
            peer_refusal_window_s=2.0,
            peer_sync_interval_s=0.2,
            national_axis=NationalAxisSettings(
                hub_code=NATIONAL,
                base_url=emulator.url,
                system_id=HUB_SYSTEM.system_id,
                secret_file=str(secret_file),
                ca_file=str(pki.bundle),
                poll_max_s=0.3,
                page_size=4,
            ),
        )
        pool = await postgres.create_pool(url, min_size=1, max_size=2)
        directory = DirectoryHandlers(
            PostgresAgencies(pool), hubs=PostgresHubRoutes(pool), own_hub="province-h47"
        )
        await directory.register(COMMUNE)
        await directory.set_route("G", NATIONAL, "test")
        async with served(settings) as address:
            yield UnderNational(address, pool, directory, emulator)
    finally:
        if pool is not None:
            await pool.close()
        emulator.stop()


async def _submit(hub: UnderNational, pki: SuitePki, recipients: list[str]) -> str:
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        response = await client.submit(f"n-{uuid.uuid4()}", make_header(COMMUNE.code, recipients))
    finally:
        await client.close()
    return response.receipt.document_id


async def _mailbox(hub: UnderNational, document_ids: set[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await hub.emulator.admin())["items"]
    return [i for i in items if i["documentId"] in document_ids]


async def test_a_document_for_a_national_agency_is_uploaded_as_edxml_once(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The copy for the ministry leaves through the national peer's queue as strict edXML
    (sendEdoc), lands once in the ministry's mailbox, and is acknowledged here as handed over
    with the axis's DocId as the hop's receipt."""
    document_id = await _submit(hub, pki, [MINISTRY])
    (item,) = await eventually(lambda: _mailbox(hub, {document_id}), within=30)
    assert (item["from"], item["to"], item["messagetype"]) == (COMMUNE.code, MINISTRY, "edoc")
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        package = read_edxml(await ministry.get_edoc(item["docId"])).raise_for_errors()
    finally:
        await ministry.close()
    assert isinstance(package, DocumentPackage)
    assert package.header.sender.organ_id == COMMUNE.code
    assert [r.organ_id for r in package.header.recipients] == [MINISTRY]
    assert package.header.document_id == document_id

    async def handed_over() -> str | None:
        row = await hub.pool.fetchrow(
            "SELECT d.state, d.via_hub FROM exchange.delivery d JOIN exchange.document doc "
            "ON doc.uuid = d.document_uuid WHERE doc.document_id = $1",
            document_id,
        )
        return f"{row['state']}/{row['via_hub']}" if row else None

    assert await eventually(handed_over, lambda s: s == f"acknowledged/{NATIONAL}")


async def test_the_axis_down_then_back_loses_and_duplicates_nothing(
    hub: UnderNational, pki: SuitePki
) -> None:
    """While the axis answers 503 to everything, copies wait in the peer queue (back-off, the
    circuit opens); once it is back each arrives exactly once."""
    await hub.emulator.admin(down=True)
    try:
        sent = {await _submit(hub, pki, [MINISTRY]) for _ in range(5)}
        # Nothing can have arrived while it is down.
        assert await _mailbox(hub, sent) == []
    finally:
        await hub.emulator.admin(down=False)
    arrived = await eventually(lambda: _mailbox(hub, sent), lambda i: len(i) >= 5, within=60)
    assert sorted(i["documentId"] for i in arrived) == sorted(sent)


async def test_transient_5xx_are_retried(hub: UnderNational, pki: SuitePki) -> None:
    """Two 502s on sendEdoc, then the upload passes: one item, no duplicate."""
    await hub.emulator.admin(fail_next=2, status=502, operation="sendEdoc")
    document_id = await _submit(hub, pki, [MINISTRY])
    (item,) = await eventually(lambda: _mailbox(hub, {document_id}), within=30)
    assert item["to"] == MINISTRY


async def test_a_final_refusal_dead_letters_the_copy(hub: UnderNational, pki: SuitePki) -> None:
    """The axis refuses a locked receiver (error 23): the copy is dead-lettered here with
    INVALID_ADDRESSEE once the refusal window has passed, resendable by an administrator, not
    retried forever."""
    document_id = await _submit(hub, pki, [LOCKED_MINISTRY])

    async def state() -> tuple[str, str] | None:
        row = await hub.pool.fetchrow(
            "SELECT d.state, coalesce(d.dead_letter_reason, '') AS why FROM exchange.delivery d "
            "JOIN exchange.document doc ON doc.uuid = d.document_uuid WHERE doc.document_id = $1",
            document_id,
        )
        return (row["state"], row["why"]) if row else None

    assert await eventually(state, lambda s: s is not None and s[0] == "dead_lettered") == (
        "dead_lettered",
        f"{NATIONAL}:INVALID_ADDRESSEE",
    )
    assert await _mailbox(hub, {document_id}) == []
    # The commune is told (a 02 from docaxis naming the axis and the reason), and reads it.
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        stream = client.receive()
        async with asyncio.timeout(30):
            told = await stream.read()
        stream.cancel()
        await client.acknowledge_notice(told.status.notice_id)
    finally:
        await client.close()
    assert (told.status.document_id, told.status.status.code) == (
        document_id,
        pb.STATUS_CODE_REJECTED,
    )
    assert f"{NATIONAL} từ chối (INVALID_ADDRESSEE)" in told.status.status.description


async def _national_send(
    hub: UnderNational,
    data: bytes,
    messagetype: str = "edoc",
    *,
    sender: str = MINISTRY,
    to: list[str] | None = None,
) -> str:
    """An upload by the ministry's system (a status goes to its ResponseFor sender unless `to`
    names the recipients)."""
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        return await ministry.send_edoc(
            data,
            sender=sender,
            messagetype=messagetype,
            to=to if to is not None else [COMMUNE.code] if messagetype == "edoc" else [],
        )
    finally:
        await ministry.close()


async def _statuses_to_ministry(hub: UnderNational, document_id: str) -> list[str]:
    """The codes of the status packages about `document_id` in the ministry's mailbox."""
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    codes = []
    try:
        for item in await _mailbox(hub, {document_id}):
            if item["messagetype"] != "status" or item["to"] != MINISTRY:
                continue
            package = read_edxml(await ministry.get_edoc(item["docId"])).raise_for_errors()
            assert isinstance(package, StatusPackage)
            codes.append(package.status_code)
    finally:
        await ministry.close()
    return sorted(codes)


async def _item_status(hub: UnderNational, doc_id: str) -> set[str]:
    items = (await hub.emulator.admin())["items"]
    return {i["status"] for i in items if i["docId"] == doc_id}


async def _copies(hub: UnderNational, document_id: str) -> list[asyncpg.Record]:
    return list(
        await hub.pool.fetch(
            "SELECT d.id, d.recipient, doc.verification->>'mode' AS mode, doc.envelope "
            "FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid "
            "WHERE doc.document_id = $1",
            document_id,
        )
    )


def _document_id(number: str) -> str:
    today = today_in_vietnam()
    return f"{MINISTRY},{today:%Y/%m/%d},{number}/BTC-VP"


async def test_a_national_document_is_stored_once_then_acknowledged_done(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The poller fetches a ministry's package (dd/MM/yyyy dates, an empty envelope signature),
    stores one copy for the commune, transport-attested by the national axis, keeps the file
    byte for byte, and only then acknowledges it `done`; the commune receives it, and its
    acknowledgement (01) and 03 go back to the ministry as status packages."""
    data = document_edxml(MINISTRY, [COMMUNE.code], "901", dmy_dates=True, empty_signature=True)
    doc_id = await _national_send(hub, data)
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    (copy,) = await _copies(hub, _document_id("901"))
    assert (copy["recipient"], copy["mode"]) == (COMMUNE.code, "transport_attested")
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        delivery = await next_delivery(client.receive(), within=30)
        assert delivery.header.subject == "Công văn thử qua trục quốc gia"
        await client.acknowledge(delivery.delivery_id)
        await client.report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
        )
    finally:
        await client.close()
    codes = await eventually(
        lambda: _statuses_to_ministry(hub, _document_id("901")),
        lambda c: c == ["01", "03"],
        within=30,
    )
    assert codes == ["01", "03"]


async def test_a_crash_between_storing_and_acknowledging_stores_once(
    hub: UnderNational,
) -> None:
    """updateStatus fails three times (as if docaxis died after storing): the item is listed
    again and fetched again, and still one copy exists; it ends `done`."""
    await hub.emulator.admin(fail_next=3, status=503, operation="updateStatus")
    doc_id = await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "902"))
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    assert (await hub.emulator.admin())["fail_next"] == 0  # the three failures were used
    assert len(await _copies(hub, _document_id("902"))) == 1


async def test_more_items_than_a_page_are_all_taken_once(hub: UnderNational) -> None:
    """Nine documents with a page limit of 4: every one stored once and acknowledged."""
    numbers = [f"91{n}" for n in range(9)]
    doc_ids = [
        await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], number))
        for number in numbers
    ]

    async def all_done() -> bool:
        return [await _item_status(hub, d) for d in doc_ids] == [{"done"}] * len(doc_ids)

    await eventually(all_done, within=60)
    assert [len(await _copies(hub, _document_id(n))) for n in numbers] == [1] * 9


async def test_an_unreadable_package_is_acknowledged_fail(hub: UnderNational) -> None:
    """A package this hub can never store (its sender's code is not a code) is given up with
    `fail`, not fetched forever; the next one passes."""
    bad = document_edxml(MINISTRY, [COMMUNE.code], "920").replace(
        f"<edXML:OrganId>{COMMUNE.code}</edXML:OrganId>".encode(),
        b"<edXML:OrganId>not-a-code</edXML:OrganId>",
    )
    doc_id = await _national_send(hub, bad)
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"fail"}, within=30)


async def test_a_status_from_the_national_side_reaches_the_sender(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The ministry answers a commune's document with 03 as a status package: the poller
    applies it to the ministry's copy, and the commune's Track shows it."""
    document_id = await _submit(hub, pki, [MINISTRY])
    await eventually(lambda: _mailbox(hub, {document_id}), within=30)
    doc_id = await _national_send(hub, status_edxml(MINISTRY, document_id, "03"), "status")
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    uuid_of = await hub.pool.fetchval(
        "SELECT uuid FROM exchange.document WHERE document_id = $1", document_id
    )
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        track = await client.track(str(uuid_of))
    finally:
        await client.close()
    (recipient,) = track.recipients
    assert [s.code for s in recipient.statuses] == [pb.STATUS_CODE_ACCEPTED]


async def test_national_agencies_are_imported_through_the_delta_feed(
    hub: UnderNational,
) -> None:
    """An agency registered on the national axis becomes addressable here, served by the
    national axis (no route needed); deleted there, it is closed here (a tombstone)."""
    other = "000.00.00.H48"
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        await ministry.register_agency(other, "UBND tỉnh Thử 48")

        async def served_by() -> tuple[str | None, str | None]:
            (r,) = await hub.directory.resolve([other], today_in_vietnam())
            return r.effective, r.hub

        assert await eventually(served_by, lambda r: r == (other, NATIONAL), within=30)
        await ministry.delete_agency(other)
        assert await eventually(served_by, lambda r: r[0] is None, within=30)
    finally:
        await ministry.close()
    (own,) = await hub.directory.resolve([COMMUNE.code], today_in_vietnam())
    assert own.hub is None  # this hub's own agency, listed by the axis too, stays its own


async def test_the_axis_killed_then_restarted_loses_and_duplicates_nothing_either_way(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The ministry's documents wait in the axis (the hub's polls fail meanwhile), then the axis
    is killed with SIGKILL; the commune sends while it is gone. After a restart on the same
    state, every document reaches the other side exactly once (the test counts), and the
    national peer shows in the per-peer series and peer state like a hub-to-hub peer."""
    await hub.emulator.admin(fail_next=100_000, status=503, operation="getReceivedEdocList")
    inbound = [f"93{n}" for n in range(4)]
    inbound_ids = [
        await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], number))
        for number in inbound
    ]
    hub.emulator.kill()
    try:
        outbound = {await _submit(hub, pki, [MINISTRY]) for _ in range(4)}
    finally:
        await hub.emulator.start()  # the faults were in memory: gone with the process

    async def inbound_done() -> bool:
        return [await _item_status(hub, d) for d in inbound_ids] == [{"done"}] * len(inbound)

    await eventually(inbound_done, within=60)
    assert [len(await _copies(hub, _document_id(n))) for n in inbound] == [1] * len(inbound)
    arrived = await eventually(
        lambda: _mailbox(hub, outbound), lambda i: len(i) >= len(outbound), within=60
    )
    assert sorted(i["documentId"] for i in arrived) == sorted(outbound)

    exposition = await get_metrics(hub.address, pki.monitor)
    assert (
        sample(exposition, "docaxis_peer_items_total", hub=NATIONAL, outcome="forwarded") or 0
    ) >= 4
    assert sample(exposition, "docaxis_peer_circuit_state", hub=NATIONAL, state="closed") == 1.0

    async def reported() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await hub.pool.fetchrow(
            "SELECT kind, address, circuit FROM exchange.peer_state WHERE hub = $1", NATIONAL
        )
        return row

    row = await eventually(reported, lambda r: r is not None and r["circuit"] == "closed")
    assert row is not None
    assert (row["kind"], row["address"]) == ("national-axis", hub.emulator.url)


async def test_a_recall_goes_to_the_national_recipient_as_a_revoke_package(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The commune recalls a document the ministry has received through the axis: a revoke
    package (BussinessDocType 1) naming the original and the reason reaches the ministry."""
    document_id = await _submit(hub, pki, [MINISTRY])
    await eventually(lambda: _mailbox(hub, {document_id}), within=30)
    uuid_of = await hub.pool.fetchval(
        "SELECT uuid FROM exchange.document WHERE document_id = $1", document_id
    )
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        await client.recall(str(uuid_of), "Gửi nhầm", [MINISTRY])
    finally:
        await client.close()
    items = await eventually(lambda: _mailbox(hub, {document_id}), lambda i: len(i) >= 2, within=30)
    revoke = next(i for i in items if i["docId"] != items[0]["docId"])
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        package = read_edxml(await ministry.get_edoc(revoke["docId"])).raise_for_errors()
    finally:
        await ministry.close()
    assert isinstance(package, DocumentPackage)
    business = package.trace.business
    assert business is not None
    assert (int(package.business_type), business.document_id, business.reason) == (
        1,
        document_id,
        "Gửi nhầm",
    )


async def test_a_revoke_package_from_the_national_side_recalls_the_local_copy(
    hub: UnderNational,
) -> None:
    """The ministry revokes a document it sent the commune through the axis: the poller
    applies it as the sender's recall of the commune's copy and acknowledges it."""
    await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "950"))
    await eventually(lambda: _copies(hub, _document_id("950")), within=30)
    revoke = document_edxml(MINISTRY, [COMMUNE.code], "950", revoke=_document_id("950"))
    doc_id = await _national_send(hub, revoke)
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    rows = await hub.pool.fetch(
        "SELECT d.recall_state, d.recall_reason FROM exchange.delivery d "
        "JOIN exchange.document doc ON doc.uuid = d.document_uuid WHERE doc.document_id = $1",
        _document_id("950"),
    )
    # Not acknowledged yet, so withdrawn at once ('pending' had the commune received it).
    (row,) = rows
    assert row["recall_state"] in ("withdrawn", "pending")
    assert row["recall_reason"] == "Thu hồi do gửi nhầm"


async def _recall_state(hub: UnderNational, delivery_id: uuid.UUID) -> tuple[str, str, str]:
    row = await hub.pool.fetchrow(
        "SELECT state, coalesce(recall_state, '') AS recall, coalesce(recall_reason, '') AS why "
        "FROM exchange.delivery WHERE id = $1",
        delivery_id,
    )
    assert row is not None
    return row["state"], row["recall"], row["why"]


async def _received_and_not(
    hub: UnderNational, pki: SuitePki, received: str, unreceived: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The commune's copies of two ministry documents (by number) sent through the axis, the
    first acknowledged by the commune, the other not."""
    copies = []
    for number in (received, unreceived):
        await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], number))
        (copy,) = await eventually(functools.partial(_copies, hub, _document_id(number)), within=30)
        copies.append(copy)
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        await client.acknowledge(str(copies[0]["id"]))
    finally:
        await client.close()
    return copies[0], copies[1]


async def test_a_retrieve_request_13_from_the_national_side_recalls_the_local_copies(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The ministry takes back (status 13) two documents it sent the commune: the copy not yet
    acknowledged is withdrawn at once, as a local recall before receipt, and answered 15 for the
    commune (the ministry waits for an answer); the acknowledged one waits for the commune's
    decision, and the commune's 15 withdraws it and goes back to the ministry as a status
    package. Each 13 is acknowledged `done` on the axis."""
    read, unread = await _received_and_not(hub, pki, "961", "960")
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        retrieves = [
            await _national_send(
                hub,
                status_edxml(MINISTRY, _document_id(number), "13", "Lấy lại để sửa"),
                "status",
                to=[COMMUNE.code],
            )
            for number in ("960", "961")
        ]

        async def settled() -> list[set[str]]:
            return [await _item_status(hub, doc_id) for doc_id in retrieves]

        await eventually(settled, lambda s: s == [{"done"}, {"done"}], within=30)
        assert await _recall_state(hub, unread["id"]) == (
            "withdrawn",
            "withdrawn",
            "Lấy lại để sửa",
        )
        assert await _recall_state(hub, read["id"]) == (
            "acknowledged",
            "pending",
            "Lấy lại để sửa",
        )
        await client.report_status(
            str(read["id"]), pb.STATUS_CODE_RECALL_AGREED, status_id=str(uuid.uuid4())
        )
    finally:
        await client.close()
    assert await _recall_state(hub, read["id"]) == ("withdrawn", "agreed", "Lấy lại để sửa")
    codes = await eventually(
        lambda: _statuses_to_ministry(hub, _document_id("961")),
        lambda c: "15" in c,
        within=30,
    )
    assert codes == ["01", "15"]
    assert await eventually(
        lambda: _statuses_to_ministry(hub, _document_id("960")), lambda c: c == ["15"], within=30
    ) == ["15"]


async def test_a_retrieve_request_in_another_agencys_name_is_refused(hub: UnderNational) -> None:
    """A 13 uploaded by one agency (the axis's `from`) that speaks for the document's sender is
    given up with `fail`, and the copy stays the commune's."""
    await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "962"))
    (copy,) = await eventually(lambda: _copies(hub, _document_id("962")), within=30)
    forged = status_edxml(MINISTRY, _document_id("962"), "13", "Lấy lại")
    doc_id = await _national_send(hub, forged, "status", sender=LOCKED_MINISTRY, to=[COMMUNE.code])
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"fail"}, within=30)
    state, recall, _reason = await _recall_state(hub, copy["id"])
    assert (state != "withdrawn", recall) == (True, "")


async def test_an_update_and_a_replacement_from_the_national_side_supersede_the_local_copies(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The ministry updates (BussinessDocType 2) a document the commune has received and
    replaces (3) one it has not: each new version is stored as a document linked to the one it
    acts on; the received copy waits for the commune's decision, whose 15 goes back to the
    ministry, and the unreceived one is withdrawn at once, as when the sender is local."""
    received, unreceived = await _received_and_not(hub, pki, "970", "972")
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        updated, replaced = _document_id("971"), _document_id("973")
        await _national_send(
            hub, document_edxml(MINISTRY, [COMMUNE.code], "971", update=_document_id("970"))
        )
        await _national_send(
            hub, document_edxml(MINISTRY, [COMMUNE.code], "973", replace=_document_id("972"))
        )
        (update_copy,) = await eventually(lambda: _copies(hub, updated), within=30)
        await eventually(lambda: _copies(hub, replaced), within=30)
        links = await hub.pool.fetch(
            "SELECT document_id, business_type, header -> 'response_for' AS acts_on "
            "FROM exchange.document WHERE document_id = ANY($1::text[]) ORDER BY document_id",
            [updated, replaced],
        )
        assert [(r["business_type"], r["acts_on"]) for r in links] == [
            (2, f'["{_document_id("970")}"]'),
            (3, f'["{_document_id("972")}"]'),
        ]
        assert await eventually(
            lambda: _recall_state(hub, received["id"]), lambda s: s[1] == "pending", within=30
        ) == ("acknowledged", "pending", f"Cập nhật: thay bằng văn bản {updated}")
        assert await eventually(
            lambda: _recall_state(hub, unreceived["id"]), lambda s: s[1] != "", within=30
        ) == ("withdrawn", "withdrawn", f"Thay thế bằng văn bản {replaced}")
        # The new versions themselves are the commune's to receive.
        assert (await _recall_state(hub, update_copy["id"]))[1] == ""
        await client.report_status(
            str(received["id"]), pb.STATUS_CODE_RECALL_AGREED, status_id=str(uuid.uuid4())
        )
    finally:
        await client.close()
    codes = await eventually(
        lambda: _statuses_to_ministry(hub, _document_id("970")),
        lambda c: "15" in c,
        within=30,
    )
    assert codes == ["01", "15"]


async def _submit_acting(
    hub: UnderNational, pki: SuitePki, business: int, target: str, recipients: list[str]
) -> str:
    header = make_header(COMMUNE.code, recipients)
    header.business_type = business  # type: ignore[assignment]  # an int of the enum
    header.response_for.append(target)
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        response = await client.submit(f"n-{uuid.uuid4()}", header)
    finally:
        await client.close()
    return response.receipt.document_id


async def _ministry_copy(hub: UnderNational, document_id: str) -> uuid.UUID:
    row = await hub.pool.fetchrow(
        "SELECT d.id FROM exchange.delivery d JOIN exchange.document doc "
        "ON doc.uuid = d.document_uuid WHERE doc.document_id = $1 AND d.recipient = $2 "
        "AND doc.business_type = 0",
        document_id,
        MINISTRY,
    )
    assert row is not None
    delivery_id: uuid.UUID = row["id"]
    return delivery_id


async def _recall_notices_settled(
    hub: UnderNational, document_ids: list[str], agency: str = MINISTRY
) -> list[bool]:
    """Whether each recall notice for the agency's copies of the documents was handed over
    (or settled without an upload)."""
    rows = await hub.pool.fetch(
        "SELECT n.acknowledged_at IS NOT NULL AS settled FROM exchange.notice n "
        "JOIN exchange.delivery d ON d.id = n.delivery_id "
        "JOIN exchange.document doc ON doc.uuid = d.document_uuid "
        "WHERE doc.document_id = ANY($1::text[]) AND n.agency = $2 AND n.kind = 'recall' "
        "ORDER BY n.created_at",
        document_ids,
        agency,
    )
    return [r["settled"] for r in rows]


async def test_an_update_and_a_replacement_for_a_national_agency_leave_as_their_packages(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The commune updates (BussinessDocType 2) and replaces (3) documents the ministry has
    through the axis: each leaves as its own package naming the version it acts on (Bussiness
    DocumentId, ReplacementInfo), and no separate revoke; the ministry's 15 and 16 settle the
    commune's pending decisions (agreed: the copy withdrawn; refused: it stays)."""
    original = await _submit(hub, pki, [MINISTRY])
    other = await _submit(hub, pki, [MINISTRY])
    await eventually(lambda: _mailbox(hub, {original, other}), lambda i: len(i) == 2, within=30)
    updated = await _submit_acting(hub, pki, common_pb2.BUSINESS_TYPE_UPDATE, original, [MINISTRY])
    replaced = await _submit_acting(hub, pki, common_pb2.BUSINESS_TYPE_REPLACE, other, [MINISTRY])
    items = await eventually(
        lambda: _mailbox(hub, {updated, replaced}), lambda i: len(i) == 2, within=30
    )
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        packages = {}
        for item in items:
            package = read_edxml(await ministry.get_edoc(item["docId"])).raise_for_errors()
            assert isinstance(package, DocumentPackage)
            packages[item["documentId"]] = package
    finally:
        await ministry.close()
    update, replacement = packages[updated], packages[replaced]
    assert update.trace.business is not None
    assert replacement.trace.business is not None
    assert (int(update.business_type), update.trace.business.document_id) == (2, original)
    assert int(replacement.business_type) == 3
    assert [r.document_id for r in replacement.trace.business.replacements] == [other]

    # The update and the replacement are the requests: their recalls of the originals were
    # settled with the axis without a revoke package of their own.
    await eventually(
        lambda: _recall_notices_settled(hub, [original, other]),
        lambda s: s == [True, True],
        within=30,
    )
    assert [i["messagetype"] for i in await _mailbox(hub, {original, other})] == ["edoc", "edoc"]
    assert await _recall_state(hub, await _ministry_copy(hub, original)) == (
        "acknowledged",
        "pending",
        f"Cập nhật: thay bằng văn bản {updated}",
    )
    # The ministry agrees to the update naming the original, and refuses the replacement
    # naming the replacement itself (DMSs do both): each settles the decision on the original.
    answers = [
        await _national_send(hub, status_edxml(MINISTRY, original, "15"), "status"),
        await _national_send(hub, status_edxml(MINISTRY, replaced, "16"), "status"),
    ]

    async def settled() -> list[set[str]]:
        return [await _item_status(hub, doc_id) for doc_id in answers]

    await eventually(settled, lambda s: s == [{"done"}, {"done"}], within=30)
    assert (await _recall_state(hub, await _ministry_copy(hub, original)))[:2] == (
        "withdrawn",
        "agreed",
    )
    assert (await _recall_state(hub, await _ministry_copy(hub, other)))[:2] == (
        "acknowledged",
        "refused",
    )


async def _series(hub: UnderNational, pki: SuitePki) -> dict[str, float]:
    """The national peer's series this test watches, from one scrape (absent ones as -1)."""
    text = await get_metrics(hub.address, pki.monitor)
    wanted = {
        "polls": ("docaxis_peer_polls_total", {}),
        "stored": ("docaxis_peer_fetched_total", {"messagetype": "edoc", "outcome": "stored"}),
        "poll_down": ("docaxis_peer_errors_total", {"direction": "poll", "kind": "UNAVAILABLE"}),
        "send_down": (
            "docaxis_peer_errors_total",
            {"direction": "forward", "kind": "UNAVAILABLE"},
        ),
        "send_auth": (
            "docaxis_peer_errors_total",
            {"direction": "forward", "kind": "UNAUTHENTICATED"},
        ),
        "poll_auth": (
            "docaxis_peer_errors_total",
            {"direction": "poll", "kind": "UNAUTHENTICATED"},
        ),
        "backoff": ("docaxis_peer_poll_backoff_seconds", {}),
        "last_poll": ("docaxis_peer_poll_last_success_timestamp_seconds", {}),
        "in_a_row": ("docaxis_peer_consecutive_failures", {}),
        "contact": ("docaxis_peer_last_contact_timestamp_seconds", {}),
    }
    found = {}
    for key, (name, labels) in wanted.items():
        value = sample(text, name, hub=NATIONAL, **labels)
        found[key] = -1.0 if value is None else value
    return found


async def test_a_scrape_shows_the_national_peers_polls_fetches_failures_and_recovery(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The poller's and the forwarder's series move: a document fetched counts as stored with a
    poll that succeeded; while the axis is down, polls and uploads fail as UNAVAILABLE, the
    poll back-off grows and the forwarder's failures in a row count up; once it is back the
    upload passes (failures in a row 0 again) and polls succeed again."""
    before = await _series(hub, pki)
    assert before["polls"] >= 1  # the poller runs from the start
    data = document_edxml(MINISTRY, [COMMUNE.code], "980")
    doc_id = await _national_send(hub, data)
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    fetched = await _series(hub, pki)
    assert fetched["stored"] == before["stored"] + 1
    assert fetched["last_poll"] >= before["last_poll"] > 0
    await hub.emulator.admin(down=True)
    try:
        document_id = await _submit(hub, pki, [MINISTRY])
        down = await eventually(
            lambda: _series(hub, pki),
            lambda s: (
                s["poll_down"] > fetched["poll_down"]
                and s["send_down"] > fetched["send_down"]
                and s["in_a_row"] >= 1
            ),
            within=30,
        )
        assert down["backoff"] > 0
        last_poll = down["last_poll"]
    finally:
        await hub.emulator.admin(down=False)
    await eventually(lambda: _mailbox(hub, {document_id}), within=60)
    after = await eventually(
        lambda: _series(hub, pki),
        lambda s: s["in_a_row"] == 0 and s["last_poll"] > last_poll,
        within=30,
    )
    assert after["contact"] >= down["contact"]
    assert after["polls"] > down["polls"]


async def _handed_over(hub: UnderNational, document_id: str) -> str | None:
    row = await hub.pool.fetchrow(
        "SELECT d.state, d.via_hub FROM exchange.delivery d JOIN exchange.document doc "
        "ON doc.uuid = d.document_uuid WHERE doc.document_id = $1",
        document_id,
    )
    return f"{row['state']}/{row['via_hub']}" if row else None


async def test_platform_errors_and_refused_credentials_are_retried_not_dead_lettered(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The axis answers FAIL with code 20 (platform error), then 15 (bad system id/secret), to
    uploads and to polls: each is retried (counted as UNAVAILABLE or UNAUTHENTICATED), nothing
    is dead-lettered or given up, and every item crosses once."""
    before = await _series(hub, pki)
    sent = []
    for code in ("20", "15"):
        await hub.emulator.admin(fail_next=2, error_code=code, operation="sendEdoc")
        document_id = await _submit(hub, pki, [MINISTRY])
        (item,) = await eventually(functools.partial(_mailbox, hub, {document_id}), within=30)
        assert item["to"] == MINISTRY
        sent.append(document_id)
    for document_id in sent:
        assert await eventually(
            functools.partial(_handed_over, hub, document_id),
            lambda s: s == f"acknowledged/{NATIONAL}",
        )
    await hub.emulator.admin(fail_next=3, error_code="15", operation="getReceivedEdocList")
    doc_id = await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "985"))
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    assert len(await _copies(hub, _document_id("985"))) == 1
    after = await _series(hub, pki)
    assert after["send_down"] - before["send_down"] >= 2  # the two 20s
    assert after["send_auth"] - before["send_auth"] >= 2  # the two 15s
    # Of the three 15s on listing, the forwarder's idle probe may have drawn some.
    assert after["poll_auth"] > before["poll_auth"]


async def test_statuses_both_ways_wait_out_an_axis_that_is_down(
    hub: UnderNational, pki: SuitePki
) -> None:
    """A ministry's 03 waits in the axis and the commune's 01 and 03 wait here while the axis
    is down (the poller and the forwarder fail meanwhile); once it is back, each status reaches
    the other side exactly once."""
    await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "990"))
    (copy,) = await eventually(lambda: _copies(hub, _document_id("990")), within=30)
    outgoing = await _submit(hub, pki, [MINISTRY])
    await eventually(lambda: _handed_over(hub, outgoing), lambda s: s == f"acknowledged/{NATIONAL}")
    # The hub cannot list while the ministry answers: its 03 waits in the axis.
    await hub.emulator.admin(fail_next=100_000, status=503, operation="getReceivedEdocList")
    await _national_send(hub, status_edxml(MINISTRY, outgoing, "03"), "status")
    before = await _series(hub, pki)
    await hub.emulator.admin(down=True)
    try:
        client: AgencyClient = pki.client(hub.address, COMMUNE.code)
        try:
            await client.acknowledge(str(copy["id"]))
            await client.report_status(
                str(copy["id"]), pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
            )
        finally:
            await client.close()
        # Down for a while: both sides have failed against it more than once.
        await eventually(
            lambda: _series(hub, pki),
            lambda s: (
                s["poll_down"] >= before["poll_down"] + 2
                and s["send_down"] >= before["send_down"] + 2
            ),
            within=60,
        )
        assert await _statuses_to_ministry(hub, _document_id("990")) == []
    finally:
        await hub.emulator.admin(down=False)
    codes = await eventually(
        lambda: _statuses_to_ministry(hub, _document_id("990")),
        lambda c: len(c) >= 2,
        within=60,
    )
    assert codes == ["01", "03"]
    uuid_of = await hub.pool.fetchval(
        "SELECT uuid FROM exchange.document WHERE document_id = $1", outgoing
    )
    client = pki.client(hub.address, COMMUNE.code)
    try:

        async def ministry_statuses() -> list[int]:
            (recipient,) = (await client.track(str(uuid_of))).recipients
            return [s.code for s in recipient.statuses]

        assert await eventually(ministry_statuses, lambda c: len(c) > 0, within=60) == [
            pb.STATUS_CODE_ACCEPTED
        ]
    finally:
        await client.close()


async def test_a_revoke_package_for_a_national_agency_is_answered_under_the_shared_id(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The commune sends a revoke package (BussinessDocType 1, the original's DocumentId) for a
    document the ministry has: it leaves once, as that package; the ministry's 15 naming the
    shared DocumentId settles the recall of the original (withdrawn), not of the revoke."""
    original = await _submit(hub, pki, [MINISTRY])
    await eventually(lambda: _handed_over(hub, original), lambda s: s == f"acknowledged/{NATIONAL}")
    header = make_header(COMMUNE.code, [MINISTRY])
    number, notation = original.split(",", 2)[2].split("/", 1)
    header.code.number, header.code.notation = number, notation
    header.business_type = common_pb2.BUSINESS_TYPE_REVOKE
    header.response_for.append(original)
    header.content = "Thu hồi do sai sót"
    client: AgencyClient = pki.client(hub.address, COMMUNE.code)
    try:
        await client.submit(f"n-{uuid.uuid4()}", header)
    finally:
        await client.close()
    items = await eventually(lambda: _mailbox(hub, {original}), lambda i: len(i) >= 2, within=30)
    assert await _recall_state(hub, await _ministry_copy(hub, original)) == (
        "acknowledged",
        "pending",
        "Thu hồi do sai sót",
    )
    doc_id = await _national_send(hub, status_edxml(MINISTRY, original, "15"), "status")
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    assert (await _recall_state(hub, await _ministry_copy(hub, original)))[:2] == (
        "withdrawn",
        "agreed",
    )
    # One upload of the original and one of the revoke: the recall was carried by the latter.
    await eventually(
        lambda: _recall_notices_settled(hub, [original]), lambda s: s == [True], within=30
    )
    uploads = [i for i in await _mailbox(hub, {original}) if i["to"] == MINISTRY]
    assert [i["messagetype"] for i in uploads] == ["edoc", "edoc"]
    assert {i["docId"] for i in uploads} == {i["docId"] for i in items}


async def test_a_package_that_cannot_be_fetched_for_a_while_is_fetched_again(
    hub: UnderNational,
) -> None:
    """getEdoc answers 503 three times: the item stays listed (nothing acknowledged), is fetched
    again and stored once."""
    await hub.emulator.admin(fail_next=3, status=503, operation="getEdoc")
    doc_id = await _national_send(hub, document_edxml(MINISTRY, [COMMUNE.code], "995"))
    assert await eventually(lambda: _item_status(hub, doc_id), lambda s: s == {"done"}, within=30)
    assert (await hub.emulator.admin())["fail_next"] == 0
    assert len(await _copies(hub, _document_id("995"))) == 1


async def test_a_national_recipient_an_update_drops_gets_a_revoke_package(
    hub: UnderNational, pki: SuitePki
) -> None:
    """The commune updates a document it sent the ministry and one of its departments, and the
    update goes to the department only: the department gets the update package (which carries
    its decision), the dropped ministry a revoke package of the original naming the update."""
    original = await _submit(hub, pki, [MINISTRY, DEPARTMENT])
    await eventually(lambda: _mailbox(hub, {original}), lambda i: len(i) == 2, within=30)
    updated = await _submit_acting(
        hub, pki, common_pb2.BUSINESS_TYPE_UPDATE, original, [DEPARTMENT]
    )
    await eventually(lambda: _mailbox(hub, {updated}), within=30)
    revokes = await eventually(lambda: _mailbox(hub, {original}), lambda i: len(i) == 3, within=30)
    (revoke,) = [i for i in revokes if i["to"] == MINISTRY][1:]
    ministry = hub.emulator.client(MINISTRY_SYSTEM)
    try:
        package = read_edxml(await ministry.get_edoc(revoke["docId"])).raise_for_errors()
    finally:
        await ministry.close()
    assert isinstance(package, DocumentPackage)
    assert package.trace.business is not None
    assert (int(package.business_type), package.trace.business.document_id) == (1, original)
    assert package.trace.business.reason == (
        f"Thu hồi: nơi nhận bị bỏ khi cập nhật bằng văn bản {updated}"
    )
    # The department's decision travels with the update: no revoke package for it.
    await eventually(
        lambda: _recall_notices_settled(hub, [original], DEPARTMENT),
        lambda s: s == [True],
        within=30,
    )
    uploads = await _mailbox(hub, {original})
    assert [i["to"] for i in uploads].count(DEPARTMENT) == 1
