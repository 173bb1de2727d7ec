"""`python -m benchmarks.chaos` (`make chaos`): faults under a steady load, then proof that
nothing was lost or duplicated and that the ledger verifies.

Two `docaxis run` replicas on a three-node RabbitMQ cluster and a Postgres primary with its
synchronous hot standby (benchmarks/replicated.py), the gateway in front of the replicas, and the
bench's load generator (benchmarks/load.py): DMSs that reach the replicas through one target
naming both, submitting signed documents and acknowledging every copy on push streams, plus one
DMS that pulls its mail through the gateway's REST API. In turn: kill -9 a replica (not the
sequencer's leader), kill -9 the ledger sequencer's leader, kill -9 the RabbitMQ node the
replicas use, kill -9 the Postgres primary then promote the standby (once both replicas' health
went NOT_SERVING, as an operator or a failover manager would), cut a DMS's stream
mid-delivery, kill -9 the gateway. Each killed process is started again before the next fault
(the old Postgres primary is not: the promoted standby serves alone from then on).

Per fault it prints the recovery time: from the fault until every copy that was unacknowledged
at that moment is acknowledged and a new one too (for the sequencer, also until every ledger
event staged before the kill is sequenced by the new leader; for the broker and the database,
also until both replicas' health is SERVING again; for the gateway, until its DMS is served
again), and when each replica's health went NOT_SERVING and back (gRPC health Watch). At the
end: lost (copies never acknowledged), duplicated (pushed again after their acknowledgement was
confirmed), and `docaxis audit verify full` over the exported ledger. `--short` is the suite's
version: a few seconds of small load around each fault.

Ports (defaults in CHAOS_DEFAULTS): CHAOS_AMQP_PORTS and CHAOS_RABBIT_DIST_PORTS (three each,
comma-separated), CHAOS_EPMD_PORT, CHAOS_PG_PORT and CHAOS_PG_STANDBY_PORT for the servers;
CHAOS_GRPC_PORTS (two), CHAOS_GATEWAY_PORT and CHAOS_GATEWAY_METRICS_PORT. Files go under
CHAOS_LOCAL_DIR (.local/chaos), the servers' data under CHAOS_RABBIT_DIR and CHAOS_PG_DIR (both
<CHAOS_LOCAL_DIR>/servers). With CHAOS_SERVERS_RUNNING=1 the servers on those ports and folders
are already running (the test suite's): they are used, neither started nor stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import httpx
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc

from benchmarks.health_watch import SERVING, HealthWatch
from benchmarks.load import AckMode, Workload, bench_codes, document_header
from benchmarks.replicated import ReplicatedFolders, ReplicatedPorts, ReplicatedServers
from benchmarks.sampler import unacknowledged_copies
from benchmarks.stack import REPO, Axis, BenchAgency, BenchPki, this_checkout, write_agencies
from benchmarks.verify import ledger_pending, verify_ledger
from docaxis_client.client import open_channel
from docaxis_client.trust.demo_pki import key_pem
from services.common.logs import configure_logging
from services.common.postgres import recreate_database

DATABASE = "docaxis_chaos"
SUBMIT_RETRIES = 50


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    rate: float  # documents per second, each to two recipients
    before_s: float  # load before each fault
    senders: int
    recipients: int
    recover_within_s: float


MODES = {
    "full": Mode("full", rate=40, before_s=15, senders=2, recipients=4, recover_within_s=120),
    # before_s 1.5: the load runs on through every fault and recovery, so a shorter gap still
    # has each fault strike with copies submitted since the last (copies_before says so).
    "short": Mode("short", rate=8, before_s=1.5, senders=1, recipients=2, recover_within_s=90),
}


@dataclass(slots=True)
class Recovery:
    fault: str
    seconds: float | None  # None: not recovered within the limit
    detail: str
    # Each replica's health around the fault, for the faults that take a server away.
    health: str = ""
    # Whether every replica's health went NOT_SERVING and came back; None where not expected.
    health_followed: bool | None = None
    # Copies the load had submitted when the fault struck: more than at the fault before shows
    # that this one struck under load too.
    copies_before: int = 0


@dataclass(slots=True)
class ChaosReport:
    mode: str
    recoveries: list[Recovery] = field(default_factory=list)
    copies: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered_before_ack: int = 0
    submissions_failed: dict[str, int] = field(default_factory=dict)
    rest_copies: int = 0
    rest_lost: int = 0
    rest_duplicated: int = 0
    unacknowledged_in_database: int = 0
    ledger_pending: int = 0
    ledger_verified: bool = False
    ledger_entries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            all(r.seconds is not None for r in self.recoveries)
            and all(r.health_followed is not False for r in self.recoveries)
            and self.copies > 0
            and self.lost == 0
            and self.duplicated == 0
            and self.rest_lost == 0
            and self.rest_duplicated == 0
            and self.unacknowledged_in_database == 0
            and self.ledger_pending == 0
            and self.ledger_verified
        )

    def table(self) -> str:
        lines = [f"{'fault':<22} {'recovery':>10}  what recovered", "-" * 78]
        for r in self.recoveries:
            took = "NOT" if r.seconds is None else f"{r.seconds:8.2f} s"
            lines.append(f"{r.fault:<22} {took:>10}  {r.detail}")
            if r.health:
                lines.append(f"{'':<22} {'':>10}  health: {r.health}")
        lines += [
            "-" * 78,
            f"copies {self.copies} (REST {self.rest_copies}): lost = {self.lost + self.rest_lost}, "
            f"duplicated = {self.duplicated + self.rest_duplicated} "
            f"(pushed again before acknowledgement: {self.redelivered_before_ack})",
            f"failed submissions: {self.submissions_failed or 'none'}; unacknowledged in the "
            f"database: {self.unacknowledged_in_database}; ledger pending: {self.ledger_pending}",
            f"docaxis audit verify: {'PASSED' if self.ledger_verified else 'FAILED'} "
            f"({self.ledger_entries} entries)",
            *self.notes,
            "chaos: PASS" if self.passed else "chaos: FAIL",
        ]
        return "\n".join(lines)


# Below the ephemeral range (32768-60999), apart from the suite's, the bench's and the soak's.
CHAOS_DEFAULTS = {
    "CHAOS_PG_PORT": "18030",
    "CHAOS_PG_STANDBY_PORT": "18031",
    "CHAOS_AMQP_PORTS": "18032,18034,18036",
    "CHAOS_RABBIT_DIST_PORTS": "18033,18035,18037",
    "CHAOS_EPMD_PORT": "18038",
    "CHAOS_GRPC_PORTS": "18040,18041",
    "CHAOS_GATEWAY_PORT": "18042",
    "CHAOS_GATEWAY_METRICS_PORT": "18043",
}


def _setting(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or CHAOS_DEFAULTS[name]


def _ports(env: Mapping[str, str], name: str, count: int) -> list[int]:
    ports = [int(port) for port in _setting(env, name).split(",")]
    if len(ports) != count:
        raise ValueError(f"{name} names {count} ports, comma-separated")
    return ports


def _replicated_ports(env: Mapping[str, str]) -> ReplicatedPorts:
    amqp = _ports(env, "CHAOS_AMQP_PORTS", 3)
    dist = _ports(env, "CHAOS_RABBIT_DIST_PORTS", 3)
    return ReplicatedPorts(
        amqp=(amqp[0], amqp[1], amqp[2]),
        rabbit_dist=(dist[0], dist[1], dist[2]),
        epmd=int(_setting(env, "CHAOS_EPMD_PORT")),
        postgres=int(_setting(env, "CHAOS_PG_PORT")),
        postgres_standby=int(_setting(env, "CHAOS_PG_STANDBY_PORT")),
    )


class Gateway:
    """`python -m gateway` in front of the replicas, in a child process."""

    def __init__(self, pki: BenchPki, target: str, port: int, metrics_port: int, log: Path):
        self.url = f"https://127.0.0.1:{port}"
        self._probes = f"http://127.0.0.1:{metrics_port}"
        self._log = log
        folder = pki.folder
        self._env = {
            **this_checkout(os.environ),
            "DOCAXIS_GATEWAY_ADDRESS": f"127.0.0.1:{port}",
            "DOCAXIS_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            "DOCAXIS_GATEWAY_GRPC_TARGET": target,
            "DOCAXIS_GATEWAY_GRPC_SERVER_NAME": "localhost",
            "DOCAXIS_GATEWAY_TLS_CERT_FILE": str(folder / "server.pem"),
            "DOCAXIS_GATEWAY_TLS_KEY_FILE": str(folder / "server.key"),
            "DOCAXIS_GATEWAY_TLS_CLIENT_CA_FILE": str(folder / "bundle.pem"),
            "DOCAXIS_GATEWAY_CLIENT_CERT_FILE": str(folder / "gateway.pem"),
            "DOCAXIS_GATEWAY_CLIENT_KEY_FILE": str(folder / "gateway.key"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self._log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=self._env, stdout=log, stderr=log
            )

    async def start(self, within_s: float = 60) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(base_url=self._probes, timeout=2) as probes:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await probes.get("/readyz")).status_code == 200:
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway did not start:\n{self._log.read_text()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.kill()


class RestDms:
    """A DMS that pulls its mail through the gateway (GET /v1/inbox, then acknowledges each
    delivery), retrying whatever fails; a delivery listed again after its acknowledgement was
    answered 200 is a duplicate."""

    def __init__(self, gateway: Gateway, pki: BenchPki, code: str) -> None:
        self.code = code
        keys = pki.keys(code)
        folder = pki.folder / "rest-dms"
        folder.mkdir(exist_ok=True)
        cert, key = folder / f"{code}.pem", folder / f"{code}.key"
        cert.write_bytes(keys.agency.chain_pem())
        key.write_bytes(key_pem(keys.agency.key))
        key.chmod(0o600)
        context = ssl.create_default_context(cafile=str(pki.folder / "bundle.pem"))
        context.load_cert_chain(str(cert), str(key))
        self._client = httpx.AsyncClient(base_url=gateway.url, verify=context, timeout=10)
        self.acknowledged: dict[str, float] = {}
        # Acknowledged on a connection that broke before the answer, or answered by a server
        # error (a replica that died after its commit, the gateway's call cut): docaxis may have
        # stored it (then it is never listed again; the database check counts it) or not
        # (listed again).
        self.unconfirmed: set[str] = set()
        self.duplicates = 0
        self.failures = 0
        self.last_failure = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                response = await self._client.get("/v1/inbox", params={"page_size": 100})
                response.raise_for_status()
                items = response.json().get("items", [])
                for item in items:
                    delivery_id = item.get("deliveryId")
                    if not delivery_id:
                        continue
                    if delivery_id in self.acknowledged:
                        self.duplicates += 1
                        continue
                    fetched = await self._client.get(f"/v1/inbox/deliveries/{delivery_id}")
                    fetched.raise_for_status()
                    try:
                        ack = await self._client.post(
                            f"/v1/inbox/deliveries/{delivery_id}/acknowledge"
                        )
                    except httpx.TransportError:
                        self.unconfirmed.add(delivery_id)
                        raise
                    if ack.status_code >= 500:
                        self.unconfirmed.add(delivery_id)
                    ack.raise_for_status()
                    self.acknowledged[delivery_id] = time.monotonic()
                if not items:
                    await asyncio.sleep(0.2)
            except (httpx.HTTPError, ValueError) as exc:
                self.failures += 1
                self.last_failure = repr(exc)
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


async def _leads_sequencer(axis: Axis) -> bool:
    """Whether this replica leads the ledger sequencer (its docaxis_leader gauge)."""
    async with open_channel(axis.address, axis.pki.monitor) as channel:
        response = await mpb_grpc.MetricsServiceStub(channel).GetMetrics(
            mpb.GetMetricsRequest(), timeout=5
        )
    return 'docaxis_leader{job="ledger_sequencer"} 1.0' in response.exposition


async def _wait(
    probe: Callable[[], Awaitable[bool]], within_s: float, every_s: float = 0.1
) -> float | None:
    """Seconds until `probe` holds, or None after `within_s`."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if await probe():
            return time.monotonic() - start
        await asyncio.sleep(every_s)
    return None


