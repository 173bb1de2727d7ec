"""`make bench`'s smallest run (--tiny) on the suite's servers: the report has every part the
issue asks for, and no copy was lost or duplicated. No wall-clock figure is asserted."""

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


@pytest.mark.parametrize(
    "options",
    [(), ("--ack-mode", "stream", "--workers", "2")],
    ids=["unary-acknowledgements", "stream-acknowledgements-two-workers"],
)
def test_the_tiny_bench_reports_every_figure_and_loses_nothing(
    services: SuiteServices, tmp_path: Path, options: tuple[str, ...]
) -> None:
    """The bench drives a real `docaxis run` over mutual TLS: every target is reported with PASS
    or MISS, every ceiling and step has figures, the circular is fully acknowledged, the ledger
    verifies, and nothing is lost or duplicated, whichever way the recipients acknowledge; the
    circular pushed to every commune's stream reaches each once, and its sender gets a status
    notice per copy."""
    report_path, plot_path = tmp_path / "report.json", tmp_path / "latency.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--tiny",
            "--json",
            str(report_path),
            "--plot",
            str(plot_path),
            *options,
        ],
        cwd=REPO,
        env={
            **os.environ,
            "BENCH_DATABASE_URL": services.database_url,
            "BENCH_AMQP_URL": services.amqp_url,
            "BENCH_GRPC_PORT": str(free_port()),
            "BENCH_LOCAL_DIR": str(tmp_path / "bench"),
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert set(report["ceilings"]) == {
        "grpc_health_round_trips_per_s",
        "rabbitmq_persistent_confirmed_publishes_per_s",
        "postgres_batched_insert_rows_per_s",
        "ed25519_verifications_per_s",
    }
    assert all(value > 0 for value in report["ceilings"].values())
    assert set(report["sustained_ratio_to_ceilings"]) == set(report["ceilings"])
    [step] = report["steps"]
    assert step["accepted_docs"] == step["offered_docs"] > 0
    assert step["copies_acknowledged"] == step["copies"] == 2 * step["accepted_docs"]
    # The CPU each group spent per document and per copy: docaxis does work for every one.
    groups = {"docaxis", "postgres", "rabbitmq", "load generator"}
    assert set(step["cpu_ms_per_document"]) == set(step["cpu_ms_per_copy"]) == groups
    assert step["cpu_ms_per_document"]["docaxis"] > 0
    assert len(step["worker_cores"]) == (2 if "--workers" in options else 1)
    # What Postgres wrote: WAL for the documents, and each copy's receipt stored without the
    # hub's chain (about 575 bytes, 2.6 KB with it).
    assert step["wal_bytes_per_document"] > 0
    assert 0 < step["receipt_bytes"] < 1_000
    for latency in ("submit_ms", "delivered_ms", "acknowledge_ms"):
        assert set(step[latency]) == {"count", "p50", "p95", "p99", "max"}
    push, pull = report["circular"], report["circular_pull"]
    assert (push["mode"], pull["mode"]) == ("push", "pull")
    assert push["acknowledged"] == push["recipients"] == pull["acknowledged"] > 0
    assert push["sender_notices"] == push["recipients"]
    assert push["duplicated"] == pull["duplicated"] == 0
    # Where the push circular's seconds went, by its copies' timestamps: each copy queued by a
    # relay batch, claimed for its push and acknowledged.
    timeline = push["timeline"]
    assert sum(copies for _, copies, _ in timeline["relay_batches"]) == push["recipients"]
    assert len(timeline["claimed"]) == len(timeline["acknowledged"]) == 3
    assert timeline["notices"][2] >= timeline["acknowledged"][0]
    assert "relay batches at" in result.stdout
    assert report["store"]["upload_mib_per_s"] > 0
    integrity = report["integrity"]
    assert (integrity["lost"], integrity["duplicated"]) == (0, 0)
    assert integrity["unacknowledged_in_database"] == 0
    assert integrity["ledger_verified"] is True
    assert integrity["ledger_entries"] > 0
    statuses = {target["name"]: target["status"] for target in report["targets"]}
    assert set(statuses.values()) <= {"PASS", "MISS"}
    assert {"sustained rate", "lost copies", "duplicated copies", "ledger"} <= set(statuses)
    assert statuses["lost copies"] == statuses["duplicated copies"] == "PASS"
    assert plot_path.read_bytes().startswith(b"\x89PNG")
    assert "targets:" in result.stdout
