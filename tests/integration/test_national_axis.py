"""A docaxis hub under a national axis: the national-axis emulator runs as a real process (HTTPS
with the suite's CA), docaxis over mutual TLS on real Postgres and RabbitMQ. Documents and
statuses cross both ways, through the per-peer queue on the way out and the poller on the way
in; the axis being down, answering 5xx or refusing for good loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from docaxis_client.client import AgencyClient
from gateway.edxml import DocumentPackage, read_edxml
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.domain.model import Agency, AgencyKind
from services.directory.service_layer.handlers import DirectoryHandlers
from services.national.settings import NationalAxisSettings
from tests.conftest import make_header, served, settings_for
from tests.infra import SuiteServices
from tests.national_axis import EmulatorProcess, SystemSeed, agency, started
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

NATIONAL = "vdxp"  # the national axis's hub code in this hub's routes
COMMUNE = Agency("000.05.00.H47", "Xã Thử Quốc Gia", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
MINISTRY = "000.00.00.G97"
LOCKED_MINISTRY = "000.00.01.G97"
HUB_SYSTEM = SystemSeed("docaxis-h47", (COMMUNE.code,))
MINISTRY_SYSTEM = SystemSeed("bo-thu-g97", (MINISTRY, LOCKED_MINISTRY))


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
            ],
            page_limit=4,
            date_format="dmy",
            tls=(pki.server.certificate, pki.server.key),
            ca_file=pki.bundle,
        )
    )
    secret_file = folder / "national.secret"
    secret_file.write_text(HUB_SYSTEM.secret, "utf-8")
    secret_file.chmod(0o600)
    url = await postgres.recreate_database(services.database_url, "docaxis_national_h47")
    await migrate(url)
    settings = dataclasses.replace(
        settings_for(url, services.amqp_vhost("national-h47"), ledger_key_file, pki=pki),
        hub_code="province-h47",
        peer_max_backoff_s=0.5,
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
    try:
        async with served(settings) as address:
            yield UnderNational(address, pool, directory, emulator)
    finally:
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
    INVALID_ADDRESSEE, resendable by an administrator, not retried forever."""
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