class Chaos:
    def __init__(self, mode: Mode, work: Path, env: Mapping[str, str]) -> None:
        self.mode = mode
        self.work = work
        self.grpc_ports = _ports(env, "CHAOS_GRPC_PORTS", 2)
        self.gateway_port = int(_setting(env, "CHAOS_GATEWAY_PORT"))
        self.gateway_metrics = int(_setting(env, "CHAOS_GATEWAY_METRICS_PORT"))
        folders = ReplicatedFolders(
            rabbit=Path(env.get("CHAOS_RABBIT_DIR") or work / "servers"),
            postgres=Path(env.get("CHAOS_PG_DIR") or work / "servers"),
        )
        self.servers = ReplicatedServers(
            _replicated_ports(env), folders, running=env.get("CHAOS_SERVERS_RUNNING") == "1"
        )
        self.replicas: list[Axis] = []
        self.health: list[HealthWatch] = []
        self.gateway: Gateway | None = None
        self.report = ChaosReport(mode.name)
        self.database_url = ""
        # Deliveries sent to the DMS that reads through the gateway.
        self.rest_sent: set[str] = set()

    @property
    def target(self) -> str:
        """One gRPC target naming every replica: the DMSs' channels spread over them."""
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.grpc_ports)

    async def run(self) -> ChaosReport:
        await self.servers.start()
        workload: Workload | None = None
        rest: RestDms | None = None
        try:
            self.database_url = await recreate_database(self.servers.database_server_url, DATABASE)
            # Codes of their own: the bench's agencies may have mail left on the same broker.
            senders = bench_codes("010", self.mode.senders)
            recipients = bench_codes("011", self.mode.recipients)
            rest_code = bench_codes("012", 1)[0]
            agencies = self.work / "agencies.csv"
            write_agencies(
                agencies,
                [
                    BenchAgency(code, f"Sở thử lỗi {code}", "department")
                    for code in [*senders, *recipients, rest_code]
                ],
            )
            pki = BenchPki(self.work / "pki")
            pki.server_name = "localhost"  # the DMSs' target lists both replicas
            ledger_key = self.work / "ledger.key"
            for index, port in enumerate(self.grpc_ports):
                replica = Axis(
                    self.database_url,
                    self.servers.amqp_url,
                    pki,
                    port,
                    self.work / f"replica-{index + 1}",
                    agencies,
                    ledger_key=ledger_key,
                    extra_env={"DOCAXIS_SHUTDOWN_GRACE_S": "5", "DOCAXIS_HEALTH_INTERVAL_S": "0.5"},
                )
                await replica.start()  # one after the other: the first migrates and seeds
                self.replicas.append(replica)
                watch = HealthWatch(f"replica {index + 1}", replica.address, pki.monitor)
                watch.start()
                self.health.append(watch)
            self.gateway = Gateway(
                pki, self.target, self.gateway_port, self.gateway_metrics, self.work / "gw.log"
            )
            await self.gateway.start()
            workload = Workload(
                self.target,
                pki,
                senders,
                recipients,
                AckMode.STREAM,
                submit_retries=SUBMIT_RETRIES,
            )
            await workload.open()
            rest = RestDms(self.gateway, pki, rest_code)
            rest.start()
            await self._under_load(workload, rest, rest_code)
            await self._settle(workload, rest)
        finally:
            if workload is not None:
                await workload.close()
            if rest is not None:
                await rest.close()
            for watch in self.health:
                await watch.close()
            if self.gateway is not None:
                await self.gateway.stop()
            for replica in self.replicas:
                await replica.stop()
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                if self.database_url and self.report.copies:
                    await self._verify()
            self.servers.stop()
        return self.report

    async def _under_load(self, workload: Workload, rest: RestDms, rest_code: str) -> None:
        stop = asyncio.Event()
        load = asyncio.create_task(self._steady(workload, stop))
        mail = asyncio.create_task(self._rest_mail(workload, rest_code, stop))
        try:
            faults = [
                ("replica", self._kill_replica),
                ("sequencer leader", self._kill_sequencer_leader),
                ("RabbitMQ node", self._kill_rabbit_node),
                ("Postgres primary", self._fail_over_postgres),
                ("DMS stream cut", self._cut_stream),
                ("gateway", self._kill_gateway),
            ]
            for name, fault in faults:
                await asyncio.sleep(self.mode.before_s)
                copies_before = len(workload.tally.copies)
                recovery = await fault(workload, rest)
                recovery.fault, recovery.copies_before = name, copies_before
                died = [
                    f"replica {index + 1}"
                    for index, replica in enumerate(self.replicas)
                    if replica.process is None or replica.process.poll() is not None
                ]
                if died:  # a process the fault was not aimed at went down with it
                    recovery.seconds = None
                    recovery.detail += f"; {' and '.join(died)} DIED (see its docaxis.log)"
                self.report.recoveries.append(recovery)
                took = "NOT recovered" if recovery.seconds is None else f"{recovery.seconds:.2f} s"
                print(f"  {name}: {took} ({recovery.detail})", flush=True)
                if recovery.health:
                    print(f"    health: {recovery.health}", flush=True)
            await asyncio.sleep(self.mode.before_s)
        finally:
            stop.set()
            await asyncio.gather(load, mail)

    async def _steady(self, workload: Workload, stop: asyncio.Event) -> None:
        """The open-loop load, step after step, until `stop`."""
        while not stop.is_set():
            step = await workload.run_step(self.mode.rate, 2.0, drain_s=0)
            for code, count in step.rejected.items():
                failed = self.report.submissions_failed
                failed[code] = failed.get(code, 0) + count

    async def _rest_mail(self, workload: Workload, rest_code: str, stop: asyncio.Event) -> None:
        """A document every half second for the DMS that reads through the gateway."""
        sender = workload.senders[0]
        number = 0
        while not stop.is_set():
            number += 1
            header = document_header(
                sender.agency_code, [rest_code], f"9{workload.run_id:05d}{number:04d}", "REST"
            )
            for _ in range(SUBMIT_RETRIES):
                try:
                    receipt = await sender.submit(
                        f"chaos-rest-{workload.run_id}-{number}",
                        header,
                        [workload.attachment(0)],
                    )
                except Exception:  # noqa: BLE001 - UNAVAILABLE while failing over: retried
                    await asyncio.sleep(0.2)
                    continue
                self.rest_sent.update(r.delivery_id for r in receipt.receipt.routes)
                break
            await asyncio.sleep(0.5)

    @staticmethod
    def _in_flight(workload: Workload) -> tuple[set[str], set[str]]:
        """The copies known now, and those of them not yet acknowledged."""
        tally = workload.tally
        known = set(tally.copies)
        return known, {d for d in known if not tally.settled(d)}

    async def _in_flight_acknowledged(
        self, workload: Workload, since: float, in_flight: tuple[set[str], set[str]] | None = None
    ) -> float | None:
        """Seconds from `since` until every copy unacknowledged then (`in_flight`, taken at
        `since`; now by default) is acknowledged, and a copy submitted after is acknowledged too
        (the load flows again)."""
        tally = workload.tally
        known, waiting = in_flight or self._in_flight(workload)

        async def done() -> bool:
            return all(tally.settled(d) for d in waiting) and any(
                tally.settled(d) for d in set(tally.copies) - known
            )

        if await _wait(done, self.mode.recover_within_s) is None:
            return None
        return time.monotonic() - since

    async def _restart(self, replica: Axis) -> float:
        started = time.monotonic()
        await replica.start()
        return time.monotonic() - started

    async def _kill_replica(self, workload: Workload, _: RestDms) -> Recovery:
        leads = [await _leads_sequencer(r) for r in self.replicas]
        victim = self.replicas[leads.index(False)] if False in leads else self.replicas[-1]
        since = time.monotonic()
        victim.kill()
        took = await self._in_flight_acknowledged(workload, since)
        restart = await self._restart(victim)
        return Recovery(
            "", took, f"copies in flight and new ones acknowledged; restarted in {restart:.1f} s"
        )

    async def _kill_sequencer_leader(self, workload: Workload, _: RestDms) -> Recovery:
        leader = None
        for replica in self.replicas:
            if await _leads_sequencer(replica):
                leader = replica
        if leader is None:
            return Recovery("", None, "no replica leads the sequencer")
        conn = await asyncpg.connect(self.database_url)
        try:
            killed_at = await conn.fetchval("SELECT clock_timestamp()")
            in_flight, since = self._in_flight(workload), time.monotonic()
            leader.kill()

            async def staged_before_sequenced() -> bool:
                left: int = await conn.fetchval(
                    "SELECT count(*) FROM ledger.pending WHERE staged_at <= $1", killed_at
                )
                return left == 0

            sequenced = await _wait(staged_before_sequenced, self.mode.recover_within_s, 0.2)
        finally:
            await conn.close()
        delivered = await self._in_flight_acknowledged(workload, since, in_flight)
        others = [r for r in self.replicas if r is not leader]
        new_leader = any([await _leads_sequencer(r) for r in others])
        restart = await self._restart(leader)
        took = None if sequenced is None or delivered is None else max(sequenced, delivered)
        return Recovery(
            "",
            took,
            f"ledger events staged before the kill sequenced in "
            f"{'-' if sequenced is None else f'{sequenced:.2f}'} s by "
            f"{'the other replica' if new_leader else 'NO new leader'}; restarted in "
            f"{restart:.1f} s",
        )

    def _outages(self, since: float) -> tuple[bool, float | None, str]:
        """Whether every replica's health went NOT_SERVING and back since `since`, the seconds
        until the last came back, and what each did."""
        outages = [watch.outage(since) for watch in self.health]
        followed = all(down is not None and up is not None for down, up in outages)
        back = max((up for _, up in outages if up is not None), default=None)
        described = "; ".join(watch.describe_outage(since) for watch in self.health)
        return followed, back if followed else None, described

    async def _all_serving(self) -> bool:
        return all(watch.status == SERVING for watch in self.health)

    async def _kill_rabbit_node(self, workload: Workload, _: RestDms) -> Recovery:
        """kill -9 of node 1, the one both replicas connected to (each starts on the first node
        its URL names): they move to a live node and publish again what was not confirmed. A
        replica whose connection moved before its health check (every 0.5 s) saw it gone stays
        SERVING, rightly: it never stopped serving."""
        in_flight, since = self._in_flight(workload), time.monotonic()
        await self.servers.kill_rabbit_node(1)
        delivered = await self._in_flight_acknowledged(workload, since, in_flight)
        serving = await _wait(self._all_serving, self.mode.recover_within_s)
        back, health = self._outages(since)[1:]
        restarted = time.monotonic()
        await self.servers.start_rabbit_node(1)
        took = None if delivered is None or serving is None else max(delivered, back or 0.0)
        return Recovery(
            "",
            took,
            f"copies in flight and new ones acknowledged in "
            f"{'-' if delivered is None else f'{delivered:.2f}'} s through the other nodes; "
            f"node 1 restarted in {time.monotonic() - restarted:.1f} s",
            health,
        )

    async def _fail_over_postgres(self, workload: Workload, _: RestDms) -> Recovery:
        """kill -9 of the primary; once both replicas say NOT_SERVING, the standby is promoted
        (what an operator or a failover manager does); they reconnect through their two-host
        URL (target_session_attrs=read-write) to the promoted standby."""
        in_flight, since = self._in_flight(workload), time.monotonic()
        await self.servers.kill_postgres_primary()

        async def all_not_serving() -> bool:
            return all(watch.outage(since)[0] is not None for watch in self.health)

        noticed = await _wait(all_not_serving, self.mode.recover_within_s)
        promoted_at = time.monotonic() - since
        if noticed is not None:  # from the kill, not from the end of the kill command
            noticed = promoted_at
        await self.servers.promote_standby()
        promoted = time.monotonic() - since
        delivered = await self._in_flight_acknowledged(workload, since, in_flight)
        await _wait(self._all_serving, self.mode.recover_within_s)
        followed, back, health = self._outages(since)
        took = None if delivered is None or back is None else max(delivered, back)
        return Recovery(
            "",
            took,
            f"both replicas NOT_SERVING "
            f"{'NEVER' if noticed is None else f'at {noticed:.1f} s'}; standby promoted from "
            f"{promoted_at:.1f} s to {promoted:.1f} s; copies in flight and new ones "
            f"acknowledged at {'-' if delivered is None else f'{delivered:.2f}'} s",
            health,
            followed,
        )

    async def _cut_stream(self, workload: Workload, _: RestDms) -> Recovery:
        since = time.monotonic()
        workload.cut_stream(0)
        took = await self._in_flight_acknowledged(workload, since)
        return Recovery(
            "", took, "copies in flight acknowledged on the DMS's next stream, new ones too"
        )

    async def _kill_gateway(self, _: Workload, rest: RestDms) -> Recovery:
        assert self.gateway is not None
        since = time.monotonic()
        self.gateway.kill()
        await self.gateway.start()
        restarted = time.monotonic() - since
        # Served again: a copy sent after the restart reaches the REST DMS.
        mark = set(self.rest_sent)

        async def served_again() -> bool:
            fresh = self.rest_sent - mark
            return any(d in rest.acknowledged for d in fresh)

        took = await _wait(served_again, self.mode.recover_within_s)
        return Recovery(
            "",
            None if took is None else restarted + took,
            f"restarted in {restarted:.1f} s, then its DMS acknowledged new mail",
        )

    async def _settle(self, workload: Workload, rest: RestDms) -> None:
        tally = workload.tally

        async def drained() -> bool:
            return all(tally.settled(d) for d in tally.copies)

        await _wait(drained, self.mode.recover_within_s * 2, 0.5)

        async def rest_drained() -> bool:
            return self.rest_sent <= set(rest.acknowledged) | rest.unconfirmed

        await _wait(rest_drained, self.mode.recover_within_s)
        self.report.copies = len(tally.copies)
        # A copy the DMS never got; that every copy it got is acknowledged in docaxis is
        # checked in the database (unacknowledged_in_database).
        self.report.lost = sum(not tally.settled(d) for d in tally.copies)
        if tally.unconfirmed:
            self.report.notes.append(
                f"{len(tally.unconfirmed)} acknowledgements sent on a stream that broke before "
                "confirming them"
            )
        self.report.duplicated = tally.duplicates
        self.report.redelivered_before_ack = tally.redelivered
        self.report.rest_copies = len(self.rest_sent)
        self.report.rest_lost = len(self.rest_sent - set(rest.acknowledged) - rest.unconfirmed)
        if rest.unconfirmed - set(rest.acknowledged):
            self.report.notes.append(
                f"{len(rest.unconfirmed - set(rest.acknowledged))} REST acknowledgements sent on "
                "a connection that broke before the answer, or answered by a server error"
            )
        self.report.rest_duplicated = rest.duplicates
        if rest.failures:
            self.report.notes.append(
                f"the REST DMS retried {rest.failures} calls (last: {rest.last_failure})"
            )

    async def _verify(self) -> None:
        self.report.unacknowledged_in_database = len(await unacknowledged_copies(self.database_url))
        self.report.ledger_pending = await ledger_pending(self.database_url, 60)
        verified, entries = verify_ledger(
            self.database_url, self.work / "ledger.key", self.work / "audit-export"
        )
        self.report.ledger_verified, self.report.ledger_entries = verified, entries


async def run(args: argparse.Namespace) -> ChaosReport:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    work = Path(os.environ.get("CHAOS_LOCAL_DIR", str(REPO / ".local" / "chaos")))
    for stale in ("pki", "audit-export", "replica-1", "replica-2", "gw.log", "trust-policy.json"):
        path = work / stale
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(MODES["short" if args.short else "full"], work, os.environ)
    return await chaos.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the suite's version: small load")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    report = asyncio.run(run(args))
    print(report.table(), flush=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps({**asdict(report), "passed": report.passed}, indent=2), encoding="utf-8"
        )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
