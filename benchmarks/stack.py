"""What a bench run drives: its own Postgres and RabbitMQ (deploy/local scripts), a demo PKI of its
own, and `docaxis run` over mutual TLS, on ports apart from `make run`'s and the test suite's.

Ports come from BENCH_PG_PORT, BENCH_AMQP_PORT, BENCH_RABBIT_DIST_PORT, BENCH_EPMD_PORT and
BENCH_GRPC_PORT. With BENCH_DATABASE_URL and BENCH_AMQP_URL set, the run uses those servers
instead of starting its own (the suite's smoke test does, to share the suite's servers). The soak
(`make soak`) reads the same variables with SOAK_ in place of BENCH_, and has ports of its own by
default, so that a soak and a bench can run side by side.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.credentials import TlsCredentials, pem_of
from docaxis_client.trust.chain import Role
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType, key_pem
from services.common import postgres

REPO = Path(__file__).resolve().parent.parent
DOCAXIS = Path(sys.executable).parent / "docaxis"
# The official who signs every bench document (Ed25519), beside the agency's own signature.
SIGNER = "Nguyễn Văn Bền"
DATABASE = "docaxis_bench"


def this_checkout(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH: for every process a run starts (docaxis,
    its CLI, the gateway), so that it runs the code of the tree the run was started from.

    `docaxis` is the venv's console script, which imports `services` from wherever the venv's
    editable install points; a venv shared between checkouts (one worktree's .venv a link to
    another's) points at the other checkout. A full bench of main once measured another
    worktree's docaxis, 30 commits older, that way: its push circular failed at RabbitMQ's
    channel_max, a fault main had fixed."""
    path = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": os.pathsep.join([str(REPO), *([path] if path else [])])}


@dataclass(frozen=True, slots=True)
class Ports:
    postgres: int
    amqp: int
    rabbit_dist: int
    epmd: int
    grpc: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, prefix: str = "BENCH") -> Ports:
        defaults = DEFAULT_PORTS[prefix]
        return cls(
            *(
                int(env.get(f"{prefix}_{name}_PORT", str(default)))
                for name, default in zip(_PORT_NAMES, defaults, strict=True)
            )
        )


_PORT_NAMES = ("PG", "AMQP", "RABBIT_DIST", "EPMD", "GRPC")
# Apart from `make run`'s, the suite's (1800x-1802x) and the chaos run's (1803x-1804x), and
# below the ephemeral range 32768-60999 (tests/unit/test_port_defaults.py).
DEFAULT_PORTS = {
    "BENCH": (18051, 18052, 18053, 18054, 18055),
    "SOAK": (18061, 18062, 18063, 18064, 18065),
}


# A stop script's own escalation is bounded (rabbitmq.sh: `rabbitmqctl stop` 120 s, 60 s more,
# then SIGKILL by pid; postgres.sh: pg_ctl -t 120): the bench waits longer than that. At 180 s
# it once cut off a RabbitMQ with ~5,000 queues, whose shutdown took ~190 s, and left it running.
STOP_TIMEOUT_S = 300.0
SCRIPT_TIMEOUT_S = 180.0
# The script's kill -9 of its server by pid, for a stop that failed or did not end in time.
KILL_ACTIONS = {"rabbitmq.sh": ("kill-node", "1"), "postgres.sh": ("kill",)}
SCRIPTS = REPO / "deploy" / "local"


