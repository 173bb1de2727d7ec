"""The bench's PNG of latency against offered load (`--plot`), and the soak's PNG of every
sampled series over time."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt
from PIL import Image

from benchmarks.flatness import WARM_UP_FRACTION
from benchmarks.load import StepResult
from benchmarks.report import P99_LIMIT_MS
from benchmarks.sampler import Sample


def plot_latency(steps: list[StepResult], path: Path, title: str) -> None:
    """Submit and submit→delivered p50/p99 (log scale) against the offered docs/s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = sorted(steps, key=lambda s: s.offered_docs_per_s)
    rates = [s.offered_docs_per_s for s in steps]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    series = [
        ("submit p50", [s.submit_ms.p50 for s in steps], "tab:blue", "--"),
        ("submit p99", [s.submit_ms.p99 for s in steps], "tab:blue", "-"),
        ("submit→delivered p50", [s.delivered_ms.p50 for s in steps], "tab:red", "--"),
        ("submit→delivered p99", [s.delivered_ms.p99 for s in steps], "tab:red", "-"),
    ]
    for label, values, colour, style in series:
        axes.plot(rates, values, style, color=colour, marker="o", label=label)
    for step in steps:
        if step.overloaded:
            axes.annotate(
                "overloaded",
                (step.offered_docs_per_s, step.delivered_ms.p99),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
    axes.axhline(P99_LIMIT_MS, color="grey", linewidth=0.8, linestyle=":")
    axes.text(
        rates[0] if rates else 0,
        P99_LIMIT_MS * 1.08,
        f"{P99_LIMIT_MS:.0f} ms",
        fontsize=8,
        color="grey",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered load (documents/s, 2 copies each)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_soak(
    samples: Sequence[Sample], columns: dict[str, list[float]], path: Path, title: str
) -> None:
    """One panel per series over the soak's minutes: resident memory and open files of every
    docaxis process (and their total), database connections, queue depths, latencies and
    throughput; the warm-up (left out of the verdicts) shaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    minutes = [t / 60 for t in columns["t_s"]]
    figure, panels = plt.subplots(6, 1, figsize=(9, 15), dpi=80, sharex=True)
    memory, files, connections, queues, latency, throughput = panels
    pids = sorted({p.pid for s in samples for p in s.processes})
    for number, pid in enumerate(pids):
        label = "docaxis run" if number == 0 else f"worker (pid {pid})"
        by_time = [
            (t, next((p for p in s.processes if p.pid == pid), None))
            for t, s in zip(minutes, samples, strict=True)
        ]
        present = [(t, p) for t, p in by_time if p is not None]
        memory.plot([t for t, _ in present], [p.rss_mib for _, p in present], label=label)
        files.plot([t for t, _ in present], [p.open_fds for _, p in present], label=label)
    memory.plot(minutes, columns["rss_mib"], color="black", label="total")
    files.plot(minutes, columns["open_fds"], color="black", label="total")
    memory.set_ylabel("resident memory (MiB)")
    files.set_ylabel("open file descriptors")
    connections.plot(minutes, columns["db_connections"], color="tab:purple")
    connections.set_ylabel("Postgres connections")
    for key, label in (
        ("inbox_messages", "copies ready in the inboxes"),
        ("notice_messages", "notices ready for the senders"),
        ("dead_letters", "dead letters"),
        ("outbox_rows", "outbox rows"),
        ("unacknowledged_copies", "copies unacknowledged"),
        ("unacknowledged_notices", "notices unacknowledged"),
        ("ledger_pending", "ledger events pending"),
    ):
        queues.plot(minutes, columns[key], label=label)
    queues.set_ylabel("queue depth")
    queues.set_yscale("symlog", linthresh=10)
    for key, label, colour, style in (
        ("submit_p50_ms", "submit p50", "tab:blue", "--"),
        ("submit_p99_ms", "submit p99", "tab:blue", "-"),
        ("delivered_p50_ms", "submit→delivered p50", "tab:red", "--"),
        ("delivered_p99_ms", "submit→delivered p99", "tab:red", "-"),
    ):
        latency.plot(minutes, columns[key], style, color=colour, label=label)
    latency.set_yscale("log")
    latency.set_ylabel("latency per interval (ms)")
    throughput.plot(minutes, columns["accepted_docs_per_s"], label="documents accepted/s")
    throughput.plot(minutes, columns["delivered_copies_per_s"], label="copies delivered/s")
    throughput.set_ylabel("per second")
    throughput.set_xlabel("minutes of steady load")
    warm_up_end = minutes[0] + (minutes[-1] - minutes[0]) * WARM_UP_FRACTION if minutes else 0
    for panel in panels:
        panel.axvspan(0, warm_up_end, color="grey", alpha=0.12, linewidth=0)
        panel.grid(True, which="both", linewidth=0.3)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=7, loc="upper left")
    memory.set_title(title + " (shaded: warm-up)", fontsize=9)
    figure.tight_layout()
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png")
    plt.close(figure)
    # A palette of 64 colours: a third of the size, small enough to commit beside the docs.
    Image.open(rendered).convert("RGB").quantize(colors=64).save(path, optimize=True)
