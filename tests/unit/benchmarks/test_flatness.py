"""The soak's rule for "stayed flat": warm-up left out, the median of the first fifth after it
against the median of the last fifth, within 10 % or the series' floor; memory by its slope too."""

from __future__ import annotations

import math

from benchmarks.flatness import judge

TIMES = [float(t) for t in range(0, 100)]


def test_a_steady_series_with_noise_and_a_warm_up_climb_is_flat() -> None:
    values = [50.0 + t if t < 20 else 100.0 + (3 if t % 2 else -3) for t in TIMES]
    verdict = judge("memory", "MiB", TIMES, values, floor=0.0, by_slope=True)
    assert verdict.flat is True
    assert abs(verdict.last - verdict.first) <= 6


def test_growth_beyond_ten_percent_after_warm_up_is_not_flat() -> None:
    values = [100.0 + max(0.0, t - 20) * 0.5 for t in TIMES]  # +40 % over the judged span
    verdict = judge("fds", "fds", TIMES, values, floor=5.0)
    assert verdict.flat is False
    assert verdict.change_percent > 10
    assert verdict.text().startswith("  NOT FLAT  fds: ")
    assert verdict.text().endswith(" - grew")


def test_a_change_within_the_floor_is_flat_whatever_its_percentage() -> None:
    values = [0.0 if t < 60 else 4.0 for t in TIMES]
    assert judge("queue", "messages", TIMES, values, floor=10.0).flat is True
    assert judge("queue", "messages", TIMES, values, floor=0.0).flat is False


def test_a_slow_leak_the_medians_straddle_is_caught_by_the_slope() -> None:
    # +9 % between the fifths' medians, but +11 % over the whole judged span.
    values = [1000.0 + max(0.0, t - 20) * 1.4 for t in TIMES]
    medians_only = judge("memory", "MiB", TIMES, values, floor=0.0)
    with_slope = judge("memory", "MiB", TIMES, values, floor=0.0, by_slope=True)
    assert medians_only.flat is True
    assert with_slope.flat is False
    assert with_slope.slope_per_h is not None
    assert math.isclose(with_slope.slope_per_h, 1.4 * 3600, rel_tol=1e-6)


def test_intervals_without_a_sample_are_left_out_and_too_few_are_not_judged() -> None:
    values = [math.nan if t % 20 else 20.0 for t in TIMES]
    verdict = judge("latency", "ms", TIMES, values, floor=25.0)
    assert verdict.flat is None
    assert verdict.samples == 4  # at 20, 40, 60 and 80 s: the one at 0 s is in the warm-up
    assert "TOO FEW" in verdict.text()
