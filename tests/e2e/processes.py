"""Running `docaxis run` as a real process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.credentials import TlsCredentials
from tests.pki import SuitePki
from tests.waiting import eventually

DOCAXIS = Path(sys.executable).parent / "docaxis"


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports below the kernel's ephemeral range (net.ipv4.ip_local_port_range, from 32768 by default):
# a port the kernel hands out for a probe bound to port 0 is handed out again as the source port
# of any outgoing connection, and one did before the server meant to listen on it bound it (hub B
# of `make run HUBS=2` then failed to start and the CI run hung). Below that range only explicit
# binds take a port. The suite's own fixed ports are 18xxx, outside it.
_FREE_PORTS = range(20000, max(20001, min(32768, _ephemeral_start())))
_handed_out: set[int] = set()
_random = random.SystemRandom()  # not reseeded by the test run: parallel runs pick apart


def free_port() -> int:
    """A port nothing listens on now, never handed out before in this process."""
    while True:
        port = _random.choice(_FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


async def health_status(
    address: str, timeout_s: float = 2.0, *, tls: TlsCredentials | None = None
) -> int | None:
    """The overall health status, or None when the server does not answer."""
    async with open_channel(address, tls) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return None
        status: int = response.status
        return status


async def wait_for_health(
    address: str, wanted: int, timeout_s: float, *, tls: TlsCredentials | None = None
) -> None:
    await eventually(
        lambda: health_status(address, tls=tls),
        lambda status: status == wanted,
        within=timeout_s,
        every=0.1,
    )


class _ChildProcess:
    """A child process whose output goes to the file at `log_path`."""

    process: subprocess.Popen[bytes] | None = None
    # How long `terminate` waits for the process to exit.
    terminate_within_s = 30.0

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        """Starts `command` (returns at once), its output going to `log_path`."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    async def terminate(self) -> int:
        """SIGTERM and wait for the process to exit; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(self.terminate_within_s):
            while self.process.poll() is None:  # noqa: ASYNC110 - a child process, no event
                await asyncio.sleep(0.05)
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


class AxisProcess(_ChildProcess):
    """`docaxis run` in its own process, logging to a file."""

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        log_dir: Path,
        ledger_key_file: Path,
        *,
        command: tuple[str, ...] = (str(DOCAXIS), "run"),
        extra_env: dict[str, str] | None = None,
        name: str = "docaxis",
        pki: SuitePki | None = None,
        address: str | None = None,
    ) -> None:
        """With `pki`, production settings: mutual TLS, signatures required; without, the
        development mode. `address`: the gRPC address to serve on (a free port by default; given
        when peers must know it beforehand, as federated hubs do)."""
        self.address = address or f"127.0.0.1:{free_port()}"
        probe_address = f"127.0.0.1:{free_port()}"
        # /livez and /readyz (plain HTTP), as an orchestrator reads them.
        self.probes_url = f"http://{probe_address}"
        self._command = command
        self._name = name
        self.pki = pki
        # Health is open to any authenticated caller: the monitoring role is enough.
        self.tls = pki.monitor if pki is not None else None
        trust = pki.server_env() if pki is not None else {"DOCAXIS_DEV_INSECURE": "true"}
        self._env = {
            **os.environ,
            **trust,
            "DOCAXIS_GRPC_ADDRESS": self.address,
            "DOCAXIS_PROBE_ADDRESS": probe_address,
            "DOCAXIS_DATABASE_URL": database_url,
            "DOCAXIS_AMQP_URL": amqp_url,
            "DOCAXIS_SHUTDOWN_GRACE_S": "3",
            "DOCAXIS_HEALTH_INTERVAL_S": "0.2",
            "DOCAXIS_LEDGER_KEY_FILE": str(ledger_key_file),
            "DOCAXIS_LEDGER_CHECKPOINT_INTERVAL_S": "0.2",
            **(extra_env or {}),
        }
        self._log_dir = log_dir
        self._starts = 0

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self._name}-{self._starts}.log"

    async def start(self) -> None:
        self._starts += 1
        self._spawn(list(self._command), self._env)
        try:
            await wait_for_health(
                self.address, health_pb2.HealthCheckResponse.SERVING, 60, tls=self.tls
            )
        except TimeoutError:
            raise RuntimeError(f"docaxis did not start:\n{self.log_path.read_text()}") from None

    def client(self, code: str) -> AgencyClient:
        """A DMS of agency `code` (its certificates, signing every submission)."""
        if self.pki is None:
            return AgencyClient(self.address, code)
        return self.pki.client(self.address, code)

    def admin_channel(self) -> tuple[grpc.aio.Channel, tuple[tuple[str, str], ...]]:
        """A channel as administrator and the metadata to send on it."""
        if self.pki is None:
            return grpc.aio.insecure_channel(self.address), (("x-docaxis-role", "admin"),)
        return open_channel(self.address, self.pki.admin), ()

    async def readyz(self) -> int | None:
        """The status code of /readyz, or None when nothing answers."""
        async with httpx.AsyncClient(base_url=self.probes_url, timeout=2.0) as probes:
            try:
                return (await probes.get("/readyz")).status_code
            except httpx.TransportError:
                return None

    async def wait_for_readyz(self, wanted: int, timeout_s: float) -> None:
        await eventually(self.readyz, lambda status: status == wanted, within=timeout_s, every=0.1)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


class GatewayProcess(_ChildProcess):
    """`python -m gateway` in front of a running `docaxis run` (mutual TLS), logging to a file;
    /readyz, /livez and /metrics at `probes_url`."""

    terminate_within_s = 20.0

    def __init__(self, axis: AxisProcess, log_dir: Path) -> None:
        pki = axis.pki
        if pki is None:
            raise ValueError("the gateway talks to the services over mutual TLS only")
        self.port, self.metrics_port = free_port(), free_port()
        self.probes_url = f"http://127.0.0.1:{self.metrics_port}"
        self._log_path = log_dir / "gateway.log"
        self._env = {
            **os.environ,
            "DOCAXIS_GATEWAY_ADDRESS": f"127.0.0.1:{self.port}",
            "DOCAXIS_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}",
            "DOCAXIS_GATEWAY_GRPC_TARGET": axis.address,
            "DOCAXIS_GATEWAY_TLS_CERT_FILE": str(pki.server.certificate),
            "DOCAXIS_GATEWAY_TLS_KEY_FILE": str(pki.server.key),
            "DOCAXIS_GATEWAY_TLS_CLIENT_CA_FILE": str(pki.bundle),
            "DOCAXIS_GATEWAY_CLIENT_CERT_FILE": str(pki.gateway_pair.certificate),
            "DOCAXIS_GATEWAY_CLIENT_KEY_FILE": str(pki.gateway_pair.key),
        }

    @property
    def log_path(self) -> Path:
        return self._log_path

    async def start(self) -> None:
        """Starts it and waits until /readyz says the services are SERVING."""
        self._spawn([sys.executable, "-m", "gateway"], self._env)
        assert self.process is not None
        async with httpx.AsyncClient(base_url=self.probes_url) as probes:

            async def ready() -> bool:
                try:
                    return (await probes.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await eventually(ready, within=30, every=0.1)
            except TimeoutError:
                self.process.kill()  # not left running behind a failed test
                self.process.wait(timeout=10)
                raise RuntimeError(f"the gateway did not get ready:\n{self.logs()}") from None
