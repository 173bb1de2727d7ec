"""The replicated servers `make chaos` runs on, through deploy/local's scripts: a three-node
RabbitMQ cluster (inbox queues are quorum queues on every node) and a Postgres primary with a
hot standby that commits wait for; and the faults it injects into them (kill -9 of a node, of
the primary, promotion of the standby).

Started here and stopped at the end, or (`running`) already started by someone else, the test
suite, who stops them: then only their ports and folders are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stack import STOP_TIMEOUT_S, run_script


@dataclass(frozen=True, slots=True)
class ReplicatedPorts:
    amqp: tuple[int, int, int]  # nodes 1, 2, 3
    rabbit_dist: tuple[int, int, int]
    epmd: int
    postgres: int  # the primary
    postgres_standby: int


@dataclass(frozen=True, slots=True)
class ReplicatedFolders:
    rabbit: Path  # DOCAXIS_LOCAL_DIR of rabbitmq.sh: the nodes' data under it
    postgres: Path  # DOCAXIS_LOCAL_DIR of postgres.sh: the primary's and standby's data


class ReplicatedServers:
    def __init__(self, ports: ReplicatedPorts, folders: ReplicatedFolders, *, running: bool):
        self.ports = ports
        self.folders = folders
        self._running = running
        self._started = False
        self.rabbit_env = {
            "DOCAXIS_LOCAL_DIR": str(folders.rabbit),
            "DOCAXIS_EPMD_PORT": str(ports.epmd),
            **{
                f"DOCAXIS_AMQP_PORT{_suffix(n)}": str(port)
                for n, port in enumerate(ports.amqp, start=1)
            },
            **{
                f"DOCAXIS_RABBIT_DIST_PORT{_suffix(n)}": str(port)
                for n, port in enumerate(ports.rabbit_dist, start=1)
            },
        }
        self.postgres_env = {
            "DOCAXIS_LOCAL_DIR": str(folders.postgres),
            "DOCAXIS_PG_PORT": str(ports.postgres),
            "DOCAXIS_PG_STANDBY_PORT": str(ports.postgres_standby),
        }
        self.amqp_url = ""  # the three nodes' URLs, comma-separated
        self.database_server_url = ""  # both Postgres servers, target_session_attrs=read-write

    async def start(self) -> None:
        if self._running:
            self.amqp_url = self._rabbit("cluster-url")
            self.database_server_url = self._postgres("cluster-url")
            return
        self._started = True
        self.stop()  # leftovers of an earlier run; their data goes too (a promoted standby's)
        for folder in (self.folders.rabbit, self.folders.postgres):
            shutil.rmtree(folder, ignore_errors=True)

        def start_postgres() -> str:
            self._postgres("start")
            return self._postgres("standby-start")

        self.amqp_url, self.database_server_url = await asyncio.gather(
            asyncio.to_thread(self._rabbit, "cluster-start"), asyncio.to_thread(start_postgres)
        )

    def stop(self) -> None:
        if not self._started:
            return
        for name, env, action in (
            ("rabbitmq.sh", self.rabbit_env, "cluster-stop"),
            ("postgres.sh", self.postgres_env, "standby-stop"),
            ("postgres.sh", self.postgres_env, "stop"),
        ):
            with contextlib.suppress(RuntimeError):  # not running, or killed
                run_script(name, env, action, timeout_s=STOP_TIMEOUT_S)

    def amqp_node_address(self, node: int) -> str:
        return f"127.0.0.1:{self.ports.amqp[node - 1]}"

    async def kill_rabbit_node(self, node: int) -> None:
        """kill -9 of node `node`'s Erlang VM."""
        await asyncio.to_thread(self._rabbit, "kill-node", str(node))

    async def start_rabbit_node(self, node: int) -> None:
        await asyncio.to_thread(self._rabbit, "start-node", str(node))

    async def kill_postgres_primary(self) -> None:
        """kill -9 of the primary's postmaster."""
        await asyncio.to_thread(self._postgres, "kill")

    async def promote_standby(self) -> None:
        await asyncio.to_thread(self._postgres, "promote")

    def _rabbit(self, *args: str) -> str:
        return run_script("rabbitmq.sh", self.rabbit_env, *args)

    def _postgres(self, *args: str) -> str:
        return run_script("postgres.sh", self.postgres_env, *args)


def _suffix(node: int) -> str:
    return "" if node == 1 else f"_{node}"
