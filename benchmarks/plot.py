"""The PNG of latency against offered load (`--plot`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt

from benchmarks.load import StepResult
from benchmarks.report import P99_LIMIT_MS


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
