"""Federation on real Postgres, RabbitMQ and gRPC with mutual TLS: three hubs on loopback
(province A, province B, national), each with its own database and broker virtual host. Each
pulls its peers' directories through the delta feed, so A resolves B's codes, merged ones
included, and mail for them is routed to the next hop instead of refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from docaxis_client.client import AgencyClient
from services.bootstrap.migrations import migrate
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.adapters.postgres_hubs import PostgresHubRoutes
from services.directory.domain.model import Agency, AgencyKind, today_in_vietnam
from services.directory.domain.reorganisation import Reorganisation, ReorganisationKind
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import make_header, served, settings_for
from tests.e2e.processes import free_port
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

COMMUNE_A = Agency("000.01.00.H45", "Xã Thử A", AgencyKind.COMMUNE, dt.date(2025, 7, 1))
DEPARTMENT_B = Agency("000.00.13.H46", "Sở Y tế B", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))
OLD_WARD_B = Agency("000.02.00.H46", "Phường cũ B", AgencyKind.WARD, dt.date(2019, 1, 1))
NEW_WARD_B = Agency("000.03.00.H46", "Phường mới B", AgencyKind.WARD, dt.date(2025, 7, 1))
MINISTRY = Agency("000.00.00.G99", "Bộ Thử", AgencyKind.MINISTRY, dt.date(2019, 1, 1))


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
