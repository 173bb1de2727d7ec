"""Where the machine's CPU went during a step: docaxis (every worker), Postgres, RabbitMQ, this
load generator, and the rest of the machine (neighbours' work), in cores.

docaxis cannot use more of a 2-core machine than what Postgres, RabbitMQ and the load generator
beside it leave; this says how much that was. Each group is a process and its descendants, and
counts the CPU of descendants that exited meanwhile (a reaped child's time moves into its
parent's), so short-lived Postgres backends are not lost.
"""

from __future__ import annotations

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
        for pid, (_, used) in processes.items():
            ancestor = pid
            while ancestor not in owner and ancestor in processes and ancestor > 1:
                ancestor = processes[ancestor][0]
            if ancestor in owner:
                ticks[owner[ancestor]] += used
        return Snapshot(time.monotonic(), ticks, _machine_busy_ticks())

    def seconds(self, start: Snapshot, end: Snapshot) -> dict[str, float]:
        """CPU seconds each group used between the snapshots."""
        return {g: max(0, end.ticks[g] - start.ticks.get(g, 0)) / self._tick for g in end.ticks}

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
