"""Each service in its own process, and the `docaxis` command against a running axis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.common.grpc_errors import error_details
from services.directory.agency_csv import DEMO_DIRECTORY_CSV
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import DOCAXIS, AxisProcess
from tests.infra import SuiteServices
from tests.integration.test_exchange_flow import next_delivery
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_directory_and_exchange_run_as_separate_processes(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """`python -m services.exchange` routes through `python -m services.directory` over gRPC."""
    directory = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        command=(sys.executable, "-m", "services.directory"),
        name="directory",
        pki=pki,
    )
    await directory.start()
    exchange = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        command=(sys.executable, "-m", "services.exchange"),
        extra_env={"DOCAXIS_DIRECTORY_ADDRESS": directory.address},
        name="exchange",
        pki=pki,
    )
    try:
        await exchange.start()
        sender, recipient = await register(directory, 2)
        async with (
            exchange.client(sender) as a,
            exchange.client(recipient) as b,
        ):
            stream = b.receive()
            receipt = (
                await a.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
            ).receipt
            delivery = await next_delivery(stream)
            assert delivery.document_uuid == receipt.document_uuid
            await b.acknowledge(delivery.delivery_id)
            stream.cancel()
            track = await a.track(receipt.document_uuid)
            assert track.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED
    finally:
        assert await exchange.terminate() == 0, exchange.logs()
        assert await directory.terminate() == 0, directory.logs()


def _docaxis(process: AxisProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`docaxis agencies …` as an administrator (its certificate in DOCAXIS_CLIENT_*)."""
    assert process.pki is not None
    admin = process.pki.client_env(process.pki.admin_certificate, "cli-admin")
    return subprocess.run(
        [str(DOCAXIS), "agencies", *args, "--address", process.address],
        env={**os.environ, **admin},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_imports_the_reorganised_directory_and_lists_it(
    axis_process: AxisProcess,
) -> None:
    """The demo 2025-merger directory imports parent-first; a second import changes nothing;
    closed agencies show with their successors only when asked; a bad code is refused with its
    reason."""
    csv = DEMO_DIRECTORY_CSV
    first = await asyncio.to_thread(_docaxis, axis_process, "import", str(csv))
    assert first.returncode == 0, first.stderr
    rows = len(csv.read_text(encoding="utf-8").splitlines()) - 1
    assert first.stdout.strip() == f"{rows} registered, 0 already present"
    assert "registering agencies" not in first.stderr  # piped: no progress line
    second = await asyncio.to_thread(_docaxis, axis_process, "import", str(csv))
    assert second.stdout.strip() == f"0 registered, {rows} already present"

    listed = await asyncio.to_thread(_docaxis, axis_process, "list", "--all")
    assert "000.00.00.H40  closed  Ủy ban nhân dân tỉnh Nam Định  -> 000.00.00.H37" in listed.stdout
    assert len(listed.stdout.strip().splitlines()) == rows
    open_only = await asyncio.to_thread(_docaxis, axis_process, "list")
    assert "000.00.00.H40" not in open_only.stdout
    assert "000.00.71.H45  active  Ủy ban nhân dân phường Hạ Long" in open_only.stdout

    bad = await asyncio.to_thread(
        _docaxis,
        axis_process,
        "add",
        "--code",
        "000.00.00.h45",
        "--name",
        "Sai mã",
        "--kind",
        "province",
        "--valid-from",
        "2020-01-01",
    )
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT VALIDATION" in bad.stderr
    assert "agency.code" in bad.stderr


async def test_a_crl_ingested_through_the_cli_revokes_on_every_process(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """`docaxis crl ingest` at the directory process; the exchange process, which only hears of
    it through Postgres (NOTIFY directory_crl), refuses the revoked agency within moments."""
    common = (e2e_database_url, services.amqp_url, tmp_path, ledger_key_file)
    directory = AxisProcess(
        *common, command=(sys.executable, "-m", "services.directory"), name="dir", pki=pki
    )
    await directory.start()
    exchange = AxisProcess(
        *common,
        command=(sys.executable, "-m", "services.exchange"),
        extra_env={"DOCAXIS_DIRECTORY_ADDRESS": directory.address},
        name="xch",
        pki=pki,
    )
    try:
        await exchange.start()
        sender, recipient = await register(directory, 2)
        async with exchange.client(sender) as client:
            receipt = (
                await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
            ).receipt
            crl = tmp_path / "intermediate.crl"
            crl.write_bytes(pki.revoke(pki.agency(sender).agency))
            admin = pki.client_env(pki.admin_certificate, "cli-admin")
            ingest = await asyncio.to_thread(
                subprocess.run,
                [str(DOCAXIS), "crl", "ingest", str(crl), "--address", directory.address],
                env={**os.environ, **admin},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert ingest.returncode == 0, ingest.stderr
            assert ingest.stdout.startswith("ingested CRL")

            async def refusal() -> str | None:
                try:
                    await client.track(receipt.document_uuid)
                except grpc.aio.AioRpcError as exc:
                    return error_details(exc).reason
                return None

            # Another process reloads its revocations: nothing to await but a poll.
            reason = await eventually(refusal, lambda found: found is not None, within=10)
            assert reason == "CERTIFICATE_REVOKED"
    finally:
        assert await exchange.terminate() == 0, exchange.logs()
        assert await directory.terminate() == 0, directory.logs()


def test_the_demo_pki_commands_issue_revoke_and_warn(tmp_path: Path) -> None:
    """`docaxis pki` (DEMO ONLY): a CA, certificates of each kind, a revocation in the CRL, and
    expiry warnings with an exit code a cron job can alert on."""

    def pki(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DOCAXIS), "pki", *args, "--dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert pki("init").returncode == 0
    assert "DEMO PKI" in pki("issue-agency", "000.00.13.H45", "Sở Y tế").stderr
    assert (
        pki("issue-person", "Nguyễn Văn Đức", "000.00.13.H45", "--key-type", "ed25519").returncode
        == 0
    )
    assert pki("issue-role", "monitor").returncode == 0
    assert pki("issue-agency", "000.00.13.H45", "Sở Y tế").returncode == 2  # no silent re-issue
    agency = tmp_path / "agencies" / "000.00.13.H45.pem"
    assert pki("revoke", str(agency)).returncode == 0
    crl = x509.load_pem_x509_crl((tmp_path / "crl" / "intermediate.pem").read_bytes())
    serial = x509.load_pem_x509_certificates(agency.read_bytes())[0].serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    soon = pki("expiring", "--days", "3650")
    assert soon.returncode == 1
    assert "Nguyễn Văn Đức" in soon.stdout
    assert pki("expiring", "--days", "30").returncode == 0
