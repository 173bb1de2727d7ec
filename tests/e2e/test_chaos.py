"""`make chaos`'s short version on the suite's replicated servers (the three-node RabbitMQ
cluster and a fresh Postgres primary with its synchronous standby): two replicas and the gateway
under a small load; kill -9 a replica, kill -9 the sequencer's leader, kill -9 the RabbitMQ node
in use, kill -9 the Postgres primary and promote the standby, cut a DMS's stream, kill -9 the
gateway. Nothing is lost or duplicated at the DMSs, every copy is acknowledged in the database,
both replicas' health went NOT_SERVING and back around the database's failover, and the ledger
verifies. No recovery time is asserted, only that each fault recovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from tests.e2e.processes import free_port
from tests.infra import REPO, PostgresPair, RabbitCluster

pytestmark = pytest.mark.e2e


def _servers_env(cluster: RabbitCluster, pair: PostgresPair) -> dict[str, str]:
    """The CHAOS_* settings naming the suite's running servers."""
    rabbit, postgres = cluster.env, pair.env
    return {
        "CHAOS_SERVERS_RUNNING": "1",
        "CHAOS_RABBIT_DIR": rabbit["DOCAXIS_LOCAL_DIR"],
        "CHAOS_AMQP_PORTS": ",".join(str(port) for port in cluster.amqp_ports),
        "CHAOS_RABBIT_DIST_PORTS": ",".join(
            rabbit[f"DOCAXIS_RABBIT_DIST_PORT{suffix}"] for suffix in ("", "_2", "_3")
        ),
        "CHAOS_EPMD_PORT": rabbit["DOCAXIS_EPMD_PORT"],
        "CHAOS_PG_DIR": postgres["DOCAXIS_LOCAL_DIR"],
        "CHAOS_PG_PORT": postgres["DOCAXIS_PG_PORT"],
        "CHAOS_PG_STANDBY_PORT": postgres["DOCAXIS_PG_STANDBY_PORT"],
    }


@pytest.mark.timeout(660)  # six faults, each awaited; the run itself is bounded at 600 s
def test_faults_under_load_lose_and_duplicate_nothing_and_the_ledger_verifies(
    rabbit_cluster: RabbitCluster, postgres_pair: PostgresPair, tmp_path: Path
) -> None:
    report_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--short", "--json", str(report_path)],
        cwd=REPO,
        env={
            **os.environ,
            **_servers_env(rabbit_cluster, postgres_pair),
            "CHAOS_GRPC_PORTS": f"{free_port()},{free_port()}",
            "CHAOS_GATEWAY_PORT": str(free_port()),
            "CHAOS_GATEWAY_METRICS_PORT": str(free_port()),
            "CHAOS_LOCAL_DIR": str(tmp_path / "chaos"),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout[-6000:] + result.stderr[-6000:]
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    output = json.dumps(report, indent=1) + output
    recoveries = {r["fault"]: r for r in report["recoveries"]}
    assert list(recoveries) == [
        "replica",
        "sequencer leader",
        "RabbitMQ node",
        "Postgres primary",
        "DMS stream cut",
        "gateway",
    ], output
    assert all(r["seconds"] is not None for r in report["recoveries"]), output
    # Each fault struck under load: copies were submitted since the fault before it.
    copies_before = [r["copies_before"] for r in report["recoveries"]]
    assert all(a < b for a, b in pairwise([0, *copies_before])), output
    assert recoveries["Postgres primary"]["health_followed"], output
    assert report["copies"] > 0, output
    assert report["rest_copies"] > 0, output
    assert (report["lost"], report["duplicated"]) == (0, 0), output
    assert (report["rest_lost"], report["rest_duplicated"]) == (0, 0), output
    assert report["unacknowledged_in_database"] == 0, output
    assert report["ledger_pending"] == 0, output
    assert report["ledger_verified"], output
    assert "by the other replica" in recoveries["sequencer leader"]["detail"], output
    assert result.returncode == 0, output
    assert "chaos: PASS" in result.stdout
