"""`make chaos`'s short version on the suite's servers: two replicas and the gateway under a
small load; kill -9 a replica, kill -9 the sequencer's leader, cut a DMS's stream, kill -9 the
gateway. Nothing is lost or duplicated at the DMSs, every copy is acknowledged in the database,
and the ledger verifies. No recovery time is asserted, only that each fault recovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.processes import free_port
from tests.infra import REPO, SuiteServices

pytestmark = pytest.mark.e2e


def test_faults_under_load_lose_and_duplicate_nothing_and_the_ledger_verifies(
    services: SuiteServices, tmp_path: Path
) -> None:
    report_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--short", "--json", str(report_path)],
        cwd=REPO,
        env={
            **os.environ,
            "BENCH_DATABASE_URL": services.database_url,
            "BENCH_AMQP_URL": services.amqp_url,
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
    assert [r["fault"] for r in report["recoveries"]] == [
        "replica",
        "sequencer leader",
        "DMS stream cut",
        "gateway",
    ], output
    assert all(r["seconds"] is not None for r in report["recoveries"]), output
    assert report["copies"] > 0, output
    assert report["rest_copies"] > 0, output
    assert (report["lost"], report["duplicated"]) == (0, 0), output
    assert (report["rest_lost"], report["rest_duplicated"]) == (0, 0), output
    assert report["unacknowledged_in_database"] == 0, output
    assert report["ledger_pending"] == 0, output
    assert report["ledger_verified"], output
    assert "by the other replica" in report["recoveries"][1]["detail"], output
    assert result.returncode == 0, output
    assert "chaos: PASS" in result.stdout
