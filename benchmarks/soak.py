"""`python -m benchmarks.soak` (`make soak`): a steady load for a long time (30 minutes by
default) at half the highest rate this machine sustains, while agencies disconnect and come back;
every few seconds it samples docaxis's resident memory and open files (every worker), its
database connections, the queue depths and the latencies, plots them (PNG), says for each
whether it stayed flat after warm-up (benchmarks/flatness.py), and counts copies lost or
duplicated at the receiving side. Exits 1 if any copy was lost or duplicated.

The stack and the load are the bench's (benchmarks/stack.py, benchmarks/load.py): its own
Postgres, RabbitMQ and `docaxis run` on the SOAK_*_PORT ports, driven through the public gRPC API
over mutual TLS only. "Highest sustained rate" is the bench's: the highest offered rate whose
step kept every copy acknowledged and p99 submit->delivered under 250 ms; a short ramp at the
start finds it, unless `--rate` gives the soak's rate.

Churn: every `--churn-s` seconds one recipient hangs up its push stream and closes its
connection (after docaxis has answered the acknowledgements it sent), stays away `--away-s`
seconds while its copies queue up, and connects again; at the same time one sender closes its
connection and comes back (the others send its share meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.flatness import WARM_UP_FRACTION, Verdict, judge
from benchmarks.load import (
    RECIPIENTS_PER_DOCUMENT,
    AckMode,
    Offered,
    Workload,
    bench_codes,
)
from benchmarks.plot import plot_soak
from benchmarks.report import P99_LIMIT_MS, clean_for_json
from benchmarks.sampler import Sample, Sampler, unacknowledged_copies
from benchmarks.stack import REPO, Axis, BenchAgency, BenchPki, Ports, Servers, write_agencies
from benchmarks.stats import percentiles
from services.common.logs import configure_logging

DATABASE = "docaxis_soak"
# The ramp's offered rates (docs/s); it stops at the first that is not sustained.
RAMP_RATES = (5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 350.0, 500.0, 750.0, 1000.0)
WARM_UP_DOCS_PER_S, WARM_UP_S = 5.0, 2.0
DRAIN_S = 60.0
LATENCY_FLOOR_MS = 25.0


@dataclass(slots=True)
class Away:
    """When an agency was disconnected on purpose: from the start of its hang-up until it was
    connected (and, for a recipient, subscribed) again."""

    code: str
    left: float
    back: float = math.inf


@dataclass(slots=True)
class Soak:
    """What a soak run measured."""

    rate: float
    rate_source: str
    minutes: float
    ack_mode: str
    workers: int
    sample_s: float
    churn_s: float
    away_s: float
    ramp: list[dict[str, Any]]
    samples: list[Sample]
    columns: dict[str, list[float]]
    verdicts: list[Verdict]
    copies: int
    lost: int
    duplicated: int
    redelivered: int
    unknown_pushes: int
    unacknowledged_in_database: int
    rejected_submits: dict[str, int]
    acknowledge_errors: dict[str, int]
    stream_restarts: int
    recipients_away: int
    senders_away: int
    copies_queued_while_away: int
    notices: int
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def _find_rate(
    workload: Workload, step_s: float, highest: float
) -> tuple[float, str, list[dict[str, Any]]]:
    """Half the highest offered rate the ramp sustained (the bench's definition)."""
    steps: list[dict[str, Any]] = []
    best = None
    for rate in (r for r in RAMP_RATES if r <= highest):
        step = await workload.run_step(rate, step_s, drain_s=DRAIN_S)
        sustained = step.sustained(P99_LIMIT_MS)
        steps.append(
            {
                "offered_docs_per_s": rate,
                "accepted_docs_per_s": step.accepted_docs_per_s,
                "delivered_p99_ms": step.delivered_ms.p99,
                "sustained": sustained,
            }
        )
        print(
            f"  ramp {rate:,.0f} docs/s for {step_s:.0f} s: accepted "
            f"{step.accepted_docs_per_s:,.1f}/s, p99 submit->delivered "
            f"{step.delivered_ms.p99:,.0f} ms: " + ("sustained" if sustained else "not sustained"),
            flush=True,
        )
        if not step.drained:
            await workload.drain_all(60, 600)
        if not sustained:
            break
        best = rate
    if best is None:
        lowest = RAMP_RATES[0]
        return (
            lowest / 2,
            f"half the ramp's lowest rate ({lowest:.0f} docs/s): none was sustained with p99 "
            f"submit->delivered under {P99_LIMIT_MS:.0f} ms",
            steps,
        )
    return best / 2, f"half the highest rate the ramp sustained ({best:,.0f} docs/s)", steps


class _Churn:
    """Every `every_s` one recipient and one sender disconnect, stay away `away_s`, come back
    (round robin over the agencies)."""

    def __init__(self, workload: Workload, every_s: float, away_s: float) -> None:
        self._workload = workload
        self._every_s = every_s
        self._away_s = away_s
        self.recipients_away: list[Away] = []
        self.senders_away: list[Away] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._round = 0

    def due(self, elapsed_s: float) -> bool:
        return self._every_s > 0 and elapsed_s >= (self._round + 1) * self._every_s

    def start_round(self) -> None:
        workload = self._workload
        recipient = self._round % len(workload.recipients)
        sender = self._round % len(workload.senders)
        self._round += 1
        for work in (self._recipient_away(recipient), self._sender_away(sender)):
            task = asyncio.create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _recipient_away(self, index: int) -> None:
        away = Away(self._workload.recipients[index].agency_code, time.monotonic())
        self.recipients_away.append(away)
        await self._workload.disconnect_recipient(index)
        await asyncio.sleep(self._away_s)
        await self._workload.reconnect_recipient(index)
        away.back = time.monotonic()

    async def _sender_away(self, index: int) -> None:
        workload = self._workload
        if len(workload.senders) < 2 or not workload.present(index):
            return  # someone has to send
        away = Away(workload.senders[index].agency_code, time.monotonic())
        self.senders_away.append(away)
        await workload.disconnect_sender(index)
        await asyncio.sleep(self._away_s)
        workload.reconnect_sender(index)
        away.back = time.monotonic()

    async def finish(self) -> None:
        """Waits until every agency away has come back."""
        await asyncio.gather(*self._tasks)


async def _offer_steadily(
    workload: Workload, rate: float, seconds: float, start: float, churn: _Churn
) -> Offered:
    """Open-loop load at `rate` docs/s from `start` for `seconds`, each document signed just
    before its turn (one ahead), churn rounds started when due."""
    offered = Offered()
    sending: list[asyncio.Task[None]] = []
    total = max(1, round(rate * seconds))
    document = workload.prepare(1)[0]
    for index in range(total):
        at = start + index / rate
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if not workload.present(document.sender):  # left since it was signed
            document = workload.prepare(1)[0]
        sending.append(workload.send(document, at, offered))
        if churn.due(time.monotonic() - start):
            churn.start_round()
        if index + 1 < total:
            document = workload.prepare(1)[0]
    # Every Submit answered before anything is counted: a copy docaxis accepted whose answer the
    # run never saw would be missing from both sides of the tally.
    await asyncio.gather(*sending)
    return offered


async def _sample_until(
    sampler: Sampler,
    samples: list[Sample],
    start: float,
    every_s: float,
    done: asyncio.Event,
    workload: Workload,
) -> None:
    """A sample every `every_s` until `done`; a progress line about once a minute."""
    next_at, printed = start, start
    while not done.is_set():
        next_at += every_s
        with_timeout = max(0.0, next_at - time.monotonic())
        try:
            async with asyncio.timeout(with_timeout):
                await done.wait()
        except TimeoutError:
            pass
        now = time.monotonic()
        sample = await sampler.sample(now - start)
        samples.append(sample)
        if now - printed >= 60 or done.is_set():
            printed = now
            print(
                f"  {sample.at_s / 60:5.1f} min: docaxis RSS {sample.rss_mib:,.0f} MiB in "
                f"{len(sample.processes)} processes, {sample.open_fds} open files, "
                f"{sample.db_connections} database connections, {sample.inbox_messages} ready "
                f"in inboxes, {sample.unacknowledged_copies} copies unacknowledged; "
                f"{len(workload.tally.copies):,} copies so far",
                flush=True,
            )


def _columns(
    samples: Sequence[Sample],
    offered: Offered,
    workload: Workload,
    start: float,
    recipients_away: Sequence[Away],
) -> tuple[dict[str, list[float]], int]:
    """The sampled series, plus per sampling interval: accepted docs/s, copies/s delivered and
    the latencies of what was answered or delivered in it. Copies whose recipient was away
    between their sending and their arrival are left out of the latencies (their wait is the
    churn's, not docaxis's): their number is returned beside the columns."""
    times = [s.at_s for s in samples]
    columns: dict[str, list[float]] = {
        "t_s": times,
        "rss_mib": [s.rss_mib for s in samples],
        "open_fds": [float(s.open_fds) for s in samples],
        "processes": [float(len(s.processes)) for s in samples],
        "db_connections": [float(s.db_connections) for s in samples],
        "inbox_messages": [float(s.inbox_messages) for s in samples],
        "notice_messages": [float(s.notice_messages) for s in samples],
        "dead_letters": [float(s.dead_letters) for s in samples],
        "outbox_rows": [float(s.outbox_rows) for s in samples],
        "unacknowledged_copies": [float(s.unacknowledged_copies) for s in samples],
        "unacknowledged_notices": [float(s.unacknowledged_notices) for s in samples],
        "ledger_pending": [float(s.ledger_pending) for s in samples],
    }
    away_by_code: dict[str, list[Away]] = {}
    for away in recipients_away:
        away_by_code.setdefault(away.code, []).append(away)
    submits: list[list[float]] = [[] for _ in samples]
    delivered: list[list[float]] = [[] for _ in samples]
    arrivals = [0 for _ in samples]
    for answered, ms in zip(offered.answered, offered.submit_ms, strict=True):
        slot = bisect.bisect_left(times, answered - start)
        if slot < len(samples):
            submits[slot].append(ms)
    queued_while_away = 0
    for copy in workload.tally.copies.values():
        if copy.arrived is None or copy.scheduled < start:
            continue  # lost (counted elsewhere) or from the ramp
        slot = bisect.bisect_left(times, copy.arrived - start)
        if slot >= len(samples):
            continue
        arrivals[slot] += 1
        if any(
            a.left < copy.arrived and copy.scheduled < a.back
            for a in away_by_code.get(copy.recipient, [])
        ):
            queued_while_away += 1
            continue
        delivered[slot].append((copy.arrived - copy.scheduled) * 1000)
    spans = [t - (times[i - 1] if i else 0.0) for i, t in enumerate(times)]
    columns["accepted_docs_per_s"] = [len(s) / d for s, d in zip(submits, spans, strict=True)]
    columns["delivered_copies_per_s"] = [n / d for n, d in zip(arrivals, spans, strict=True)]
    for name, values in (("submit", submits), ("delivered", delivered)):
        stats = [percentiles(v) for v in values]
        columns[f"{name}_p50_ms"] = [p.p50 for p in stats]
        columns[f"{name}_p99_ms"] = [p.p99 for p in stats]
    return columns, queued_while_away


def _verdicts(columns: dict[str, list[float]], rate: float) -> list[Verdict]:
    times = columns["t_s"]
    copies_per_s = rate * RECIPIENTS_PER_DOCUMENT
    # A backlog below one second of copies is not growth whatever its percentage.
    backlog = max(10.0, copies_per_s)
    series = [
        ("resident memory, all docaxis processes", "MiB", "rss_mib", 0.0, True),
        ("open file descriptors, all docaxis processes", "fds", "open_fds", 10.0, False),
        ("database connections", "connections", "db_connections", 2.0, False),
        ("messages ready in the inboxes (RabbitMQ)", "messages", "inbox_messages", backlog, False),
        ("notices ready in the senders' inboxes", "messages", "notice_messages", backlog, False),
        ("messages in the dead-letter queue", "messages", "dead_letters", 0.0, False),
        ("outbox rows not yet relayed", "rows", "outbox_rows", backlog, False),
        ("copies not yet acknowledged", "copies", "unacknowledged_copies", backlog, False),
        ("notices not yet acknowledged", "notices", "unacknowledged_notices", backlog, False),
        # About one second of ledger events (a document and its copies make several each).
        ("ledger events not yet sequenced", "events", "ledger_pending", 5 * backlog, False),
        ("submit latency p99", "ms", "submit_p99_ms", LATENCY_FLOOR_MS, False),
        ("submit->delivered latency p50", "ms", "delivered_p50_ms", LATENCY_FLOOR_MS, False),
        ("submit->delivered latency p99", "ms", "delivered_p99_ms", LATENCY_FLOOR_MS, False),
    ]
    return [
        judge(name, unit, times, columns[key], floor=floor, by_slope=slope)
        for name, unit, key, floor, slope in series
    ]


async def run(args: argparse.Namespace) -> Soak:
    # SIGTERM (or Ctrl-C) cancels the run, and its cleanup stops every server it started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    work = Path(os.environ.get("SOAK_LOCAL_DIR", str(REPO / ".local" / "soak")))
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "pki", ignore_errors=True)
    machine: dict[str, Any] = {"cores": os.cpu_count(), "load_average_start": _load_average()}
    ports = Ports.from_env(prefix="SOAK")
    servers = Servers(work, ports, prefix="SOAK")
    await servers.start()
    axis: Axis | None = None
    notes: list[str] = []
    try:
        database_url = await servers.fresh_database(DATABASE)
        senders = bench_codes("000", args.senders)
        recipients = bench_codes("001", args.recipients)
        agencies_csv = work / "agencies.csv"
        write_agencies(
            agencies_csv,
            [BenchAgency(code, f"Sở đo tải {code}", "department") for code in senders + recipients],
        )
        pki = BenchPki(work / "pki")
        axis = Axis(
            database_url,
            servers.amqp_url,
            pki,
            ports.grpc,
            work,
            agencies_csv,
            workers=args.workers,
        )
        await axis.start()
        # Senders read their status notices, as DMSs do: over a long run those would pile up.
        workload = Workload(
            axis.address, pki, senders, recipients, AckMode(args.ack_mode), senders_listen=True
        )
        await workload.open()
        # Unrecorded: queues declared, connections and caches warm, streams attached.
        await workload.run_step(WARM_UP_DOCS_PER_S, WARM_UP_S, drain_s=DRAIN_S)
        ramp: list[dict[str, Any]] = []
        if args.rate is not None:
            rate, source = args.rate, "given with --rate"
        else:
            print("finding the highest sustained rate:", flush=True)
            rate, source, ramp = await _find_rate(workload, args.ramp_step_s, args.ramp_max)
        seconds = args.minutes * 60
        print(
            f"soak: {rate:,.2f} docs/s ({source}) for {args.minutes:g} min; a recipient and a "
            f"sender disconnect every {args.churn_s:g} s for {args.away_s:g} s",
            flush=True,
        )
        sampler = Sampler(axis, database_url, servers.amqp_url, senders, recipients)
        await sampler.open()
        samples: list[Sample] = []
        churn = _Churn(workload, args.churn_s, args.away_s)
        start = time.monotonic() + 0.1
        done = asyncio.Event()
        sampling = asyncio.create_task(
            _sample_until(sampler, samples, start, args.sample_s, done, workload)
        )
        try:
            offered = await _offer_steadily(workload, rate, seconds, start, churn)
            await churn.finish()
            drained = await workload.drain_all(60, 600)
        finally:
            done.set()
            await sampling
            await sampler.close()
        await workload.close()
        tally = workload.tally
        unacknowledged = await unacknowledged_copies(database_url)
        # By copy id: routed to this run and never acknowledged to it, or held by docaxis
        # unacknowledged (a copy whose Submit answer the run missed counts too).
        lost = len(
            unacknowledged | {d for d, copy in tally.copies.items() if copy.acknowledged is None}
        )
        code = await axis.stop()
        if not drained:
            notes.append("not every copy was acknowledged within the drain after the load")
        if code != 0:
            notes.append(f"docaxis exited with {code}: see {axis.log_path}")
        machine["load_average_end"] = _load_average()
        columns, queued_while_away = _columns(
            samples, offered, workload, start, churn.recipients_away
        )
        return Soak(
            rate=rate,
            rate_source=source,
            minutes=args.minutes,
            ack_mode=args.ack_mode,
            workers=args.workers,
            sample_s=args.sample_s,
            churn_s=args.churn_s,
            away_s=args.away_s,
            ramp=ramp,
            samples=samples,
            columns=columns,
            verdicts=_verdicts(columns, rate),
            copies=len(tally.copies),
            lost=lost,
            duplicated=tally.duplicates,
            redelivered=tally.redelivered,
            unknown_pushes=len(tally.arrivals_before_route),
            unacknowledged_in_database=len(unacknowledged),
            rejected_submits=dict(offered.rejected),
            acknowledge_errors=dict(tally.ack_errors),
            stream_restarts=workload.stream_restarts,
            recipients_away=len(churn.recipients_away),
            senders_away=len(churn.senders_away),
            copies_queued_while_away=queued_while_away,
            notices=tally.notices,
            machine=machine,
            notes=notes,
        )
    finally:
        if axis is not None:
            await axis.stop()
        # The returned report holds this list: a server left running is reported with it.
        notes.extend(servers.stop())


