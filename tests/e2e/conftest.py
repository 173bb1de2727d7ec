"""End-to-end fixtures: a database of their own and `docaxis run` processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services.common.postgres import recreate_database
from tests.conftest import unique_code
from tests.e2e.processes import AxisProcess
from tests.infra import SuiteServices
from tests.pki import SuitePki


@pytest.fixture
async def e2e_database_url(services: SuiteServices) -> str:
    """A database no other test's server relays from: a crashed process's work can only be
    finished by its own restart."""
    return await recreate_database(services.database_url, "docaxis_e2e")


@pytest.fixture
async def axis_process(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> AsyncIterator[AxisProcess]:
    """A running `docaxis run` over mutual TLS; at the end it must exit cleanly on SIGTERM."""
    process = AxisProcess(e2e_database_url, services.amqp_url, tmp_path, ledger_key_file, pki=pki)
    await process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        code = await process.terminate()
        logs = process.logs()
        assert code == 0, logs
        assert "server_stopped" in logs


async def register(process: AxisProcess, count: int) -> list[str]:
    """Registers fresh agencies through the running server's DirectoryService (as admin)."""
    codes = [unique_code() for _ in range(count)]
    channel, admin = process.admin_channel()
    async with channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        for code in codes:
            await stub.RegisterAgency(
                dpb.RegisterAgencyRequest(
                    agency=dpb.Agency(
                        code=code,
                        name=f"Cơ quan e2e {code}",
                        kind=dpb.AGENCY_KIND_DEPARTMENT,
                        valid_from="2019-01-01",
                    )
                ),
                metadata=admin,
                timeout=10,
            )
    return codes
