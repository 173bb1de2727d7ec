"""Progress of long CLI work, shown on a terminal and silent when the output is piped.

One line on stderr, rewritten in place (`\\r`) at most every `interval_s`, then finished with a
newline; stdout keeps only the command's result, so `docaxis … | tool` reads what it always did.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO


class Progress:
    """Counts done units of `total` (unknown when None) and shows them while a terminal looks."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        interval_s: float = 0.2,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._shown = self._stream.isatty()
        self._what = what
        self._total = total
        self._unit = unit
        self._interval_s = interval_s
        self._done = 0
        self._last = float("-inf")

    @property
    def shown(self) -> bool:
        """Whether anything is written: only to a terminal."""
        return self._shown

    def advance(self, done: int = 1) -> None:
        """`done` more units (what counting loops report)."""
        self.reach(self._done + done)

    def reach(self, done: int) -> None:
        """`done` units in all (what transfers report: docaxis_client's BytesDone hooks)."""
        self._done = done
        now = time.monotonic()
        if self._shown and now - self._last >= self._interval_s:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        done = _amount(self._done, self._unit)
        if self._total is None:
            line = f"{self._what}: {done}"
        else:
            share = 100 * self._done // self._total if self._total else 100
            line = f"{self._what}: {done} of {_amount(self._total, self._unit)} ({share}%)"
        self._stream.write(f"\r{line}\x1b[K")
        self._stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self._shown:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()


def _amount(value: int, unit: str) -> str:
    if unit != "B":
        return f"{value:,}{unit}"
    for size, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= size:
            return f"{value / size:.1f} {name}"
    return f"{value} B"
