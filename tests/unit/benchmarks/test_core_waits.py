"""The bench's "waiting for a core" figure: each group's time runnable but not running, read from
every thread's schedstat, which the cores (running time) do not show."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.cpu import (
    CpuMeter,
    Snapshot,
    _run_delay_ns,
    main_thread_wait_ns,
    thread_waits_ns,
)
from benchmarks.load import StepResult
from benchmarks.report import _waits_lines
from benchmarks.stats import percentiles

_NS = 1_000_000_000


def test_a_side_thread_sharing_one_core_with_a_rival_waits_and_its_group_shows_it() -> None:
    """A side thread of this process and a rival process, both pinned to one core, take turns
    on it: each waits while the other runs. The wait shows in this process's group (read from
    its threads, not its main thread, which sleeps in join) and in the rival's."""
    core = min(os.sched_getaffinity(0))
    rival = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass",
        ]
    )
    meter = CpuMeter({"me": lambda: [os.getpid()], "rival": lambda: [rival.pid]})
    try:
        start = meter.snapshot()
        main_before = main_thread_wait_ns([os.getpid()])
        waited, measured = threading.Event(), threading.Event()

        def compete() -> None:
            os.sched_setaffinity(0, {core})  # this thread only
            before = sum(thread_waits_ns(os.getpid()).values())
            deadline = time.monotonic() + 60  # a bound, not a figure: ends once it has waited
            while time.monotonic() < deadline:
                sum(range(10_000))
                if sum(thread_waits_ns(os.getpid()).values()) - before >= _NS // 10:
                    waited.set()
                    break
            # Alive until the second snapshot: an exited thread's wait leaves with it.
            measured.wait(60)

        side = threading.Thread(target=compete)
        side.start()
        try:
            waited.wait(70)
            # Read before the group's snapshot (and main_before after the first): whatever the
            # main thread waits in between counts in the group, never against it.
            main_waited = main_thread_wait_ns([os.getpid()]) - main_before
            end = meter.snapshot()
        finally:
            measured.set()
            side.join()
    finally:
        rival.kill()
        rival.wait()
    assert waited.is_set()
    waits = meter.waits(start, end)
    # At least the side thread's 0.1 s over the snapshots' interval, beyond whatever the main
    # thread waited (on a loaded machine it waits for a core each time it wakes): a group read
    # from its main thread alone would show only that.
    assert waits["me"] * (end.at - start.at) - main_waited / _NS >= 0.09
    assert waits["rival"] > 0


def test_the_wait_is_schedstats_second_field(tmp_path: Path) -> None:
    """schedstat: time running, time waiting on a run queue, timeslices (ns, ns, count)."""
    (tmp_path / "schedstat").write_text("308121776 314024083 760\n")
    assert _run_delay_ns(tmp_path / "schedstat") == 314024083
    assert _run_delay_ns(tmp_path / "gone") == 0


def test_waits_compare_thread_by_thread() -> None:
    """Per group, each thread's wait since the first snapshot, per second: a thread started
    meanwhile counts from 0, one gone by the second snapshot adds nothing, a thread id reused by
    a thread that waited less than the old one counts 0, not less."""
    meter = CpuMeter({"a": list, "b": list})
    start = Snapshot(10.0, {}, 0, {"a": {1: 5 * _NS, 2: 1 * _NS, 3: 9 * _NS}, "b": {7: 0}})
    end = Snapshot(
        12.0,
        {},
        0,
        {"a": {1: 6 * _NS, 3: 2 * _NS, 4: 3 * _NS}, "b": {7: _NS // 2}},
    )
    # a: thread 1 waited 1 s, thread 4 (new) 3 s, thread 2 is gone, thread 3 reused: 4 s in 2 s.
    assert meter.waits(start, end) == {"a": 2.0, "b": 0.25}


def test_the_report_prints_each_steps_waits_beside_the_cores() -> None:
    none = percentiles([])
    step = StepResult(
        *(75.0, 30.0, 30.0, 2250, 2250, {}, 75.0, 4500, 4500, 4500, 150.0, none, none, none),
        overloaded=False,
        drained=True,
        core_waits={"docaxis": 0.67, "postgres": 0.63, "docaxis loop": 0.29},
    )
    header, row = _waits_lines([step])[2:]
    assert [g.strip() for g in header.split("|")[1:]] == ["docaxis", "postgres", "docaxis loop"]
    assert [float(v) for v in row.split("|")[1:]] == [0.67, 0.63, 0.29]
    assert _waits_lines([dataclasses.replace(step, core_waits={})]) == []
