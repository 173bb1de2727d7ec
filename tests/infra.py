"""Starting and stopping the suite's own Postgres and RabbitMQ through deploy/local scripts; for
the failover tests, a three-node RabbitMQ cluster (once per session, only when a test asks)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Overridable (with the TEST_*_PORT variables) so that several suites can run side by side.
LOCAL = Path(os.environ.get("TEST_LOCAL_DIR", str(REPO / ".local" / "test")))


@dataclass(frozen=True, slots=True)
class SuiteServices:
    database_url: str
    amqp_url: str
    env: Mapping[str, str]

    def rabbit(self, action: str) -> str:
        return _script("rabbitmq.sh", action, self.env)

    def postgres(self, action: str) -> str:
        return _script("postgres.sh", action, self.env)

    def rabbitmqctl(self, *args: str) -> str:
        return rabbitmqctl(Path(self.env["DOCAXIS_LOCAL_DIR"]) / "rabbitmq", *args)

    def amqp_vhost(self, name: str) -> str:
        """The URL of a virtual host of its own on the suite's broker (created if missing): one
        per hub when a test federates several."""
        return _script("rabbitmq.sh", "vhost", self.env, name)


def _script(name: str, action: str, env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / name), action, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{name} {action} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@dataclass(frozen=True, slots=True)
class RabbitCluster:
    """Three RabbitMQ nodes on loopback (deploy/local/rabbitmq.sh cluster-start)."""

    url: str  # the three nodes' URLs, comma-separated, as DOCAXIS_AMQP_URL takes them
    env: Mapping[str, str]

    @property
    def node_urls(self) -> list[str]:
        return self.url.split(",")

    @property
    def amqp_ports(self) -> list[int]:
        """Nodes 1, 2, 3's AMQP ports."""
        names = ("DOCAXIS_AMQP_PORT", "DOCAXIS_AMQP_PORT_2", "DOCAXIS_AMQP_PORT_3")
        return [int(self.env[name]) for name in names]

    @property
    def node_names(self) -> list[str]:
        return [f"docaxis-{port}@localhost" for port in self.amqp_ports]

    def script(self, action: str, *args: str) -> str:
        return _script("rabbitmq.sh", action, self.env, *args)

    def kill_node(self, node: int) -> None:
        """kill -9 of the node's Erlang VM."""
        self.script("kill-node", str(node))

    def start_node(self, node: int) -> None:
        self.script("start-node", str(node))

    def hang_node(self, node: int, *, hung: bool = True) -> None:
        """SIGSTOP (`hung`) or SIGCONT of the node's Erlang VM: its sockets stay open and
        nothing answers, as in a partition or a frozen VM, until it goes on; the other nodes
        declare it down only after net_ticktime (60 s: 45-75 s)."""
        pid = int((self._node_dir(node) / "rabbitmq.pid").read_text().strip())
        os.kill(pid, signal.SIGSTOP if hung else signal.SIGCONT)

    def _node_dir(self, node: int) -> Path:
        return Path(self.env["DOCAXIS_LOCAL_DIR"]) / (
            "rabbitmq" if node == 1 else f"rabbitmq-{node}"
        )

    def rabbitmqctl(self, node: int, *args: str) -> str:
        """`rabbitmqctl -q ARGS` against node `node` (1, 2 or 3); its output."""
        return rabbitmqctl(self._node_dir(node), *args)

    def queues(self, node: int = 1) -> dict[str, dict[str, Any]]:
        """The cluster's queues by name (type, members), as node `node` lists them."""
        listed = self.rabbitmqctl(
            node,
            "list_queues",
            *("name", "type", "members", "leader", "online", "messages"),
            *("--formatter", "json"),
        )
        return {q["name"]: q for q in json.loads(listed)}


