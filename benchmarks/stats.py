"""Latency percentiles, nearest-rank (each one a latency that was actually observed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float
    max: float


def percentiles(values: Sequence[float]) -> Percentiles:
    """p50/p95/p99/max of `values` (NaN for none)."""
    if not values:
        nan = math.nan
        return Percentiles(0, nan, nan, nan, nan)
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return Percentiles(len(ordered), rank(50), rank(95), rank(99), ordered[-1])
