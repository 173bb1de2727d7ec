"""Reorganised agencies on real Postgres, RabbitMQ and gRPC: mail to closed codes follows their
successors (the 2025 reform's demo directory), closures without successor are refused, recorded
reorganisations are ledger facts, and the delta feed returns exactly what changed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from docaxis_client.client import AgencyClient
from services.common.grpc_errors import error_details
from services.directory.agency_csv import DEMO_DIRECTORY_CSV, read_agency_csv
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import make_header
from tests.e2e.processes import DOCAXIS
from tests.integration.test_exchange_flow import next_delivery, no_delivery
from tests.integration.test_ledger_flow import settled
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]

WARD_16 = "000.08.08.H29"  # Phường 16 (Quận 8), merged on 1 July 2025
PHU_DINH = "000.00.71.H29"  # phường Phú Định, its successor
DISTRICT_8 = "000.00.08.H29"  # Quận 8: closed without successor
NAM_DINH_FINANCE = "000.00.11.H40"  # Sở Tài chính tỉnh Nam Định
NINH_BINH_FINANCE = "000.00.12.H37"  # Sở Tài chính tỉnh Ninh Bình


@pytest.fixture
async def reform(directory: DirectoryHandlers, pki: SuitePki) -> None:
    """The demo directory's codes that are absent (tests share one database: another
    test may have registered some code of the file otherwise), with certificates for the
    agencies these tests act as."""
    agencies = read_agency_csv(DEMO_DIRECTORY_CSV)
    present, _unknown = await directory.get_many([a.code for a in agencies])
    known = {a.code for a in present}
    for agency in agencies:
        if agency.code not in known:
            await directory.register(agency_from_pb(agency))
    for code in (PHU_DINH, NINH_BINH_FINANCE):
        pki.agency(code)


async def drain_inbox(client: AgencyClient) -> None:
    """Acknowledges whatever earlier tests left in a shared agency's queue."""
    stream = client.receive()
    try:
        while True:
            try:
                async with asyncio.timeout(0.5):
                    response = await stream.read()
            except TimeoutError:
                return
            assert isinstance(response, pb.ReceiveResponse)
            await client.acknowledge(response.delivery.delivery_id)
    finally:
        stream.cancel()


async def routing_body(axis: str, pki: SuitePki, document_uuid: str) -> dict[str, object]:
    """The document's `routing` ledger entry, once sequenced."""
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = lpb_grpc.LedgerServiceStub(channel)
        history = await settled(stub, document_uuid, "submission", "routing")
        (routing,) = [e for e in history.events if e.entry_type == "routing"]
        entries = await stub.GetEntries(
            lpb.GetEntriesRequest(start=routing.index, end=routing.index + 1)
        )
    body: dict[str, object] = json.loads(entries.entries[0].body)
    return body


