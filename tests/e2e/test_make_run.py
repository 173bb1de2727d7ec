"""`make run` on ports the user chose, then `make demo` and `make audit` with nothing but the
folder in common: the settings the user sets are the settings used, and the clients follow. And
`make run HUBS=2` with `make demo-federation`: a cross-hub send between two hubs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
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


def _start_make_run(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            ["make", "--no-print-directory", "run", *args],
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


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def _logs_of_both_hubs(log: Path) -> str:
    """What `make run HUBS=2` and hub B printed, for a run that never came up."""
    hub_b_log = RUN_DIR / "hub-b" / "docaxis.log"
    hub_b = hub_b_log.read_text(errors="replace") if hub_b_log.exists() else "(no hub B log)"
    return (
        f"make run HUBS=2 did not serve both hubs\n--- make run ---\n"
        f"{log.read_text(errors='replace')[-20000:]}\n--- hub B ---\n{hub_b[-20000:]}"
    )


# Both hubs' start (up to 300 s on a slow machine), the demo and `make down` in one test.
@pytest.mark.timeout(900)
async def test_make_run_hubs_2_and_make_demo_federation_send_across_two_hubs(
    user_settings: dict[str, str], tmp_path: Path
) -> None:
    """`make run HUBS=2` beside the first hub starts a second one (own database, virtual host,
    PKI; peer certificates and routes both ways); `make demo-federation`, with only the folder
    in common, sends from a ward of hub A to a department of hub B: delivered once, statuses and
    the recall's answer back, the hop in both ledgers. Ctrl-C and `make down` leave nothing
    serving."""
    hub_b = f"127.0.0.1:{free_port()}"
    settings = user_settings | {"DOCAXIS_HUB_B_GRPC_ADDRESS": hub_b}
    log = tmp_path / "make-run.log"
    run = _start_make_run(_clean_env(**settings), log, "HUBS=2")
    try:

        async def serving() -> str:
            assert run.poll() is None, log.read_text(errors="replace")
            text = log.read_text(errors="replace")
            assert "second-hub.sh: ERROR" not in text, _logs_of_both_hubs(log)
            return text

        try:
            text = await eventually(
                serving,
                lambda out: "docaxis is serving" in out and f"is serving on {hub_b}" in out,
                within=300,
            )
        except TimeoutError:
            pytest.fail(_logs_of_both_hubs(log), pytrace=False)
        assert "second hub ho-chi-minh" in text
        demo = await asyncio.to_thread(_make, "demo-federation", _clean_env())
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        assert "delivered once" in out
        assert "back at hub A the sender sees 01, 03" in out
        assert "agreed (15); at hub A: 01, 03, 13, 15" in out
        assert "hub A: handed over to hub ho-chi-minh" in out
        assert "hub B: trace quang-ninh -> ho-chi-minh" in out
        ledgers = [line for line in out.splitlines() if "ledger entries" in line]
        assert "forwarded" in ledgers[0].split(": ", 2)[-1].split(", ")
        assert "forwarded_in" in ledgers[1].split(": ", 2)[-1].split(", ")
        assert "federation demo passed" in out
    finally:
        os.killpg(run.pid, signal.SIGINT)
        await asyncio.to_thread(run.wait, 60)
    down = await asyncio.to_thread(_make, "down", _clean_env(**settings))
    assert down.returncode == 0, down.stdout + down.stderr
    for address in (
        user_settings["DOCAXIS_GRPC_ADDRESS"],
        hub_b,
        f"127.0.0.1:{user_settings['DOCAXIS_PG_PORT']}",
        f"127.0.0.1:{user_settings['DOCAXIS_AMQP_PORT']}",
    ):
        assert not _listening(address), address
