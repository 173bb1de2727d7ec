"""Where the machine's CPU went during a step: docaxis (every worker), Postgres, RabbitMQ, this
load generator, and the rest of the machine (neighbours' work), in cores.

docaxis cannot use more of a 2-core machine than what Postgres, RabbitMQ and the load generator
beside it leave; this says how much that was. Each group is a process and its descendants, and
counts the CPU of descendants that exited meanwhile (a reaped child's time moves into its
parent's), so short-lived Postgres backends are not lost.

Beside the running time, each group's time *waiting for a core* (runnable, on a run queue, not
running: the kernel's schedstat `run_delay`), which a CPU meter does not show: on a 2-core
machine with four busy groups, a process ready to run may wait as long as it runs, and every
hop of a document (generator -> docaxis -> Postgres -> docaxis -> RabbitMQ -> ...) pays it.
It is read per thread and compared thread by thread: a thread started meanwhile counts from 0;
one that exited meanwhile takes its wait since the first snapshot with it (no cumulative field
for reaped children, unlike CPU ticks), so short-lived threads and processes are undercounted
and long-lived ones (docaxis's threads, pooled Postgres backends, RabbitMQ's schedulers) not.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

GROUPS = ("docaxis", "postgres", "rabbitmq", "load generator")


def per_item_ms(cpu_seconds: Mapping[str, float], items: int) -> dict[str, float]:
    """CPU milliseconds each group spent per item (document or copy) of a step: unlike cores,
    this hardly moves with the neighbours' load on a shared machine (a starved process does
    the same work later, not less of it), so runs on a busy and on a quiet machine compare."""
    if items <= 0:
        return {}
    return {g: round(s * 1000 / items, 2) for g, s in cpu_seconds.items()}


def _stat_fields(stat: Path) -> list[str] | None:
    """A /proc `stat` file's fields after the ")" that ends the command name: state, ppid, ...
    utime, stime, cutime, cstime at 11 to 14 (the 14th to 17th fields overall); None if the
    process or thread exited meanwhile."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _run_delay_ns(schedstat: Path) -> int:
    """A thread's time waiting for a core so far, in ns: the second of the three fields of its
    `schedstat` (time running, time waiting on a run queue, timeslices run); 0 if it exited
    meanwhile or the kernel keeps no such statistics."""
    try:
        return int(schedstat.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def thread_waits_ns(pid: int) -> dict[int, int]:
    """Thread id -> the time it has waited for a core so far, in ns, for every live thread of
    `pid` (none if it exited meanwhile)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    return {int(task.name): _run_delay_ns(task / "schedstat") for task in tasks}


def main_thread_wait_ns(pids: Iterable[int]) -> int:
    """The time the main thread of each of `pids` has waited for a core, in ns: in docaxis, the
    event loop's thread, whose waits delay everything it serves."""
    return sum(_run_delay_ns(Path(f"/proc/{pid}/task/{pid}/schedstat")) for pid in pids)


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of it and its reaped children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry / "stat")) is not None:
            found[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return found


def _machine_busy_ticks() -> int:
    """Ticks every core spent on anything but idle and I/O wait, since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values) - values[3] - values[4]


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    ticks: Mapping[str, int]
    machine: int
    # Per group, each live thread's time waiting for a core so far (thread id -> ns).
    waits: Mapping[str, Mapping[int, int]] = dataclasses.field(default_factory=dict)


class CpuMeter:
    """`roots` gives, for each group, the pids its processes descend from (read at each
    snapshot: a server may start after the meter)."""

    def __init__(self, roots: Mapping[str, Callable[[], list[int]]]) -> None:
        self._roots = roots
        self._tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> Snapshot:
        processes = _processes()
        owner: dict[int, str] = {}
        for group, roots in self._roots.items():
            for root in roots():
                owner[root] = group
        ticks = dict.fromkeys(self._roots, 0)
        waits: dict[str, dict[int, int]] = {g: {} for g in self._roots}
        for pid, (_, used) in processes.items():
            ancestor = pid
            while ancestor not in owner and ancestor in processes and ancestor > 1:
                ancestor = processes[ancestor][0]
            if ancestor in owner:
                ticks[owner[ancestor]] += used
                waits[owner[ancestor]].update(thread_waits_ns(pid))
        return Snapshot(time.monotonic(), ticks, _machine_busy_ticks(), waits)

    def seconds(self, start: Snapshot, end: Snapshot) -> dict[str, float]:
        """CPU seconds each group used between the snapshots."""
        return {g: max(0, end.ticks[g] - start.ticks.get(g, 0)) / self._tick for g in end.ticks}

    def waits(self, start: Snapshot, end: Snapshot) -> dict[str, float]:
        """Seconds each group's threads spent waiting for a core per second between the
        snapshots, summed over its threads (several can wait at once: this can pass 1)."""
        seconds = end.at - start.at
        found = {}
        for group, threads in end.waits.items():
            before = start.waits.get(group, {})
            # A thread id reused by a new thread may read lower than the old one: floored at 0.
            waited = sum(max(0, n - before.get(tid, 0)) for tid, n in threads.items())
            found[group] = wait_per_s(0, waited, seconds)
        return found

    def cores(self, start: Snapshot, end: Snapshot) -> dict[str, float]:
        """Cores each group used between the snapshots, then `other` (the rest of the machine)
        and `machine` (every busy core)."""
        wall = max(end.at - start.at, 1e-9) * self._tick
        used = {g: max(0, end.ticks[g] - start.ticks.get(g, 0)) / wall for g in end.ticks}
        machine = (end.machine - start.machine) / wall
        return {
            **{g: round(c, 2) for g, c in used.items()},
            "other": round(max(0.0, machine - sum(used.values())), 2),
            "machine": round(machine, 2),
        }


def wait_per_s(before_ns: int, after_ns: int, seconds: float) -> float:
    """Seconds waited for a core per second of `seconds`, from two readings in ns."""
    return round(max(0, after_ns - before_ns) / 1e9 / max(seconds, 1e-9), 2)


def main_thread_ticks(pids: Iterable[int]) -> int:
    """CPU ticks the main thread of each of `pids` used so far: in docaxis, the event loop's
    thread, which one core bounds whatever the process's other threads (gRPC's pollers, the
    verification threads) add beside it."""
    ticks = 0
    for pid in pids:
        if (fields := _stat_fields(Path(f"/proc/{pid}/task/{pid}/stat"))) is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks


def pid_file(path: Path) -> list[int]:
    """The pid in the first line of `path`, if it names one."""
    try:
        first = path.read_text().split()[0]
    except (OSError, IndexError):
        return []
    return [int(first)] if first.isdigit() else []
