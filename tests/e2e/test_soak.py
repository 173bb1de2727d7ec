"""`make soak` in seconds instead of half an hour, on the suite's servers: the ramp finds a rate,
agencies disconnect and come back during the load, every series gets its verdict, the plot and
the samples are written, and every copy was delivered exactly once. No wall-clock figure is
asserted: whether a series stayed flat over a few seconds on a shared machine is not a test."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.processes import free_port
from tests.infra import REPO, SuiteServices

pytestmark = pytest.mark.e2e

SERIES = (
    "resident memory, all docaxis processes",
    "open file descriptors, all docaxis processes",
    "database connections",
    "messages ready in the inboxes (RabbitMQ)",
    "notices ready in the senders' inboxes",
    "notices not yet acknowledged",
    "outbox rows not yet relayed",
    "copies not yet acknowledged",
    "submit->delivered latency p99",
)


def test_a_short_soak_with_churn_prints_its_verdicts_and_loses_nothing(
    services: SuiteServices, tmp_path: Path
) -> None:
    """A real `docaxis run` (two workers, mutual TLS) under the soak's load for 15 s, a recipient
    and a sender away every 3 s: a verdict line per series, lost 0 and duplicated 0, the PNG, the
    CSV with a row per sample and every worker's memory in the JSON."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--minutes",
            "0.25",
            "--ramp-step-s",
            "2",
            "--ramp-max",
            "10",
            "--sample-s",
            "0.75",
            "--churn-s",
            "3",
            "--away-s",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={
            **os.environ,
            "SOAK_DATABASE_URL": services.database_url,
            "SOAK_AMQP_URL": services.amqp_url,
            "SOAK_GRPC_PORT": str(free_port()),
            "SOAK_LOCAL_DIR": str(tmp_path / "soak"),
        },
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stdout = result.stdout
    assert re.search(
        r"soak: [\d.]+ docs/s \(half the (highest rate the ramp sustained|ramp's lowest rate)",
        stdout,
    )
    for series in SERIES:
        assert re.search(
            rf"^  (FLAT    |NOT FLAT|TOO FEW )  {re.escape(series)}: ", stdout, re.M
        ), series
    assert re.search(r"^  PASS  lost copies: 0 of \d+", stdout, re.M)
    assert re.search(r"^  PASS  duplicated copies: 0$", stdout, re.M)
    plot = re.search(r"^plot: (.+)$", stdout, re.M)
    assert plot is not None
    assert Path(plot.group(1)) == out / "soak.png"
    assert (out / "soak.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((out / "soak.json").read_text())
    assert (report["lost"], report["duplicated"]) == (0, 0)
    assert report["unacknowledged_in_database"] == 0
    assert report["copies"] > 0
    assert report["notices"] > 0  # the senders read their status notices, as DMSs do
    assert report["recipients_away"] >= 2
    assert report["senders_away"] >= 2
    assert report["ramp"]
    assert report["ramp"][0]["offered_docs_per_s"] == 5
    assert {v["status"] for v in report["verdicts"]} <= {"FLAT", "NOT FLAT", "TOO FEW"}
    # Both docaxis processes (the main one and its worker) sampled, each with memory and files.
    first = report["per_process"][0]["processes"]
    assert len(first) == 2
    assert all(p["rss_mib"] > 0 and p["open_fds"] > 0 for p in first)
    with (out / "soak.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["per_process"]) >= 15
    assert float(rows[-1]["db_connections"]) > 0
    assert all(float(row["rss_mib"]) > 0 for row in rows)
