"""Fixtures shared by the tiers: the suite's servers, a migrated database, a running axis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import Protocol

import pytest
import structlog
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb

from docaxis_client.client import AgencyClient
from docaxis_client.ledger.note import NoteSigner
from docaxis_client.vietnam import VIETNAM as VIETNAM
from services.bootstrap.migrations import migrate
from services.bootstrap.plan import ALL_COMPONENTS, Component
from services.bootstrap.serve import serve
from services.common import postgres
from services.directory.adapters.postgres import PostgresAgencies
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from services.settings import DEFAULT_LEDGER_ORIGIN, Settings
from tests.ast_reentry import guard_ast_construction
from tests.infra import (
    PostgresPair,
    RabbitCluster,
    SuiteServices,
    start_postgres_pair,
    start_rabbit_cluster,
    start_services,
    stop_postgres_pair,
    stop_rabbit_cluster,
    stop_services,
)
from tests.pki import SuitePki
from tests.testdata import header_line

TEST_MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024


def pytest_configure() -> None:
    """A failure is reported as a failure, not as an INTERNALERROR of the whole session, on the
    Pythons whose AST constructor breaks when a collection re-enters it (tests/ast_reentry.py)."""
    guard_ast_construction()


def pytest_report_header() -> str:
    """Says whether the wider ../shared/testdata corpus is part of this run."""
    return header_line()


@pytest.fixture(autouse=True)
def _clean_log_context() -> Iterator[None]:
    """Resolving a caller binds it to the log context (its own per RPC in a server): a test
    that resolves one outside any RPC must not lend it to every later test's log lines."""
    yield
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="session")
def services() -> Iterator[SuiteServices]:
    """The suite's own Postgres and RabbitMQ, on test ports, stopped at the end."""
    started = start_services()
    try:
        yield started
    finally:
        stop_services(started)


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """A three-node RabbitMQ cluster, started once for the tests that ask for it (~15 s)."""
    started = start_rabbit_cluster()
    try:
        yield started
    finally:
        stop_rabbit_cluster(started)


@pytest.fixture
def postgres_pair() -> Iterator[PostgresPair]:
    """A fresh Postgres primary with a synchronous hot standby, for a test that may fail over."""
    started = start_postgres_pair()
    try:
        yield started
    finally:
        stop_postgres_pair(started)


@pytest.fixture(scope="session")
async def database_url(services: SuiteServices) -> str:
    """A fresh, migrated database for this run."""
    url = await postgres.recreate_database(services.database_url, "docaxis_test")
    await migrate(url)
    return url


