"""What the bench reads beside a native profile: the event loop thread's CPU apart from the
process's other threads, and what each file descriptor of docaxis is."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from benchmarks.__main__ import _sockets
from benchmarks.cpu import main_thread_ticks


def _process_ticks() -> int:
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_side_threads_cpu_is_not_the_main_threads() -> None:
    """CPU burnt in another thread raises the process's ticks, not its main thread's."""
    main_before, process_before = main_thread_ticks([os.getpid()]), _process_ticks()
    burnt = threading.Event()

    def burn() -> None:
        deadline = time.monotonic() + 30  # a bound, not a figure: ends when the ticks show it
        while _process_ticks() - process_before < 20 and time.monotonic() < deadline:
            sum(range(10_000))
        burnt.set()

    side = threading.Thread(target=burn)
    side.start()
    side.join()  # the main thread waits, using no CPU meanwhile
    assert burnt.is_set()
    assert _process_ticks() - process_before >= 20
    assert main_thread_ticks([os.getpid()]) - main_before < 5


def test_a_gone_process_counts_nothing() -> None:
    assert main_thread_ticks([2**22 + 1]) == 0  # past the largest pid Linux hands out (2**22)


def test_sockets_are_named_by_their_ports_and_other_files_by_their_link() -> None:
    """A listening TCP socket reads as its port to port 0; a pipe as the kernel names it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        read_end, write_end = os.pipe()
        try:
            found = _sockets([os.getpid()])
            pid = os.getpid()
            assert found[f"{pid} {listener.fileno()}"] == f"tcp {port} -> 0"
            assert found[f"{pid} {read_end}"].startswith("pipe:[")
        finally:
            os.close(read_end)
            os.close(write_end)