def report_text(soak: Soak) -> str:
    warm_up = soak.minutes * WARM_UP_FRACTION
    lines = [
        "",
        f"docaxis soak: {soak.rate:,.2f} docs/s ({soak.rate_source}) for {soak.minutes:g} min, "
        f"{soak.ack_mode} acknowledgements, {soak.workers} docaxis workers, "
        f"{len(soak.samples)} samples every {soak.sample_s:g} s; load average "
        f"{soak.machine.get('load_average_start')} at start, "
        f"{soak.machine.get('load_average_end')} at the end, {soak.machine.get('cores')} cores",
        f"churn: {soak.recipients_away} recipient and {soak.senders_away} sender disconnections; "
        f"{soak.copies_queued_while_away:,} copies waited for their recipient to come back "
        "(left out of the latencies)",
        "",
        f"verdicts (warm-up: the first {warm_up:g} min; then the median of the first fifth "
        "against the median of the last fifth, flat within 10 % or the floor; memory also by "
        "its slope):",
        *(v.text() for v in soak.verdicts),
        "",
        f"  {'PASS' if soak.lost == 0 else 'FAIL'}  lost copies: {soak.lost} of {soak.copies:,}",
        f"  {'PASS' if soak.duplicated == 0 else 'FAIL'}  duplicated copies: {soak.duplicated}",
        "",
        f"also: {soak.redelivered} copies pushed again before their acknowledgement (after a "
        f"hang-up: allowed), {soak.unacknowledged_in_database} unacknowledged in the database, "
        f"{soak.unknown_pushes} pushes of copies no Submit answered, "
        f"{soak.stream_restarts} stream restarts, {soak.notices:,} status notices acknowledged "
        "by the senders"
        + (f", refused submits {soak.rejected_submits}" if soak.rejected_submits else "")
        + (f", acknowledge errors {soak.acknowledge_errors}" if soak.acknowledge_errors else ""),
        *(f"note: {note}" for note in soak.notes),
    ]
    return "\n".join(lines)


