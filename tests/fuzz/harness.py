"""Fuzzing every parser that takes outside bytes: only typed errors may come out.

A target is a function from bytes to anything plus the exception types it may refuse with. The
harness runs it over generated inputs (hypothesis, with structure-aware mutations of real inputs
in `mutations`); any other exception fails the test, and the shortest input that did is written
to `regressions/<target>/`, which the suite replays on every run from then on.

`make test` runs 5,000 cases per target (1,000 for the targets in SATURATED), derandomised so
that CI is repeatable; `make fuzz` runs DOCAXIS_FUZZ_CASES=100000 per target with a fresh seed,
an address-space cap (so that unbounded memory ends as MemoryError, a failure) and
DOCAXIS_FUZZ_HANG_S (an input that takes longer is a hang, also a failure).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, settings

# DOCAXIS_FUZZ_CASES, when set, is every target's count (`make fuzz`).
CASES_ENV = os.environ.get("DOCAXIS_FUZZ_CASES")
DEFAULT_CASES = 5000
# Targets whose branch coverage (coverage.py, of services/, gateway/ and docaxis_client/) at
# 1,000 derandomised cases was all that 5,000 reached, under two seeds (the derandomised seed
# follows the test's source; 2026-12-07: also at 500 under the first). crl and
# edxml-attachment were complete at 1,000 under the first seed and 3 and 8 arcs short under
# the second, and the other seven still gain arcs between 2,000 and 5,000: all keep 5,000.
# The fuzz test spent 135 s at 5,000 each, 33 s of it on these four.
SATURATED = frozenset({"axis-signatures", "bounded-json", "rest-body", "edxml-dates"})
RANDOM = os.environ.get("DOCAXIS_FUZZ_RANDOM") == "1"
HANG_S = int(os.environ.get("DOCAXIS_FUZZ_HANG_S", "0"))
# A comma-separated subset of targets (`make fuzz FUZZ_TARGETS=edxml,crl`); all when empty.
TARGET_NAMES_ENV = [name for name in os.environ.get("DOCAXIS_FUZZ_TARGETS", "").split(",") if name]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"


class FuzzHangError(Exception):
    """An input kept a parser busy longer than DOCAXIS_FUZZ_HANG_S."""


# The shortest failing input of each target in this process, written out when its test ends
# (hypothesis calls the target many times while it shrinks; only the last word is worth keeping).
_failures: dict[str, bytes] = {}


@dataclass(frozen=True, slots=True)
class Target:
    """A parser of outside bytes and the typed refusals it is allowed."""

    name: str
    parse: Callable[[bytes], object]
    refusals: tuple[type[BaseException], ...]

    def run(self, data: bytes) -> None:
        try:
            with _hang_guard():
                self.parse(data)
        except self.refusals:
            return
        except BaseException:
            known = _failures.get(self.name)
            if known is None or len(data) < len(known):
                _failures[self.name] = data
            raise


@contextlib.contextmanager
def _hang_guard() -> Iterator[None]:
    if not HANG_S:
        yield
        return

    def _hung(signum: int, frame: FrameType | None) -> None:
        raise FuzzHangError(f"no answer within {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cases_of(name: str) -> int:
    """How many generated inputs target `name` gets in this run."""
    if CASES_ENV:
        return int(CASES_ENV)
    return 1000 if name in SATURATED else DEFAULT_CASES


def fuzz_settings(name: str) -> settings:
    """Settings for target `name`'s fuzz test: cases_of(name) examples, no deadline (hangs are
    HANG_S's business)."""
    return settings(
        max_examples=cases_of(name),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


def save_failure(name: str) -> Path | None:
    """Writes the shortest failing input of `name` seen so far as a regression case."""
    data = _failures.pop(name, None)
    if data is None:
        return None
    folder = REGRESSIONS / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def regression_cases() -> list[tuple[str, Path]]:
    """Every stored crashing input: (target name, file)."""
    if not REGRESSIONS.is_dir():
        return []
    return [
        (folder.name, path)
        for folder in sorted(REGRESSIONS.iterdir())
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.suffix == ".bin"
    ]