def rabbitmqctl(folder: Path, *args: str) -> str:
    """`rabbitmqctl -q ARGS` against the node deploy/local/rabbitmq.sh runs from `folder`; its
    output."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            '. "$1" && shift && exec /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@"',
            "rabbitmqctl",
            str(folder / "rabbitmq.env"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def cluster_env() -> dict[str, str]:
    """Ports of the cluster's nodes, apart from the suite's single node; overridable with
    TEST_CLUSTER_AMQP_PORTS and TEST_CLUSTER_DIST_PORTS (three each, comma-separated) and
    TEST_CLUSTER_EPMD_PORT."""
    amqp = os.environ.get("TEST_CLUSTER_AMQP_PORTS", "18011,18013,18015").split(",")
    dist = os.environ.get("TEST_CLUSTER_DIST_PORTS", "18012,18014,18016").split(",")
    if len(amqp) != 3 or len(dist) != 3:
        raise ValueError(
            "TEST_CLUSTER_AMQP_PORTS and TEST_CLUSTER_DIST_PORTS name three ports each"
        )
    return {
        "DOCAXIS_LOCAL_DIR": str(LOCAL.parent / f"{LOCAL.name}-rabbit-cluster"),
        "DOCAXIS_AMQP_PORT": amqp[0],
        "DOCAXIS_AMQP_PORT_2": amqp[1],
        "DOCAXIS_AMQP_PORT_3": amqp[2],
        "DOCAXIS_RABBIT_DIST_PORT": dist[0],
        "DOCAXIS_RABBIT_DIST_PORT_2": dist[1],
        "DOCAXIS_RABBIT_DIST_PORT_3": dist[2],
        "DOCAXIS_EPMD_PORT": os.environ.get("TEST_CLUSTER_EPMD_PORT", "18017"),
    }


def start_rabbit_cluster() -> RabbitCluster:
    """A fresh cluster: stops leftovers of an earlier run and wipes their data first."""
    env = cluster_env()
    with contextlib.suppress(RuntimeError):
        _script("rabbitmq.sh", "cluster-stop", env)
    shutil.rmtree(env["DOCAXIS_LOCAL_DIR"], ignore_errors=True)
    return RabbitCluster(_script("rabbitmq.sh", "cluster-start", env), env)


def stop_rabbit_cluster(cluster: RabbitCluster) -> None:
    _script("rabbitmq.sh", "cluster-stop", cluster.env)


@dataclass(frozen=True, slots=True)
class PostgresPair:
    """A Postgres primary and its synchronous hot standby on loopback (deploy/local/postgres.sh
    start + standby-start)."""

    url: str  # both hosts, target_session_attrs=read-write: what DOCAXIS_DATABASE_URL takes
    env: Mapping[str, str]

    def script(self, action: str) -> str:
        return _script("postgres.sh", action, self.env)

    @property
    def standby_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.env['DOCAXIS_PG_STANDBY_PORT']}/docaxis"

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.env['DOCAXIS_PG_PORT']}/docaxis"


def postgres_pair_env() -> dict[str, str]:
    """Ports of the pair, apart from the suite's server; overridable with TEST_PAIR_PG_PORT and
    TEST_PAIR_PG_STANDBY_PORT."""
    return {
        "DOCAXIS_LOCAL_DIR": str(LOCAL.parent / f"{LOCAL.name}-postgres-pair"),
        "DOCAXIS_PG_PORT": os.environ.get("TEST_PAIR_PG_PORT", "18021"),
        "DOCAXIS_PG_STANDBY_PORT": os.environ.get("TEST_PAIR_PG_STANDBY_PORT", "18022"),
    }


def start_postgres_pair() -> PostgresPair:
    """A fresh pair (a failover test ends with the standby promoted and the primary gone)."""
    env = postgres_pair_env()
    stop_postgres_pair(PostgresPair("", env))
    shutil.rmtree(env["DOCAXIS_LOCAL_DIR"], ignore_errors=True)
    _script("postgres.sh", "start", env)
    return PostgresPair(_script("postgres.sh", "standby-start", env), env)


def stop_postgres_pair(pair: PostgresPair) -> None:
    for action in ("standby-stop", "stop"):
        with contextlib.suppress(RuntimeError):  # not running, or killed
            pair.script(action)


def suite_env() -> dict[str, str]:
    """Ports of the suite's own servers, apart from `make run`'s; overridable. Every default port
    of the suite, the bench, the soak and the chaos run is below the ephemeral range, where no
    client's random port can take it (tests/unit/test_port_defaults.py)."""
    return {
        "DOCAXIS_LOCAL_DIR": str(LOCAL),
        "DOCAXIS_PG_PORT": os.environ.get("TEST_PG_PORT", "18001"),
        "DOCAXIS_AMQP_PORT": os.environ.get("TEST_AMQP_PORT", "18002"),
        "DOCAXIS_RABBIT_DIST_PORT": os.environ.get("TEST_RABBIT_DIST_PORT", "18003"),
        "DOCAXIS_EPMD_PORT": os.environ.get("TEST_EPMD_PORT", "18004"),
    }


def start_services() -> SuiteServices:
    """Fresh servers: stops leftovers of an earlier run, wipes their data, starts both at once."""
    env = suite_env()
    for name in ("rabbitmq.sh", "postgres.sh"):
        with contextlib.suppress(RuntimeError):  # nothing was running
            _script(name, "stop", env)
    shutil.rmtree(LOCAL, ignore_errors=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        database = pool.submit(_script, "postgres.sh", "start", env)
        broker = pool.submit(_script, "rabbitmq.sh", "start", env)
        database_url, amqp_url = database.result(), broker.result()
    return SuiteServices(database_url, amqp_url, env)


def stop_services(services: SuiteServices) -> None:
    """Both at once, as they started: neither's stop waits on the other's."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        stops = [
            pool.submit(_script, name, "stop", services.env)
            for name in ("rabbitmq.sh", "postgres.sh")
        ]
    errors = [str(error) for stop in stops if (error := stop.exception()) is not None]
    if errors:
        raise RuntimeError("\n".join(errors))
