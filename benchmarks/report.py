"""The bench report: the figures of one run, the issue's targets with PASS or MISS, as text and
as JSON (`--json`)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ceilings import Ceilings
from benchmarks.circular import CircularResult
from benchmarks.ledger import StoreFigures
from benchmarks.load import StepResult
from benchmarks.timeline import timeline_lines

# The targets of issue 10, on this 2-core machine with Postgres and RabbitMQ beside docaxis.
P99_LIMIT_MS = 250.0
SUSTAINED_TARGET_DOCS_PER_S = 1000.0
SUSTAINED_WINDOW_S = 30.0
LIGHT_LOAD_DOCS_PER_S = 200.0
LIGHT_LOAD_P99_MS = 50.0
CIRCULAR_TARGET_S = 5.0
CIRCULAR_RECIPIENTS = 3000


@dataclass(frozen=True, slots=True)
class Integrity:
    lost: int
    duplicated: int
    redelivered_before_ack: int
    unacknowledged_in_database: int
    ledger_verified: bool
    ledger_entries: int
    ledger_pending: int
    stream_restarts: int
    acknowledge_errors: dict[str, int]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    wanted: str
    measured: str
    passed: bool


def _cores_line(cores: dict[str, float]) -> list[str]:
    if not cores:
        return []
    return ["  cores meanwhile: " + ", ".join(f"{g} {c:.2f}" for g, c in cores.items())]


@dataclass(slots=True)
class Report:
    mode: str
    ack_mode: str
    workers: int | None
    step_s: float
    machine: dict[str, Any]
    # The mean of the ceilings measured before and after the load (each is in the JSON).
    ceilings: Ceilings
    ceilings_before: Ceilings
    ceilings_after: Ceilings
    steps: list[StepResult]
    # The circular pushed to open streams (the target's figure), and the same pulled.
    circular: CircularResult | None
    store: StoreFigures | None
    integrity: Integrity
    notes: list[str] = field(default_factory=list)
    circular_pull: CircularResult | None = None

    def sustained(self) -> StepResult | None:
        """The highest offered rate whose step sustained p99 submit→delivered under the limit."""
        passing = [s for s in self.steps if s.sustained(P99_LIMIT_MS)]
        return max(passing, key=lambda s: s.offered_docs_per_s, default=None)

    def ratios(self, docs_per_s: float | None = None) -> dict[str, float]:
        """A rate in docs/s (by default the sustained one) as a fraction of each of the
        machine's ceilings."""
        if docs_per_s is None:
            best = self.sustained()
            docs_per_s = best.accepted_docs_per_s if best is not None else 0.0
        return {k: docs_per_s / v for k, v in self.ceilings.as_dict().items() if v}

    def peak(self) -> tuple[float, float]:
        """The highest rates seen in any step, sustained or not: (accepted docs/s, delivered
        copies/s). Where nothing is sustained, these still compare runs."""
        return (
            max((s.accepted_docs_per_s for s in self.steps), default=0.0),
            max((s.delivered_copies_per_s for s in self.steps), default=0.0),
        )

    def targets(self) -> list[Target]:
        best = self.sustained()
        docs = best.accepted_docs_per_s if best is not None else 0.0
        window = self.step_s
        targets = [
            Target(
                "sustained rate",
                f">= {SUSTAINED_TARGET_DOCS_PER_S:,.0f} docs/s with p99 submit->delivered "
                f"< {P99_LIMIT_MS:.0f} ms over >= {SUSTAINED_WINDOW_S:.0f} s",
                f"{docs:,.0f} docs/s over {window:.0f} s",
                docs >= SUSTAINED_TARGET_DOCS_PER_S and window >= SUSTAINED_WINDOW_S,
            )
        ]
        light = next((s for s in self.steps if s.offered_docs_per_s == LIGHT_LOAD_DOCS_PER_S), None)
        if light is not None:
            targets.append(
                Target(
                    f"p99 at {LIGHT_LOAD_DOCS_PER_S:.0f} docs/s",
                    f"submit->delivered p99 < {LIGHT_LOAD_P99_MS:.0f} ms",
                    _ms(light.delivered_ms.p99)
                    + (" (overloaded: stopped early)" if light.overloaded else ""),
                    light.delivered_ms.p99 < LIGHT_LOAD_P99_MS and light.sustained(P99_LIMIT_MS),
                )
            )
        if self.circular is not None:
            c = self.circular
            targets.append(
                Target(
                    f"circular to {c.recipients:,} recipients ({c.mode})",
                    f"{CIRCULAR_RECIPIENTS:,} recipients fully acknowledged "
                    f"< {CIRCULAR_TARGET_S:.0f} s",
                    f"not timed ({c.refused})"
                    if c.refused
                    else f"{c.fully_acknowledged_s:.1f} s ({c.acknowledged:,} acknowledged)",
                    # The target is for a national circular: fewer recipients only indicate.
                    c.recipients >= CIRCULAR_RECIPIENTS
                    and c.fully_acknowledged_s < CIRCULAR_TARGET_S
                    and c.acknowledged == c.recipients,
                )
            )
        i = self.integrity
        targets += [
            Target("lost copies", "0", str(i.lost), i.lost == 0),
            Target("duplicated copies", "0", str(i.duplicated), i.duplicated == 0),
            Target(
                "ledger",
                "verifies after the run",
                f"{'verified' if i.ledger_verified else 'FAILED'}, {i.ledger_entries:,} entries",
                i.ledger_verified,
            ),
        ]
        return targets

    def as_dict(self) -> dict[str, Any]:
        best = self.sustained()
        report: dict[str, Any] = clean_for_json(
            {
                "mode": self.mode,
                "ack_mode": self.ack_mode,
                "workers": self.workers,
                "step_s": self.step_s,
                "machine": self.machine,
                "ceilings": self.ceilings.as_dict(),
                "ceilings_before_load": self.ceilings_before.as_dict(),
                "ceilings_after_load": self.ceilings_after.as_dict(),
                "sustained": None
                if best is None
                else {
                    "offered_docs_per_s": best.offered_docs_per_s,
                    "docs_per_s": best.accepted_docs_per_s,
                    "copies_per_s": best.delivered_copies_per_s,
                    "window_s": best.ran_s,
                    "delivered_p99_ms": best.delivered_ms.p99,
                },
                "sustained_ratio_to_ceilings": self.ratios(),
                "peak": {
                    "accepted_docs_per_s": self.peak()[0],
                    "delivered_copies_per_s": self.peak()[1],
                    "delivered_docs_per_s_ratio_to_ceilings": self.ratios(self.peak()[1] / 2),
                },
                "steps": [dataclasses.asdict(step) for step in self.steps],
                "circular": None if self.circular is None else dataclasses.asdict(self.circular),
                "circular_pull": (
                    None if self.circular_pull is None else dataclasses.asdict(self.circular_pull)
                ),
                "store": None if self.store is None else dataclasses.asdict(self.store),
                "integrity": dataclasses.asdict(self.integrity),
                "targets": [
                    {**dataclasses.asdict(t), "status": "PASS" if t.passed else "MISS"}
                    for t in self.targets()
                ],
                "notes": self.notes,
            }
        )
        return report

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n")

    def _cpu_lines(self) -> list[str]:
        """Per step, the cores each group of processes used (benchmarks/cpu.py)."""
        measured = [s.cores for s in self.steps if s.cores]
        if not measured:
            return []
        groups = list(measured[0])
        lines = [
            "",
            "where the CPU went (cores; other = the rest of the machine, machine = every busy "
            "core):",
            "  offered | " + " | ".join(f"{g:>14}" for g in groups),
        ]
        for s in self.steps:
            lines.append(
                f"  {s.offered_docs_per_s:>7,.0f} | "
                + " | ".join(f"{s.cores.get(g, 0.0):>14.2f}" for g in groups)
            )
        lines += _waits_lines(self.steps)
        costs = [s for s in self.steps if s.cpu_ms_per_document]
        if costs:
            groups = list(costs[0].cpu_ms_per_document)
            lines += [
                "",
                "CPU ms per accepted document (per delivered copy), during each step and its "
                "drain; loop: docaxis's event-loop threads, within docaxis:",
                "  offered | " + " | ".join(f"{g:>16}" for g in groups) + " |   loop",
            ]
            for s in costs:
                lines.append(
                    f"  {s.offered_docs_per_s:>7,.0f} | "
                    + " | ".join(_cost(s, g).rjust(16) for g in groups)
                    + f" | {s.loop_cpu_ms_per_document:>6.1f}"
                )
            lines += [
                "",
                "Postgres's writes: WAL bytes per accepted document during each step and its "
                "drain; the mean stored transport receipt (bytes) at its end:",
            ]
            lines += [
                f"  {s.offered_docs_per_s:>7,.0f} | WAL {s.wal_bytes_per_document:>8,} | "
                f"receipt {s.receipt_bytes:>7,.0f}"
                for s in costs
            ]
        return lines

    def text(self) -> str:
        lines = [
            f"docaxis bench ({self.mode}; {self.ack_mode} acknowledgements; "
            f"{self.workers or 'default'} docaxis workers; "
            f"load average {self.machine.get('load_average_start')} at start, "
            f"{self.machine.get('load_average_end')} at the end, "
            f"{self.machine.get('cores')} cores)",
            "",
            "machine ceilings, measured in this run before and after the load (mean):",
        ]
        names = (
            "gRPC Health/Check round trips/s over mTLS",
            "RabbitMQ persistent publishes/s, confirmed",
            "Postgres rows/s inserted in batches of 1000",
            "Ed25519 verifications/s (one core)",
        )
        for name, before, after, mean in zip(
            names,
            self.ceilings_before.as_dict().values(),
            self.ceilings_after.as_dict().values(),
            self.ceilings.as_dict().values(),
            strict=True,
        ):
            lines.append(f"  {name:<44} {before:>9,.0f} {after:>9,.0f} ({mean:,.0f})")
        lines += [
            "",
            "open-loop load (10 KiB signed attachment, both signatures, 2 recipients, every copy "
            "acknowledged):",
            "  offered  accepted  copies/s | submit p50/p95/p99 ms     | submit->delivered "
            "p50/p95/p99 ms | ack p50 ms | docaxis cores | note",
        ]
        for s in self.steps:
            note = _step_notes(s)
            lines.append(
                f"  {s.offered_docs_per_s:>7,.0f} {s.accepted_docs_per_s:>9,.1f} "
                f"{s.delivered_copies_per_s:>9,.1f} | "
                f"{_ms(s.submit_ms.p50)} / {_ms(s.submit_ms.p95)} / {_ms(s.submit_ms.p99):<9}| "
                f"{_ms(s.delivered_ms.p50)} / {_ms(s.delivered_ms.p95)} / "
                f"{_ms(s.delivered_ms.p99):<12}| {_ms(s.acknowledge_ms.p50):>10} | "
                f"{s.server_cores:>13.2f} | " + "; ".join(note)
            )
        lines += self._cpu_lines()
        best = self.sustained()
        lines.append("")
        if best is None:
            lines.append(
                f"sustained: no step kept p99 submit->delivered under {P99_LIMIT_MS:.0f} ms"
            )
        else:
            lines.append(
                f"sustained: {best.accepted_docs_per_s:,.1f} docs/s, "
                f"{best.delivered_copies_per_s:,.1f} copies/s over {best.ran_s:.0f} s "
                f"(p99 submit->delivered {_ms(best.delivered_ms.p99)} ms)"
            )
        lines.append(
            "  as a fraction of each ceiling: "
            + ", ".join(f"{name} {ratio:.4f}" for name, ratio in self.ratios().items())
        )
        accepted, delivered = self.peak()
        lines += [
            f"peak (any step, sustained or not): {accepted:,.1f} docs/s accepted, "
            f"{delivered:,.1f} copies/s delivered",
            "  delivered documents/s as a fraction of each ceiling: "
            + ", ".join(f"{k} {v:.4f}" for k, v in self.ratios(delivered / 2).items()),
        ]
        lines += _circular_lines(self.circular) + _circular_lines(self.circular_pull)
        if self.store is not None:
            st = self.store
            lines += ["", f"ledger sequencer: {st.events:,} staged events, fsync on"]
            for batch, rate in st.sequenced_per_s.items():
                runs = ", ".join(f"{r:,.0f}" for r in st.runs[batch])
                lines.append(
                    f"  batch {batch:>5}: {rate:>9,.0f} entries/s sequenced (runs: {runs})"
                )
            lines.append(
                f"attachment of {st.attachment_mib} MiB through the Postgres store (no gRPC): "
                f"upload {st.upload_mib_per_s:,.0f} MiB/s, download {st.download_mib_per_s:,.0f} "
                "MiB/s"
            )
        i = self.integrity
        lines += [
            "",
            f"integrity: {i.lost} lost, {i.duplicated} duplicated, {i.redelivered_before_ack} "
            f"pushed again before their acknowledgement, {i.unacknowledged_in_database} "
            f"unacknowledged in the database, {i.stream_restarts} stream restarts"
            + (f", acknowledge errors {i.acknowledge_errors}" if i.acknowledge_errors else ""),
            f"ledger: {'verified' if i.ledger_verified else 'NOT verified'} "
            f"({i.ledger_entries:,} entries, {i.ledger_pending} still pending)",
            "",
            "targets:",
        ]
        for t in self.targets():
            status = "PASS" if t.passed else "MISS"
            lines.append(f"  {status}  {t.name}: {t.wanted}; measured {t.measured}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _step_notes(s: StepResult) -> list[str]:
    note = []
    if s.overloaded:
        note.append(f"overloaded, stopped after {s.ran_s:.0f} s")
    if not s.drained:
        note.append(f"{s.copies - s.copies_acknowledged} copies not acknowledged in time")
    if s.rejected:
        note.append(f"rejected {s.rejected}")
    if s.sustained(P99_LIMIT_MS):
        note.append("sustained")
    if len(s.worker_cores) > 1:
        note.append("workers " + " + ".join(f"{c:.2f}" for c in s.worker_cores))
    return note


def _waits_lines(steps: list[StepResult]) -> list[str]:
    """Per step, the time each group's threads waited for a core, beside the cores they used."""
    measured = [s for s in steps if s.core_waits]
    if not measured:
        return []
    groups = list(measured[0].core_waits)
    lines = [
        "",
        "waiting for a core (seconds a second each group's threads were runnable but not "
        "running, summed over its threads; schedstat's run_delay; not in the cores above):",
        "  offered | " + " | ".join(f"{g:>14}" for g in groups),
    ]
    for s in measured:
        lines.append(
            f"  {s.offered_docs_per_s:>7,.0f} | "
            + " | ".join(f"{s.core_waits.get(g, 0.0):>14.2f}" for g in groups)
        )
    return lines


def _cost(step: StepResult, group: str) -> str:
    """`group`'s CPU ms per document of `step`, and per copy in brackets."""
    per_document = step.cpu_ms_per_document.get(group, 0.0)
    return f"{per_document:.1f} ({step.cpu_ms_per_copy.get(group, 0.0):.1f})"


def _circular_lines(c: CircularResult | None) -> list[str]:
    """The circular's figures, after a blank line."""
    if c is None:
        return []
    how = (
        "pushed on every commune's open ReceiveStream, acknowledged on it"
        if c.mode == "push"
        else "pulled: list, fetch, acknowledge"
    )
    if c.refused:
        return [
            "",
            f"circular ({how}): 1 document to {c.recipients:,} communes not timed: {c.refused}",
        ]
    lines = [
        "",
        f"circular ({how}): 1 document to {c.recipients:,} communes, "
        f"{c.acknowledged:,} acknowledged" + (f", errors {c.errors}" if c.errors else ""),
        f"  DMSs connected{' and subscribed' if c.mode == 'push' else ''} in {c.connect_s:.1f} s "
        "before the clock; from Submit: accepted "
        f"{c.submit_s:.2f} s, first copy {c.first_delivery_s:.2f} s, last copy "
        f"{c.last_delivery_s:.2f} s, fully acknowledged {c.fully_acknowledged_s:.2f} s",
    ]
    if c.mode == "push":
        lines.append(
            f"  the sender's status notices: {c.sender_notices:,}, the last at "
            f"{c.last_notice_s:.2f} s; {c.duplicated} copies pushed again after their "
            "acknowledgement"
        )
    lines += timeline_lines(c.timeline)
    if c.cpu_s:
        lines.append(
            "  CPU seconds from Submit to fully acknowledged: "
            + ", ".join(f"{g} {seconds:.2f}" for g, seconds in c.cpu_s.items())
        )
    if c.cores:
        lines.append(
            "  cores from Submit to the end: "
            + ", ".join(f"{g} {cores:.2f}" for g, cores in c.cores.items())
        )
    return lines


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def clean_for_json(value: Any) -> Any:
    """NaN (no sample) and infinity as null; dict keys as strings: JSON has neither NaN nor
    int keys."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean_for_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_for_json(v) for v in value]
    return value
