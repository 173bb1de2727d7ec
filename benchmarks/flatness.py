"""Whether a series sampled during a soak stayed flat: the rule `make soak` judges by.

- Warm-up: the first fifth of the run is left out. Pools fill, queues get declared, caches and
  the allocator reach their working set; growth there is expected and says nothing about a leak.
- Of the samples after it, the median of the first fifth is compared with the median of the last
  fifth: flat when they differ by at most 10 % of the first. Medians rather than means or single
  samples, so that one slow sample (a neighbour's burst on a shared machine, a collection) does
  not decide; fifths rather than halves, so that growth shows as the whole distance it covered.
- Each series has a floor: a change smaller than it is flat whatever its percentage (a queue
  that goes from 2 to 4 messages, latency from 12 to 15 ms: noise, not a trend).
- Memory is also judged by its slope (least squares over every sample after warm-up): the growth
  it projects over that span must stay within the same 10 %. A slow, steady leak is what a soak
  is for, and the slope sees it in every sample, not only in the two windows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.10
WARM_UP_FRACTION = 0.2
WINDOW_FRACTION = 0.2
# Fewer samples than this after warm-up: too short to judge.
MIN_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    unit: str
    first: float  # median of the first window after warm-up
    last: float  # median of the last window
    floor: float
    # Least-squares slope per hour after warm-up, for the series judged by it too (memory).
    slope_per_h: float | None
    samples: int
    # None: too few samples to judge.
    flat: bool | None

    @property
    def change_percent(self) -> float:
        if self.first == 0:
            return math.inf if self.last != 0 else 0.0
        return (self.last - self.first) / abs(self.first) * 100

    def text(self) -> str:
        status = {True: "FLAT    ", False: "NOT FLAT", None: "TOO FEW "}[self.flat]
        if self.flat is None:
            return f"  {status}  {self.name}: {self.samples} samples after warm-up"
        change = "" if math.isinf(self.change_percent) else f" ({self.change_percent:+.1f} %)"
        line = (
            f"  {status}  {self.name}: {_figure(self.first)} -> {_figure(self.last)} {self.unit}"
            f"{change}"
        )
        if self.slope_per_h is not None:
            line += f"; slope {self.slope_per_h:+,.1f} {self.unit}/h"
        line += f" [floor {_figure(self.floor)} {self.unit}]"
        if not self.flat:
            # Which way: a soak looks for growth; a fall (idle pool connections closed, a
            # neighbour's load gone) is reported too, but is seldom a fault.
            line += " - grew" if self.last > self.first else " - fell"
        return line


def judge(
    name: str,
    unit: str,
    times_s: Sequence[float],
    values: Sequence[float],
    *,
    floor: float,
    by_slope: bool = False,
) -> Verdict:
    """The verdict on one series sampled at `times_s` (NaN values, intervals without a sample,
    are left out)."""
    if not times_s:
        return Verdict(name, unit, math.nan, math.nan, floor, None, 0, None)
    warm_up_end = times_s[0] + (times_s[-1] - times_s[0]) * WARM_UP_FRACTION
    points = [
        (t, v)
        for t, v in zip(times_s, values, strict=True)
        if t >= warm_up_end and not math.isnan(v)
    ]
    if len(points) < MIN_SAMPLES:
        return Verdict(name, unit, math.nan, math.nan, floor, None, len(points), None)
    window = max(1, round(len(points) * WINDOW_FRACTION))
    first = statistics.median(v for _, v in points[:window])
    last = statistics.median(v for _, v in points[-window:])
    allowed = max(TOLERANCE * abs(first), floor)
    flat = abs(last - first) <= allowed
    slope_per_h = None
    if by_slope:
        slope_per_s = _slope(points)
        slope_per_h = slope_per_s * 3600
        span_s = points[-1][0] - points[0][0]
        flat = flat and abs(slope_per_s * span_s) <= allowed
    return Verdict(name, unit, first, last, floor, slope_per_h, len(points), flat)


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of value over time."""
    times = [t for t, _ in points]
    mean_t = statistics.fmean(times)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def _figure(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
