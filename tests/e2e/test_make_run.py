"""`make run` on ports the user chose, then `make demo` and `make audit` with nothing but the
folder in common: the settings the user sets are the settings used, and the clients follow."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import free_port
from tests.infra import LOCAL, REPO
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

# Apart from the suite's own servers: this run starts a Postgres and a RabbitMQ of its own.
RUN_DIR = LOCAL.parent / "make-run"


def _distribution_port() -> int:
    """A free port that leaves room for the CLI tools' ports (it + 10000 … + 10010)."""
    while (port := free_port()) > 65535 - 10010:
        pass
    return port


def _clean_env(**settings: str) -> dict[str, str]:
    """The test's environment without any DOCAXIS_ setting of its own, plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCAXIS_")}
    return base | {"DOCAXIS_LOCAL_DIR": str(RUN_DIR)} | settings


@pytest.fixture
def user_settings() -> Iterator[dict[str, str]]:
    """Ports no default uses, as a user would export them; the servers stopped at the end."""
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    settings = {
        "DOCAXIS_PG_PORT": str(free_port()),
        "DOCAXIS_AMQP_PORT": str(free_port()),
        "DOCAXIS_RABBIT_DIST_PORT": str(_distribution_port()),
        "DOCAXIS_EPMD_PORT": str(free_port()),
        "DOCAXIS_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "DOCAXIS_GATEWAY_ADDRESS": f"127.0.0.1:{free_port()}",
        "DOCAXIS_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "DOCAXIS_DEMO_WITNESS_1": f"127.0.0.1:{free_port()}",
        "DOCAXIS_DEMO_WITNESS_2": f"127.0.0.1:{free_port()}",
    }
    yield settings
    subprocess.run(
        ["make", "--no-print-directory", "down"],
        cwd=REPO,
        env=_clean_env(**settings),
        capture_output=True,
        timeout=180,
        check=False,
    )


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _start_make_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C reaches make, gateway and docaxis
        )


async def test_make_demo_and_audit_reach_make_run_on_the_ports_the_user_set(
    user_settings: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "make-run.log"
    run = _start_make_run(_clean_env(**user_settings), log)
    try:

        async def serving() -> str:
            assert run.poll() is None, log.read_text(errors="replace")
            return log.read_text(errors="replace")

        text = await eventually(serving, lambda out: "docaxis is serving" in out, within=240)
        address = user_settings["DOCAXIS_GRPC_ADDRESS"]
        assert f"on {address} (gRPC over mutual TLS" in text
        port = user_settings["DOCAXIS_PG_PORT"]
        assert (
            f"postgresql://postgres@127.0.0.1:{port}/docaxis" in (RUN_DIR / "run.env").read_text()
        )

        # Another shell: only the folder is shared, no port or address.
        demo = await asyncio.to_thread(_make, "demo", _clean_env())
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "demo passed" in demo.stdout
        audit = await asyncio.to_thread(_make, "audit", _clean_env())
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert '"ok": true' in audit.stdout
    finally:
        os.killpg(run.pid, signal.SIGINT)
        await asyncio.to_thread(run.wait, 60)
