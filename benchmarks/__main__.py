"""`python -m benchmarks` (`make bench`): the delivery path end to end, the machine's ceilings,
the national circular, the ledger and attachment store; targets with PASS or MISS.

Starts its own Postgres, RabbitMQ and `docaxis run` (mutual TLS, demo PKI) on the BENCH_*_PORT
ports (benchmarks/stack.py), drives them through the public gRPC API only, stops them at the
end. `--quick` takes about two minutes, `--tiny` is the suite's smoke run; the full run is
10-15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from docaxis.common.v1 import common_pb2

from benchmarks import ceilings
from benchmarks.circular import CircularResult, run_pull_circular, run_push_circular
from benchmarks.cpu import (
    CpuMeter,
    Snapshot,
    main_thread_ticks,
    main_thread_wait_ns,
    per_item_ms,
    pid_file,
    wait_per_s,
)
from benchmarks.ledger import store_figures
from benchmarks.load import ATTACHMENT_BYTES, AckMode, StepResult, Workload, bench_codes
from benchmarks.plot import plot_latency
from benchmarks.report import P99_LIMIT_MS, Integrity, Report
from benchmarks.sampler import unacknowledged_copies
from benchmarks.stack import (
    REPO,
    Axis,
    BenchAgency,
    BenchPki,
    Ports,
    Servers,
    write_agencies,
)
from benchmarks.storage import receipt_bytes, wal_position
from benchmarks.timeline import copy_timeline
from benchmarks.verify import ledger_pending, verify_ledger
from docaxis_client.client import AgencyClient
from services.common import event_loop
from services.common.logs import configure_logging

OVERLOADED_STEP_S = 10.0
# A flame graph of the push circular (--circular-profile) covers this much from its Submit.
CIRCULAR_PROFILE_S = 15
WARM_UP_DOCS_PER_S, WARM_UP_S = 5.0, 2.0


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    # Offered docs/s, ascending. `fixed` ones always run (their latencies are reported even past
    # the sustainable rate); the others stop at the first step that does not sustain.
    rates: tuple[float, ...]
    fixed: frozenset[float]
    step_s: float
    drain_s: float
    senders: int
    recipients: int
    communes: int
    ceiling_s: float
    ledger_events: int
    attachment_mib: int


MODES = {
    "full": Mode(
        "full",
        # 35 and 70 between the round figures: the sustained rate is the last step under the
        # line, and on a 2-core machine it falls between 25 and 100, where a doubling step
        # would report half of what holds.
        (5, 10, 25, 35, 50, 70, 100, 200, 350, 500, 750, 1000, 1500, 2000),
        frozenset({100, 200, 500, 1000}),
        step_s=30,
        drain_s=90,
        senders=4,
        recipients=8,
        communes=3000,
        ceiling_s=3,
        ledger_events=100_000,
        attachment_mib=200,
    ),
    "quick": Mode(
        "quick",
        (10, 25, 50, 100, 200),
        frozenset({200}),
        step_s=8,
        drain_s=30,
        senders=2,
        recipients=4,
        communes=300,
        ceiling_s=1,
        ledger_events=20_000,
        attachment_mib=20,
    ),
    "tiny": Mode(
        "tiny",
        (5,),
        frozenset({5}),
        step_s=2,
        drain_s=60,
        senders=1,
        recipients=2,
        communes=5,
        ceiling_s=0.3,
        ledger_events=1_000,
        attachment_mib=2,
    ),
}


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _profile(pid: int, output: Path, seconds: float, form: str) -> subprocess.Popen[bytes]:
    """py-spy on docaxis and its workers (idle threads left out). `form`: flamegraph (SVG) or
    raw (collapsed stacks, one line per stack, each rooted at its process: for tables of
    self time per worker)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "50",
            "--output",
            str(output),
            "--format",
            form,
            "--subprocesses",  # every worker, if docaxis runs several
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _native_profile(
    pids: list[int], output: Path, seconds: float, syscalls: bool
) -> subprocess.Popen[bytes]:
    """Linux perf on docaxis's processes: the C work (gRPC core, uvloop, asyncpg's protocol,
    OpenSSL, the kernel) that py-spy does not see, at 199 Hz of CPU time with frame-pointer
    stacks (read it with `perf report -i FILE --sort dso,sym`). With `syscalls`, instead,
    every system call entered over the step with its arguments (`perf script -i FILE`: the
    thread, the call's number, its file descriptor), whose sockets FILE.fds names: a record
    costs about a microsecond a call, which inflates the threads that make many, so the two
    are not taken together."""
    output.parent.mkdir(parents=True, exist_ok=True)
    what = ("-e", "raw_syscalls:sys_enter") if syscalls else ("-F", "199", "-g")
    return subprocess.Popen(
        [
            *("perf", "record", *what, "-o", str(output)),
            *("-p", ",".join(map(str, pids))),
            *("--", "sleep", str(int(seconds))),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _sockets(pids: list[int]) -> dict[str, str]:
    """What each file descriptor of `pids` is, keyed "pid fd": a TCP socket by its local and
    remote ports, else the link's text; for reading the system calls by where they went."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            ports[f"socket:[{fields[9]}]"] = f"tcp {local} -> {remote}"
    found = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            found[f"{pid} {fd.name}"] = ports.get(link, link)
    return found


async def _steps(
    args: argparse.Namespace,
    mode: Mode,
    axis: Axis,
    workload: Workload,
    meter: CpuMeter,
    notes: list[str],
    database_url: str,
) -> list[StepResult]:
    """The open-loop steps, ascending, then the drain of what is left."""
    # Unrecorded: queues declared, connections and caches warm, streams attached.
    await workload.run_step(WARM_UP_DOCS_PER_S, WARM_UP_S, drain_s=mode.drain_s)
    steps: list[StepResult] = []
    failed = overloaded = False
    for rate in mode.rates:
        if failed and rate not in mode.fixed:
            continue
        profilers = [
            _profile(axis.pid, path, mode.step_s, form)
            for path, form in ((args.profile, "flamegraph"), (args.profile_raw, "raw"))
            if path is not None and rate == args.profile_rate
        ]
        if args.profile_native is not None and rate == args.profile_rate:
            profilers.append(
                _native_profile(
                    list(axis.processes()), args.profile_native, mode.step_s, args.native_syscalls
                )
            )
        # Past an overloaded step, later ones overload too: offer them only for as long as
        # it takes to see latencies grow (documents are signed ahead, ~1-2 ms each).
        seconds = min(mode.step_s, OVERLOADED_STEP_S) if overloaded else mode.step_s
        step = await _measured_step(
            workload, axis, meter, rate, seconds, mode.drain_s, database_url
        )
        for profiler in profilers:
            await asyncio.to_thread(profiler.wait)
        if args.native_syscalls and args.profile_native is not None and rate == args.profile_rate:
            sockets = _sockets(list(axis.processes()))
            Path(f"{args.profile_native}.fds").write_text(json.dumps(sockets, indent=1))
        steps.append(step)
        print(
            f"  step {rate:,.0f} docs/s: accepted {step.accepted_docs_per_s:,.1f}/s, "
            f"p99 submit->delivered {step.delivered_ms.p99:,.0f} ms"
            + (" (overloaded)" if step.overloaded else ""),
            flush=True,
        )
        failed = failed or not step.sustained(P99_LIMIT_MS)
        overloaded = overloaded or step.overloaded
        if not step.drained and not await workload.drain_all(60, mode.drain_s):
            # Another step would measure this backlog, not its own load.
            later = [r for r in mode.rates if r > rate and (r in mode.fixed or not failed)]
            if later:
                notes.append(
                    f"not run: {', '.join(f'{r:,.0f}' for r in later)} docs/s "
                    f"({workload.unacknowledged:,} copies of earlier steps still "
                    f"unacknowledged {mode.drain_s * 2:.0f} s after their step)"
                )
            break
    await workload.drain_all(60, 600)
    return steps


async def _circulars(
    axis: Axis,
    database_url: str,
    pki: BenchPki,
    sender_code: str,
    communes: list[str],
    meter: CpuMeter,
    profiles: dict[str, Path],
    pull: bool = True,
) -> tuple[CircularResult, CircularResult | None]:
    """The circular pushed to every commune's open stream (the headline), then pulled (unless
    not `pull`). `profiles`: py-spy's output of the push circular, by format."""
    sender = pki.client(axis.address, sender_code)
    try:
        attachment = (await sender.upload_stream(os.urandom(ATTACHMENT_BYTES))).ref(
            "cong-van.pdf", "application/pdf"
        )
        push = await _circular(
            run_push_circular, axis, pki, sender, attachment, communes, meter, profiles
        )
        if push.document_uuid:
            push = dataclasses.replace(
                push,
                timeline=await copy_timeline(database_url, push.document_uuid, push.dms_times),
                dms_times={},
            )
        if not pull:
            return push, None
        pulled = await _circular(run_pull_circular, axis, pki, sender, attachment, communes, meter)
        return push, pulled
    finally:
        await sender.close()


async def _circular(
    run_circular: Callable[..., Awaitable[CircularResult]],
    axis: Axis,
    pki: BenchPki,
    sender: AgencyClient,
    attachment: common_pb2.AttachmentRef,
    communes: list[str],
    meter: CpuMeter,
    profiles: dict[str, Path] | None = None,
) -> CircularResult:
    """One circular, with the cores used from its Submit on (and its py-spy profiles: a flame
    graph, collapsed stacks, by py-spy's format name)."""
    at_submit: list[Snapshot] = []
    loops: list[int] = []
    cpu_s: dict[str, float] = {}
    profiler: list[subprocess.Popen[bytes]] = []

    def on_submit() -> None:
        at_submit.append(meter.snapshot())
        loops.append(main_thread_ticks(axis.processes()))
        for form, path in (profiles or {}).items():
            profiler.append(_profile(axis.pid, path, CIRCULAR_PROFILE_S, form))

    def on_acknowledged() -> None:
        loop_s = (main_thread_ticks(axis.processes()) - loops[0]) / os.sysconf("SC_CLK_TCK")
        cpu_s.update(meter.seconds(at_submit[0], meter.snapshot()))
        cpu_s["docaxis loops"] = loop_s

    try:
        result = await run_circular(
            axis.address,
            pki,
            sender,
            attachment,
            communes,
            within_s=300,
            on_submit=on_submit,
            on_acknowledged=on_acknowledged,
        )
    except grpc.aio.AioRpcError as exc:
        # Reported as a circular that was not timed (its target MISS), and the bench goes on:
        # the other circular and the figures after it are still worth having.
        mode = "push" if run_circular is run_push_circular else "pull"
        failed = f"failed: {exc.code().name}: {exc.details()}"
        result = CircularResult(mode, len(communes), math.nan, math.nan, 0, {}, failed)
        print(f"  circular ({mode}): {failed}", flush=True)
        return result
    if at_submit:
        result = dataclasses.replace(
            result,
            cores=meter.cores(at_submit[0], meter.snapshot()),
            cpu_s={g: round(s, 2) for g, s in cpu_s.items()},
        )
    for recording in profiler:
        await asyncio.to_thread(recording.wait)
    print(f"  circular ({result.mode}): {result.fully_acknowledged_s:.2f} s", flush=True)
    return result


async def run(args: argparse.Namespace) -> Report:
    # SIGTERM (or Ctrl-C) cancels the run, and its cleanup stops every server it started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    mode = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.rates is not None:
        # Only these steps, each run whatever the previous gave (a fixed load to measure at).
        rates = tuple(sorted(args.rates))
        mode = dataclasses.replace(mode, rates=rates, fixed=frozenset(rates))
    if args.step_s is not None:
        mode = dataclasses.replace(mode, step_s=args.step_s)
    if args.agencies is not None:
        senders, recipients = args.agencies
        mode = dataclasses.replace(
            mode,
            name=f"{mode.name}, {senders} senders, {recipients} recipients",
            senders=senders,
            recipients=recipients,
        )
    work = Path(os.environ.get("BENCH_LOCAL_DIR", str(REPO / ".local" / "bench")))
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("pki", "audit-export"):
        shutil.rmtree(work / stale, ignore_errors=True)
    machine: dict[str, object] = {"cores": os.cpu_count(), "load_average_start": _load_average()}
    servers = Servers(work, Ports.from_env())
    await servers.start()
    axis: Axis | None = None
    notes: list[str] = []
    if args.signed_pdf:
        notes.append(
            "--signed-pdf: each document's attachment a one-page PDF signed by the sender's "
            "official and agency, verified with every Submit"
        )
    try:
        try:
            store = (
                None
                if args.circular_only
                else await store_figures(
                    servers.server_url, mode.ledger_events, mode.attachment_mib
                )
            )
        except (TimeoutError, asyncpg.PostgresError) as exc:
            # A figure beside the point of the run: the run goes on without it.
            store = None
            notes.append(f"ledger and attachment figures failed: {exc!r}")
        database_url = await servers.fresh_database()
        senders = bench_codes("000", mode.senders)
        # The circular's sender (a ministry): its inbox holds nothing of the steps, so what its
        # DMS receives during the push circular is the circular's status notices.
        circular_sender = bench_codes("002", 1)
        recipients = bench_codes("001", mode.recipients)
        count = mode.communes if args.communes is None else args.communes
        communes = [f"{100 + n // 100:03d}.{n % 100:02d}.00.H98" for n in range(count)]
        agencies_csv = work / "agencies.csv"
        write_agencies(
            agencies_csv,
            [
                BenchAgency(code, f"Sở đo tải {code}", "department")
                for code in senders + recipients + circular_sender
            ]
            + [BenchAgency(code, f"Xã đo tải {code}", "commune") for code in communes],
        )
        pki = BenchPki(work / "pki")
        axis = Axis(
            database_url,
            servers.amqp_url,
            pki,
            Ports.from_env().grpc,
            work,
            agencies_csv,
            workers=args.workers,
        )
        await axis.start()
        docaxis_pid = axis.pid
        meter = CpuMeter(
            {
                "docaxis": lambda: [docaxis_pid],
                "postgres": lambda: pid_file(work / "postgres" / "data" / "postmaster.pid"),
                "rabbitmq": lambda: pid_file(work / "rabbitmq" / "rabbitmq.pid"),
                "load generator": lambda: [os.getpid()],  # with py-spy, when profiling
            }
        )
        limits = await ceilings.measure(
            axis.address, pki.monitor, servers.amqp_url, database_url, mode.ceiling_s
        )
        workload = Workload(
            axis.address,
            pki,
            senders,
            recipients,
            AckMode(args.ack_mode),
            signed_pdf=args.signed_pdf,
        )
        await workload.open()
        steps: list[StepResult] = []
        if not args.circular_only:
            steps = await _steps(args, mode, axis, workload, meter, notes, database_url)
        after = (
            limits
            if args.circular_only
            else await ceilings.measure(
                axis.address, pki.monitor, servers.amqp_url, database_url, mode.ceiling_s
            )
        )
        profiles = {
            form: path
            for form, path in (
                ("flamegraph", args.circular_profile),
                ("raw", args.circular_profile_raw),
            )
            if path is not None
        }
        push, pull = await _circulars(
            axis,
            database_url,
            pki,
            circular_sender[0],
            communes,
            meter,
            profiles,
            pull=not args.circular_push_only,
        )
        await workload.close()
        tally = workload.tally
        lost = sum(copy.acknowledged is None for copy in tally.copies.values())
        pending = await ledger_pending(database_url, 60)
        unacknowledged = len(await unacknowledged_copies(database_url))
        code = await axis.stop()
        if code != 0:
            notes.append(f"docaxis exited with {code}: see {axis.log_path}")
        verified, entries = verify_ledger(database_url, axis.ledger_key, work / "audit-export")
        machine["load_average_end"] = _load_average()
        return Report(
            mode=mode.name,
            ack_mode=args.ack_mode,
            workers=args.workers,
            step_s=mode.step_s,
            machine=machine,
            ceilings=limits.mean(after),
            ceilings_before=limits,
            ceilings_after=after,
            steps=steps,
            circular=push,
            circular_pull=pull,
            store=store,
            integrity=Integrity(
                lost=lost,
                # Copies pushed again after their acknowledgement: in the steps and the circular.
                duplicated=tally.duplicates
                + push.duplicated
                + (0 if pull is None else pull.duplicated),
                redelivered_before_ack=tally.redelivered,
                unacknowledged_in_database=unacknowledged,
                ledger_verified=verified,
                ledger_entries=entries,
                ledger_pending=pending,
                stream_restarts=workload.stream_restarts,
                acknowledge_errors=dict(tally.ack_errors),
            ),
            notes=notes,
        )
    finally:
        if axis is not None:
            await axis.stop()
        # The returned report holds this list: a server left running is reported with it.
        notes.extend(servers.stop())


async def _measured_step(
    workload: Workload,
    axis: Axis,
    meter: CpuMeter,
    rate: float,
    seconds: float,
    drain_s: float,
    database_url: str,
) -> StepResult:
    """One step of load, with the CPU each group of processes (and each docaxis worker) used
    during it and its drain, and the WAL Postgres wrote."""
    wal = await wal_position(database_url)
    processes, wall, started = axis.processes(), time.monotonic(), meter.snapshot()
    loops, loop_waits = main_thread_ticks(processes), main_thread_wait_ns(processes)
    step = await workload.run_step(rate, seconds, drain_s=drain_s)
    workers = worker_cores(processes, axis.processes(), axis.pid, time.monotonic() - wall)
    ended = meter.snapshot()
    wal_bytes = await wal_position(database_url) - wal
    used = meter.seconds(started, ended)
    loop_s = (main_thread_ticks(processes) - loops) / os.sysconf("SC_CLK_TCK")
    loop_waited = wait_per_s(loop_waits, main_thread_wait_ns(processes), ended.at - started.at)
    return dataclasses.replace(
        step,
        server_cores=sum(workers),
        worker_cores=workers,
        cores=meter.cores(started, ended),
        cpu_seconds={g: round(s, 3) for g, s in used.items()},
        cpu_ms_per_document=per_item_ms(used, step.accepted_docs),
        cpu_ms_per_copy=per_item_ms(used, step.copies_delivered),
        loop_cpu_ms_per_document=per_item_ms({"loop": loop_s}, step.accepted_docs).get("loop", 0.0),
        core_waits={**meter.waits(started, ended), "docaxis loop": loop_waited},
        wal_bytes_per_document=round(wal_bytes / max(step.accepted_docs, 1)),
        receipt_bytes=await receipt_bytes(database_url),
    )


def worker_cores(
    before: dict[int, int], after: dict[int, int], first: int, seconds: float
) -> list[float]:
    """Cores each docaxis process used between two readings of Axis.processes(): the first
    worker (it runs the singletons: relay, ledger writer, sweeps), then the others, busiest
    first."""
    tick = os.sysconf("SC_CLK_TCK") * max(seconds, 1e-9)
    used = {pid: (ticks - before.get(pid, 0)) / tick for pid, ticks in after.items()}
    others = sorted((c for pid, c in used.items() if pid != first), reverse=True)
    return [round(c, 3) for c in [used.get(first, 0.0), *others]]


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("rates are positive docs/s")
    return rates


def _agencies(text: str) -> tuple[int, int]:
    try:
        senders, recipients = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("SENDERS,RECIPIENTS, e.g. 8,16") from None
    if not 1 <= senders <= 100 or not 2 <= recipients <= 100:
        raise argparse.ArgumentTypeError("1-100 senders and 2-100 recipients")
    return senders, recipients


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short steps (about two minutes)")
    size.add_argument("--tiny", action="store_true", help="the smoke run: a few seconds of load")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--signed-pdf",
        action="store_true",
        help="each document's attachment a one-page PDF signed by the sender's official and "
        "agency (PAdES), verified with every Submit, instead of 10 KiB of random bytes",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=REPO / ".local" / "bench" / "latency-vs-load.png",
        help="PNG of latency against offered load (default: %(default)s)",
    )
    # The stream by default: the scenario (and the soak's) acknowledges each copy on the
    # recipient's push stream, as a DMS built for throughput does; unary and batch stay available.
    parser.add_argument(
        "--ack-mode",
        choices=[m.value for m in AckMode],
        default=AckMode.STREAM.value,
        help="how recipients acknowledge (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, help="docaxis worker processes (DOCAXIS_WORKERS; default: its own)"
    )
    parser.add_argument(
        "--communes", type=int, help="recipients of the circular (default: 3,000; quick: 300)"
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        help="only these offered loads, comma-separated docs/s (e.g. 25 or 25,50), each run",
    )
    parser.add_argument(
        "--step-s", type=float, help="seconds of load per step (default: the mode's)"
    )
    # The mode's few agencies are a few connections, which SO_REUSEPORT's hash may put all on
    # one worker; an axis serves hundreds of agencies, each its own connection, spread evenly.
    parser.add_argument(
        "--agencies",
        type=_agencies,
        metavar="SENDERS,RECIPIENTS",
        help="the steps' agencies, each its own connection (default: the mode's; quick 2,4, "
        "full 4,8); more of them spread the load over the workers as an axis's many agencies do",
    )
    parser.add_argument(
        "--profile", type=Path, help="record a py-spy flame graph (SVG) of docaxis here"
    )
    parser.add_argument(
        "--profile-raw",
        type=Path,
        help="also record py-spy's collapsed stacks (text, per process) here, same step",
    )
    parser.add_argument(
        "--profile-native",
        type=Path,
        help="record a Linux perf profile (perf.data) of docaxis's processes here, same step",
    )
    parser.add_argument(
        "--native-syscalls",
        action="store_true",
        help="--profile-native records every system call (and FILE.fds) instead of samples",
    )
    parser.add_argument(
        "--profile-rate", type=float, default=100, help="during the step at this rate (docs/s)"
    )
    parser.add_argument(
        "--circular-profile",
        type=Path,
        help=f"record a py-spy flame graph (SVG) of docaxis during the push circular "
        f"({CIRCULAR_PROFILE_S} s from its Submit)",
    )
    parser.add_argument(
        "--circular-profile-raw",
        type=Path,
        help="also record py-spy's collapsed stacks (text) of the push circular here",
    )
    parser.add_argument(
        "--circular-only",
        action="store_true",
        help="only the circulars (push, then pull): no steps, store figures nor ceilings after",
    )
    parser.add_argument(
        "--circular-push-only",
        action="store_true",
        help="only the push circular (--circular-only without the pull circular)",
    )
    args = parser.parse_args(argv)
    args.circular_only = args.circular_only or args.circular_push_only
    configure_logging("WARNING")  # the figures, not the store's info lines
    # The load generator on uvloop too, whatever DOCAXIS_EVENT_LOOP says of docaxis: it shares
    # the machine with what it measures, and the less of it it takes, the more docaxis has
    # (3-8 ms of CPU per document on asyncio's loop, docs/perf/README.md).
    report = event_loop.run(run(args), env={})
    print(report.text())
    if args.json is not None:
        report.write_json(args.json)
        print(f"JSON report: {args.json}")
    if report.steps:  # none with --circular-only
        title = f"docaxis bench ({report.mode}, {report.ack_mode} acks)"
        plot_latency(report.steps, args.plot, title)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