def write_outputs(soak: Soak, folder: Path) -> tuple[Path, Path, Path]:
    """The samples as CSV (one row per sample, every series), the whole run as JSON, the PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, png_path = folder / "soak.csv", folder / "soak.json", folder / "soak.png"
    names = list(soak.columns)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in zip(*(soak.columns[n] for n in names), strict=True):
            writer.writerow(["" if math.isnan(v) else round(v, 3) for v in row])
    summary = {
        key: value
        for key, value in dataclasses.asdict(soak).items()
        if key not in ("samples", "columns", "verdicts")
    }
    summary["verdicts"] = [
        {
            **dataclasses.asdict(v),
            "status": {True: "FLAT", False: "NOT FLAT", None: "TOO FEW"}[v.flat],
        }
        for v in soak.verdicts
    ]
    summary["per_process"] = [
        {"at_s": s.at_s, "processes": [dataclasses.asdict(p) for p in s.processes]}
        for s in soak.samples
    ]
    json_path.write_text(json.dumps(clean_for_json(summary), indent=2, ensure_ascii=False) + "\n")
    plot_soak(soak.samples, soak.columns, png_path, _title(soak))
    return csv_path, json_path, png_path


def _title(soak: Soak) -> str:
    return (
        f"docaxis soak: {soak.rate:,.1f} docs/s for {soak.minutes:g} min, {soak.ack_mode} acks, "
        f"{soak.workers} workers; an agency away every {soak.churn_s:g} s for {soak.away_s:g} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the steady load")
    parser.add_argument(
        "--rate", type=float, help="docs/s to offer (default: half the ramp's sustained rate)"
    )
    parser.add_argument("--ramp-step-s", type=float, default=15.0, help="each ramp step's length")
    parser.add_argument(
        "--ramp-max", type=float, default=RAMP_RATES[-1], help="the ramp's highest rate (docs/s)"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--churn-s", type=float, default=30.0, help="a recipient and a sender leave this often"
    )
    parser.add_argument("--away-s", type=float, default=10.0, help="and stay away this long")
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--recipients", type=int, default=4)
    parser.add_argument(
        "--ack-mode", choices=[m.value for m in AckMode], default=AckMode.STREAM.value
    )
    parser.add_argument("--workers", type=int, default=2, help="docaxis worker processes")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / ".local" / "soak",
        help="folder of soak.png, soak.csv, soak.json (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.away_s >= args.churn_s > 0:
        parser.error("--away-s must be shorter than --churn-s")
    configure_logging("WARNING")
    soak = asyncio.run(run(args))
    print(report_text(soak))
    csv_path, json_path, png_path = write_outputs(soak, args.out)
    print(f"samples: {csv_path}\nreport: {json_path}\nplot: {png_path}")
    return 0 if soak.passed else 1


if __name__ == "__main__":
    sys.exit(main())