@pytest.mark.usefixtures("reform")
async def test_mail_to_a_merged_ward_reaches_its_successor_and_says_so(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    """Addressed to Phường 16, delivered to phường Phú Định: the receipt tells the sender the
    effective recipient, the pushed delivery carries the code written, Track shows both, and the
    routing ledger entry records both."""
    (sender,) = await register_agencies(1)
    await drain_inbox(clients[PHU_DINH])
    stream = clients[PHU_DINH].receive()
    response = await clients[sender].submit(
        f"c-{uuid.uuid4()}", make_header(sender, [WARD_16], subject="Về sắp xếp đơn vị")
    )
    (route,) = response.receipt.routes
    assert (route.requested_recipient, route.effective_recipient) == (WARD_16, PHU_DINH)
    delivery = await next_delivery(stream)
    assert delivery.document_uuid == response.receipt.document_uuid
    assert delivery.requested_recipient == WARD_16
    assert list(delivery.header.recipients) == [WARD_16]
    await clients[PHU_DINH].acknowledge(delivery.delivery_id)
    stream.cancel()
    for viewer in (sender, PHU_DINH):
        track = await clients[viewer].track(response.receipt.document_uuid)
        assert [
            (r.requested_recipient, r.effective_recipient, r.state) for r in track.recipients
        ] == [(WARD_16, PHU_DINH, pb.DELIVERY_STATE_ACKNOWLEDGED)]
    body = await routing_body(axis, pki, response.receipt.document_uuid)
    assert body["to"] == PHU_DINH
    data = body["data"]
    assert isinstance(data, dict)
    assert data["requested"] == WARD_16
    assert data["delivery"] == route.delivery_id


@pytest.mark.usefixtures("reform")
async def test_a_department_of_a_merged_province_is_routed_to_its_successor(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Sở Tài chính tỉnh Nam Định → Sở Tài chính tỉnh Ninh Bình."""
    (sender,) = await register_agencies(1)
    await drain_inbox(clients[NINH_BINH_FINANCE])
    stream = clients[NINH_BINH_FINANCE].receive()
    response = await clients[sender].submit(
        f"c-{uuid.uuid4()}", make_header(sender, [NAM_DINH_FINANCE])
    )
    assert [(r.requested_recipient, r.effective_recipient) for r in response.receipt.routes] == [
        (NAM_DINH_FINANCE, NINH_BINH_FINANCE)
    ]
    delivery = await next_delivery(stream)
    assert delivery.requested_recipient == NAM_DINH_FINANCE
    await clients[NINH_BINH_FINANCE].acknowledge(delivery.delivery_id)
    stream.cancel()


@pytest.mark.usefixtures("reform")
async def test_a_closed_district_without_successor_is_refused_naming_the_closure(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Quận 8 closed on 30 June 2025 with no successor: FAILED_PRECONDITION INVALID_ADDRESSEE,
    and nothing is stored or delivered."""
    sender, bystander = await register_agencies(2)
    consignment = f"c-{uuid.uuid4()}"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[sender].submit(consignment, make_header(sender, [bystander, DISTRICT_8]))
    details = error_details(failure.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_ADDRESSEE",
    )
    assert details.metadata["closed"] == DISTRICT_8
    assert details.metadata[f"closed_on.{DISTRICT_8}"] == "2025-06-30"
    assert details.metadata[f"successors.{DISTRICT_8}"] == ""
    assert "closed on 2025-06-30" in details.message
    stream = clients[bystander].receive()
    await no_delivery(stream, within=1.0)
    stream.cancel()


async def test_a_recorded_chain_of_reorganisations_is_followed_and_logged(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    axis: str,
    pki: SuitePki,
    database_url: str,
) -> None:
    """A renamed on 1 January, then merged into C on 1 July: mail to A reaches C. Each recorded
    reorganisation closed its codes under new versions and is a `directory` ledger entry;
    recording one again changes nothing."""
    sender, first, second, last = await register_agencies(4)
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        renamed = await stub.RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_RENAME,
                    effective_date="2025-01-01",
                    old_codes=[first],
                    new_codes=[second],
                )
            )
        )
        merged = await stub.RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_MERGE,
                    effective_date="2025-07-01",
                    old_codes=[second],
                    new_codes=[last],
                    note="Nghị quyết sắp xếp đơn vị hành chính",
                )
            )
        )
        again = await stub.RecordReorganisation(
            dpb.RecordReorganisationRequest(reorganisation=merged.reorganisation)
        )
        resolved = await stub.ResolveRecipients(dpb.ResolveRecipientsRequest(codes=[first]))
    assert renamed.created
    assert merged.created
    assert not again.created
    closed = merged.agencies[0]
    assert (closed.code, closed.status, closed.valid_to, list(closed.successor_codes)) == (
        second,
        dpb.AGENCY_STATUS_CLOSED,
        "2025-06-30",
        [last],
    )
    assert again.agencies[0].version == closed.version
    (resolution,) = resolved.resolutions
    assert (resolution.effective_code, list(resolution.chain)) == (last, [first, second, last])

    stream = clients[last].receive()
    response = await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [first]))
    assert response.receipt.routes[0].effective_recipient == last
    delivery = await next_delivery(stream)
    assert delivery.requested_recipient == first
    await clients[last].acknowledge(delivery.delivery_id)
    stream.cancel()

    conn = await asyncpg.connect(database_url)
    try:
        rows = await eventually(
            lambda: conn.fetch(
                "SELECT body FROM ledger.entry WHERE entry_type = 'directory' AND body LIKE $1",
                f'%"reorganisation":{merged.reorganisation.id},%'.encode(),
            ),
            within=20,
            every=0.1,
        )
    finally:
        await conn.close()
    (row,) = rows
    entry = json.loads(row["body"])
    assert "doc" not in entry
    assert entry["actor"] == "directory"
    assert entry["data"] == {
        "event": "reorganised",
        "reorganisation": merged.reorganisation.id,
        "kind": "merge",
        "effective_date": "2025-07-01",
        "old_codes": [second],
        "new_codes": [last],
        "versions": {second: closed.version},
    }


async def test_the_delta_feed_returns_exactly_the_changes_since_a_version(
    register_agencies: Register, axis: str, pki: SuitePki
) -> None:
    """After a version: the new registrations, then the closed codes as tombstones with their
    successor, in version order and paged; then nothing."""
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        mark = (await stub.SyncAgencies(dpb.SyncAgenciesRequest(since_version=0))).latest_version
        ward_a, ward_b, commune = await register_agencies(3)
        await stub.RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_MERGE,
                    effective_date="2025-07-01",
                    old_codes=[ward_a, ward_b],
                    new_codes=[commune],
                )
            )
        )
        seen: list[tuple[str, int, str, tuple[str, ...]]] = []
        since = mark
        pages = 0
        while True:
            page = await stub.SyncAgencies(
                dpb.SyncAgenciesRequest(since_version=since, page_size=2)
            )
            pages += 1
            seen.extend(
                (a.code, a.status, a.valid_to, tuple(a.successor_codes)) for a in page.agencies
            )
            since = page.next_since_version
            if not page.more:
                break
        idle = await stub.SyncAgencies(dpb.SyncAgenciesRequest(since_version=since))
    active = dpb.AGENCY_STATUS_ACTIVE
    closed = dpb.AGENCY_STATUS_CLOSED
    assert seen == [
        (commune, active, "", ()),
        (ward_a, closed, "2025-06-30", (commune,)),
        (ward_b, closed, "2025-06-30", (commune,)),
    ]
    assert pages == 2
    assert since == page.latest_version
    assert list(idle.agencies) == []
    assert idle.next_since_version == since
    assert not idle.more