@pytest.fixture(scope="session")
def ledger_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint signing key for this run's servers."""
    path = tmp_path_factory.mktemp("ledger") / "ledger.key"
    path.write_text(NoteSigner.generate(DEFAULT_LEDGER_ORIGIN).skey + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SuitePki:
    """The run's demo CA and the server, hub, operator and agency certificates it issues."""
    return SuitePki(tmp_path_factory.mktemp("pki"))


def settings_for(
    database_url: str,
    amqp_url: str,
    ledger_key_file: Path,
    address: str = "127.0.0.1:0",
    *,
    pki: SuitePki | None = None,
) -> Settings:
    """Production settings (mutual TLS, signatures required) with `pki`; development mode
    (plaintext, header identities, unsigned documents) without."""
    trust = pki.server_env() if pki is not None else {"DOCAXIS_DEV_INSECURE": "true"}
    return Settings.from_env(
        {
            **trust,
            "DOCAXIS_LEDGER_KEY_FILE": str(ledger_key_file),
            "DOCAXIS_LEDGER_CHECKPOINT_INTERVAL_S": "0.2",
            "DOCAXIS_GRPC_ADDRESS": address,
            "DOCAXIS_DATABASE_URL": database_url,
            "DOCAXIS_AMQP_URL": amqp_url,
            "DOCAXIS_MAX_ATTACHMENT_BYTES": str(TEST_MAX_ATTACHMENT_BYTES),
            "DOCAXIS_SHUTDOWN_GRACE_S": "2",
            "DOCAXIS_HEALTH_INTERVAL_S": "0.2",
            # Only at start: a sweep in the middle of a test that inspects a merged agency's
            # mail would move it under the test's feet. test_reroute.py runs a fast one.
            "DOCAXIS_REROUTE_INTERVAL_S": "3600",
        }
    )


@contextlib.asynccontextmanager
async def served(
    settings: Settings, components: Collection[Component] = ALL_COMPONENTS
) -> AsyncIterator[str]:
    """docaxis served in this process with `settings` until the block ends; yields its address."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop, components, on_ready=ready.set_result))
    waiters: list[asyncio.Future[object]] = [ready, task]  # type: ignore[list-item]
    try:
        async with asyncio.timeout(30):
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # startup failed: raise its error here
        port = ready.result()
        yield f"127.0.0.1:{port}"
    finally:
        # Also when startup timed out or the block failed: nothing is left serving.
        stop.set()
        if not task.done():
            async with asyncio.timeout(30):
                await task


@pytest.fixture(scope="session")
async def axis(
    database_url: str, services: SuiteServices, ledger_key_file: Path, pki: SuitePki
) -> AsyncIterator[str]:
    """docaxis (directory + exchange) served in this process over mutual TLS, as in production;
    yields its address."""
    async with served(
        settings_for(database_url, services.amqp_url, ledger_key_file, pki=pki)
    ) as address:
        yield address


_codes = itertools.count(1)


def unique_code() -> str:
    """A QCVN 102 code no other test uses in this run (level-1 group H99 is never real)."""
    n = next(_codes) + os.getpid() % 1000 * 1000
    return f"{n // 10000 % 1000:03d}.{n // 100 % 100:02d}.{n % 100:02d}.H99"


@pytest.fixture(scope="session")
async def directory(database_url: str) -> AsyncIterator[DirectoryHandlers]:
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    yield DirectoryHandlers(PostgresAgencies(pool))
    await pool.close()


class Register(Protocol):
    """The `register_agencies` fixture: registers `count` fresh agencies, returns their codes."""

    async def __call__(
        self, count: int, *, valid_to: str = "", successors: tuple[str, ...] = ()
    ) -> list[str]: ...


@pytest.fixture
def register_agencies(directory: DirectoryHandlers, pki: SuitePki) -> Register:
    """Registers `count` fresh open agencies (or closed ones with successors), issues each an
    agency and an official's certificate, and returns their codes."""

    async def register(
        count: int, *, valid_to: str = "", successors: tuple[str, ...] = ()
    ) -> list[str]:
        codes = [unique_code() for _ in range(count)]
        for code in codes:
            await directory.register(
                agency_from_pb(
                    dpb.Agency(
                        code=code,
                        name=f"Cơ quan thử nghiệm {code}",
                        kind=dpb.AGENCY_KIND_DEPARTMENT,
                        valid_from="2019-01-01",
                        valid_to=valid_to,
                        successor_codes=list(successors),
                    )
                )
            )
            pki.agency(code)
        return codes

    return register


def make_header(
    sender: str, recipients: list[str], *, number: str | None = None, subject: str = "Thử nghiệm"
) -> common_pb2.DocumentHeader:
    today = dt.datetime.now(VIETNAM).date()
    return common_pb2.DocumentHeader(
        sender=sender,
        recipients=recipients,
        code=common_pb2.DocumentCode(number=number or str(next(_codes)), notation="TEST-VP"),
        promulgation_place="Hà Nội",
        promulgation_date=today.isoformat(),
        document_type=1,
        type_name="Công văn",
        subject=subject,
        signer=common_pb2.Signer(
            competence="KT. GIÁM ĐỐC", position="Phó Giám đốc", full_name="Lê Thị B"
        ),
        business_type=common_pb2.BUSINESS_TYPE_NEW,
    )


@pytest.fixture
async def clients(axis: str, pki: SuitePki) -> AsyncIterator[dict[str, AgencyClient]]:
    """A client per agency code, created on first use and closed afterwards: mutual TLS with
    the agency's certificate, every submission signed by its official and the agency."""
    made: dict[str, AgencyClient] = {}

    class Clients(dict[str, AgencyClient]):
        def __missing__(self, code: str) -> AgencyClient:
            client = pki.client(axis, code)
            made[code] = client
            self[code] = client
            return client

    yield Clients()
    for client in made.values():
        await client.close()


@pytest.fixture
def crash_free_log(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """After the test, asserts that what the services logged meanwhile holds no crash: no
    traceback and no call that ended UNKNOWN (an attack gets a typed refusal, issue 17)."""
    yield
    out, err = capfd.readouterr()
    logged = out + err
    assert "rpc_finished" in logged  # the log was captured: the checks below can fail
    assert "Traceback" not in logged
    assert "outcome=UNKNOWN" not in logged