def run_script(
    name: str,
    env: Mapping[str, str],
    *args: str,
    timeout_s: float = SCRIPT_TIMEOUT_S,
    scripts: Path = SCRIPTS,
) -> str:
    """deploy/local/`name` (or `scripts`/`name`) with `args` and `env` over ours; returns the
    last line it printed (the URL, for start commands). Past `timeout_s`, the script and every
    process it started (its own process group: rabbitmqctl, pg_ctl) are killed, and
    TimeoutExpired raised."""
    with subprocess.Popen(
        ["bash", str(scripts / name), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # subprocess.run would kill bash alone, leaving its children running.
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class Servers:
    """Postgres and RabbitMQ: started here and stopped at the end, unless given by URL
    (<prefix>_DATABASE_URL and <prefix>_AMQP_URL)."""

    def __init__(
        self,
        local: Path,
        ports: Ports,
        env: Mapping[str, str] = os.environ,
        prefix: str = "BENCH",
        *,
        scripts: Path = SCRIPTS,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._scripts, self._stop_timeout_s = scripts, stop_timeout_s
        self._external = (env.get(f"{prefix}_DATABASE_URL"), env.get(f"{prefix}_AMQP_URL"))
        self._env = {
            "DOCAXIS_LOCAL_DIR": str(local),
            "DOCAXIS_PG_PORT": str(ports.postgres),
            "DOCAXIS_AMQP_PORT": str(ports.amqp),
            "DOCAXIS_RABBIT_DIST_PORT": str(ports.rabbit_dist),
            "DOCAXIS_EPMD_PORT": str(ports.epmd),
        }
        self._started: list[str] = []
        self.server_url = ""
        self.amqp_url = ""

    def _script(self, name: str, *args: str, timeout_s: float = SCRIPT_TIMEOUT_S) -> str:
        return run_script(name, self._env, *args, timeout_s=timeout_s, scripts=self._scripts)

    async def start(self) -> None:
        database, broker = self._external
        if database and broker:
            self.server_url, self.amqp_url = database, broker
            return
        for name in ("rabbitmq.sh", "postgres.sh"):
            self._started.append(name)
        self.server_url, self.amqp_url = await asyncio.gather(
            asyncio.to_thread(self._script, "postgres.sh", "start"),
            asyncio.to_thread(self._fresh_broker),
        )

    def _fresh_broker(self) -> str:
        """A broker without the queues of earlier runs (the database is fresh too): idle quorum
        queues cost RabbitMQ CPU that the meter counts (0.10-0.16 of a core for 3,000), so a
        run after a 3,000-commune circular measured the broker busier than one before it."""
        self._script("rabbitmq.sh", "reset")
        return self._script("rabbitmq.sh", "start")

    async def fresh_database(self, name: str = DATABASE) -> str:
        """An empty database for the run on the Postgres server."""
        return await postgres.recreate_database(self.server_url, name)

    def stop(self) -> list[str]:
        """Stops each server this run started, each whatever became of the others; a server
        whose stop fails or does not end within `stop_timeout_s` is killed by pid (its script's
        kill). Returns, and prints, what went wrong: for the run's notes."""
        problems = []
        for name in self._started:
            try:
                self._script(name, "stop", timeout_s=self._stop_timeout_s)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                problem = f"{name} stop failed ({_first_line(exc)}); "
                try:
                    self._script(name, *KILL_ACTIONS[name])
                    # Again, to clean up what the server leaves behind (pid files, epmd).
                    self._script(name, "stop", timeout_s=self._stop_timeout_s)
                    problem += "killed it by pid"
                except (RuntimeError, subprocess.TimeoutExpired) as kill_exc:
                    problem += f"the kill failed too, it may still run: {_first_line(kill_exc)}"
                print(f"bench: {problem}", file=sys.stderr)
                problems.append(problem)
        self._started.clear()
        return problems


def _first_line(exc: Exception) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no end within {exc.timeout:g} s"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class AgencyKeys:
    agency: IssuedCertificate  # mutual TLS and the organisation's signature (P-256)
    person: IssuedCertificate  # the official's signature (Ed25519)


class BenchPki:
    """A demo CA (DEMO ONLY, never production) in memory; the files the server reads are written
    to `folder`. Agency certificates are issued on first use."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        # What clients check the server's certificate for when their target lists several
        # replicas (the demo server certificate names localhost and 127.0.0.1).
        self.server_name: str | None = None
        self.ca = DemoCA.create()
        issuing = self.ca.intermediate
        assert issuing is not None
        self.bundle_pem = pem_of([self.ca.root_certificate, issuing.certificate])
        (folder / "bundle.pem").write_bytes(self.bundle_pem)
        self._write("server", self.ca.issue_server())
        self._write("hub", self.ca.issue_role(Role.HUB, "docaxis hub"))
        self._write("gateway", self.ca.issue_role(Role.GATEWAY, "docaxis gateway"))
        self.monitor = self._tls(self.ca.issue_role(Role.MONITOR, "bench monitor"))
        self._agencies: dict[str, AgencyKeys] = {}

    def _write(self, name: str, issued: IssuedCertificate) -> None:
        (self.folder / f"{name}.pem").write_bytes(issued.chain_pem())
        key = self.folder / f"{name}.key"
        key.write_bytes(key_pem(issued.key))
        key.chmod(0o600)

    def _tls(self, issued: IssuedCertificate) -> TlsCredentials:
        return TlsCredentials(
            self.bundle_pem, issued.chain_pem(), key_pem(issued.key), self.server_name
        )

    def server_env(self) -> dict[str, str]:
        return {
            "DOCAXIS_TLS_CERT_FILE": str(self.folder / "server.pem"),
            "DOCAXIS_TLS_KEY_FILE": str(self.folder / "server.key"),
            "DOCAXIS_TLS_CLIENT_CA_FILE": str(self.folder / "bundle.pem"),
            "DOCAXIS_HUB_CERT_FILE": str(self.folder / "hub.pem"),
            "DOCAXIS_HUB_KEY_FILE": str(self.folder / "hub.key"),
        }

    def keys(self, code: str) -> AgencyKeys:
        if code not in self._agencies:
            self._agencies[code] = AgencyKeys(
                agency=self.ca.issue_agency(code, f"Cơ quan đo tải {code}"),
                person=self.ca.issue_person(SIGNER, code, key_type=KeyType.ED25519),
            )
        return self._agencies[code]

    def client(self, address: str, code: str) -> AgencyClient:
        """The agency's DMS: its agency certificate for mutual TLS, signing every document as
        its official (Ed25519) and as the agency (P-256)."""
        keys = self.keys(code)
        return AgencyClient.connect(
            address,
            tls=self._tls(keys.agency),
            person=keys.person.identity(),
            organization=keys.agency.identity(),
        )


@dataclass(frozen=True, slots=True)
class BenchAgency:
    code: str
    name: str
    kind: str


def write_agencies(path: Path, agencies: Sequence[BenchAgency]) -> None:
    """The CSV `docaxis run --seed-demo --demo-agencies` registers at startup."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code", "name", "parent_code", "kind", "valid_from"])
        for agency in agencies:
            writer.writerow([agency.code, agency.name, "", agency.kind, "2019-01-01"])


async def health_status(address: str, tls: TlsCredentials) -> int | None:
    async with open_channel(address, tls) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.aio.AioRpcError:
            return None
        status: int = response.status
        return status


class Axis:
    """`docaxis run` over mutual TLS in a child process, its output in `log_path`."""

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        pki: BenchPki,
        port: int,
        workdir: Path,
        agencies_csv: Path,
        *,
        workers: int | None = None,
        ledger_key: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """Replicas of one axis share `ledger_key` (the log's signing key)."""
        self.address = f"127.0.0.1:{port}"
        self.pki = pki
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "docaxis.log"
        # Each run starts its log fresh (the previous run's kept beside it): runs in one work
        # folder once appended to one log, so that a run's errors could be an earlier run's.
        # Restarts within the run (the chaos run's) append to it.
        if self.log_path.exists():
            self.log_path.replace(workdir / "docaxis.log.1")
        self.ledger_key = ledger_key = ledger_key or workdir / "ledger.key"
        if not ledger_key.exists():
            subprocess.run(
                [str(DOCAXIS), "ledger", "keygen", "--out", str(ledger_key)],
                check=True,
                capture_output=True,
                env=this_checkout(os.environ),
            )
        self.env = {
            **this_checkout(os.environ),
            **pki.server_env(),
            "DOCAXIS_GRPC_ADDRESS": self.address,
            "DOCAXIS_DATABASE_URL": database_url,
            "DOCAXIS_AMQP_URL": amqp_url,
            "DOCAXIS_LEDGER_KEY_FILE": str(ledger_key),
            "DOCAXIS_LOG_LEVEL": "WARNING",
            # The bench measures the axis's capacity, which per-agency rate limits would hide:
            # a few bench agencies offer what thousands of real ones would.
            "DOCAXIS_SUBMIT_RATE_PER_S": "0",
            "DOCAXIS_OTHER_RATE_PER_S": "0",
            "DOCAXIS_MAX_CALLS_IN_FLIGHT": "0",
            **({} if workers is None else {"DOCAXIS_WORKERS": str(workers)}),
            **(extra_env or {}),
        }
        self._command = [
            str(DOCAXIS),
            "run",
            "--seed-demo",
            "--demo-agencies",
            str(agencies_csv),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self._command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    async def start(self, within_s: float = 300.0) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + within_s
        while await health_status(self.address, self.pki.monitor) != 1:  # SERVING
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docaxis did not start:\n{self.log_path.read_text()}")
            await asyncio.sleep(0.2)

    def processes(self) -> dict[int, int]:
        """docaxis and every process it started (its workers): pid -> CPU ticks used so far."""
        stats = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    # Fields after the ")" that ends the command name: state, ppid, ... utime
                    # (14th field overall) and stime (15th).
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # exited meanwhile
                stats.append((int(entry.name), int(fields[1]), int(fields[11]) + int(fields[12])))
        parents = {pid: ppid for pid, ppid, _ in stats}
        tree = {}
        for pid, _, ticks in stats:
            ancestor = pid
            while ancestor != self.pid and ancestor in parents and ancestor > 1:
                ancestor = parents[ancestor]
            if ancestor == self.pid:
                tree[pid] = ticks
        return tree

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by docaxis and every process it started."""
        return sum(self.processes().values()) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    async def stop(self) -> int:
        """SIGTERM, then waits for the exit (SIGKILL after a minute); returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return await asyncio.to_thread(self.process.wait, 10)