async def test_only_administrators_record_reorganisations(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    old, new = await register_agencies(2)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients[old].directory.RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_MERGE,
                    effective_date="2025-07-01",
                    old_codes=[old],
                    new_codes=[new],
                )
            )
        )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_cli_records_a_reorganisation_and_prints_the_delta_feed(
    register_agencies: Register, axis: str, pki: SuitePki
) -> None:
    """`docaxis agencies reorganise` then `docaxis agencies sync --since N`: exactly the closed
    code, as a tombstone with its successor, and the version to sync from next."""
    old, new = await register_agencies(2)
    env = {**os.environ, **pki.client_env(pki.admin_certificate, "cli-admin")}
    env.pop("DOCAXIS_DEV_INSECURE", None)

    async def docaxis(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(DOCAXIS),
            "agencies",
            *args,
            "--address",
            axis,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    mark = int((await docaxis("sync", "--since", "0")).splitlines()[-1].rsplit(" ", 1)[1])
    recorded = await docaxis(
        "reorganise", "--kind", "rename", "--effective", "2025-07-01", "--old", old, "--new", new
    )
    assert recorded.splitlines()[0] == "recorded rename effective 2025-07-01"
    lines = (await docaxis("sync", "--since", str(mark))).splitlines()
    assert len(lines) == 2
    version, code, status, *_ = lines[0].split()
    assert (code, status) == (old, "closed")
    assert lines[0].endswith(f"(until 2025-06-30)  -> {new}")
    assert lines[1] == f"next: docaxis agencies sync --since {version}"


async def status_notices(client: AgencyClient, delivery_id: str) -> list[pb.StatusNotice]:
    """The status notices about one delivery waiting in `client`'s mail (pull mode)."""
    notices = []
    for item in (await client.list_pending(page_size=500)).items:
        if item.WhichOneof("id") == "notice_id":
            fetched = await client.fetch(item)
            if fetched.WhichOneof("item") == "status" and fetched.status.delivery_id == delivery_id:
                notices.append(fetched.status)
    return notices


async def merge_today(axis: str, pki: SuitePki, old: str, new: str) -> None:
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date().isoformat()
    async with pki.channel(axis, pki.admin_certificate) as channel:
        await dpb_grpc.DirectoryServiceStub(channel).RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_MERGE,
                    effective_date=today,
                    old_codes=[old],
                    new_codes=[new],
                )
            )
        )


async def test_a_late_status_from_a_merged_recipient_and_to_a_merged_sender_is_matched(
    register_agencies: Register, clients: dict[str, AgencyClient], axis: str, pki: SuitePki
) -> None:
    """A ward that received a copy merges into a successor: the successor reports on the old
    code's copy. A sender that merges away: statuses on its documents reach its successor."""
    sender, ward, successor, sender_successor = await register_agencies(4)
    stream = clients[ward].receive()
    receipt = (
        await clients[sender].submit(f"c-{uuid.uuid4()}", make_header(sender, [ward]))
    ).receipt
    delivery = await next_delivery(stream)
    await clients[ward].acknowledge(delivery.delivery_id)
    stream.cancel()
    # Before the merge the would-be successor has no say on the ward's copy.
    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await clients[successor].report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
        )
    assert error_details(stranger.value).code is grpc.StatusCode.NOT_FOUND

    await merge_today(axis, pki, ward, successor)
    accepted = await clients[successor].report_status(
        delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
    )
    assert accepted is not None
    track = await clients[sender].track(receipt.document_uuid)
    (copy,) = track.recipients
    assert copy.effective_recipient == ward
    sender_notices = await status_notices(clients[sender], delivery.delivery_id)
    assert pb.STATUS_CODE_ACCEPTED in [n.status.code for n in sender_notices]
    assert [
        n.status.reported_by for n in sender_notices if n.status.code == pb.STATUS_CODE_ACCEPTED
    ] == [successor]

    await merge_today(axis, pki, sender, sender_successor)
    await clients[successor].report_status(
        delivery.delivery_id, pb.STATUS_CODE_PROCESSING, status_id=str(uuid.uuid4())
    )
    moved = await status_notices(clients[sender_successor], delivery.delivery_id)
    assert [n.status.code for n in moved] == [pb.STATUS_CODE_PROCESSING]
