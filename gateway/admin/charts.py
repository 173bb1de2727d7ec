"""Bar charts as inline SVG, drawn on the server: the console needs no JavaScript and no chart
library, the charts print and screenshot like the rest of the page, and every number is also in
a table beside the chart (for screen readers and for copying)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

ROW_HEIGHT = 14
ROW_GAP = 10
LABEL_WIDTH = 170
BAR_WIDTH = 420
VALUE_WIDTH = 60


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    # One value per category; None where there is nothing to measure (drawn as no bar).
    values: Sequence[float | None]


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def bar_chart(
    title: str, categories: Sequence[str], series: Sequence[Series], *, maximum: float | None = None
) -> str:
    """Grouped horizontal bars: a row group per category, a bar per series (CSS classes
    `bar s0`, `bar s1`, ... give the colours). `maximum` fixes the scale (100 for percentages);
    otherwise the largest value sets it."""
    for one in series:
        if len(one.values) != len(categories):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values")
    largest = max((v for one in series for v in one.values if v is not None), default=0.0)
    scale = maximum if maximum is not None else max(largest, 1.0)
    group = len(series) * ROW_HEIGHT + ROW_GAP
    legend = 22
    height = legend + len(categories) * group
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    x = LABEL_WIDTH
    for index, one in enumerate(series):
        parts.append(f'<rect class="bar s{index}" x="{x}" y="4" width="12" height="12"/>')
        parts.append(f'<text x="{x + 16}" y="14">{escape(one.name)}</text>')
        x += 24 + 8 * len(one.name)
    for row, category in enumerate(categories):
        top = legend + row * group
        middle = top + len(series) * ROW_HEIGHT / 2 + 4
        parts.append(
            f'<text class="category" x="{LABEL_WIDTH - 6}" y="{middle}" text-anchor="end">'
            f"{escape(category)}</text>"
        )
        for index, one in enumerate(series):
            value = one.values[row]
            y = top + index * ROW_HEIGHT
            if value is None:
                parts.append(f'<text class="value" x="{LABEL_WIDTH + 4}" y="{y + 11}">–</text>')
                continue
            length = BAR_WIDTH * min(max(value, 0.0), scale) / scale
            parts.append(
                f'<rect class="bar s{index}" x="{LABEL_WIDTH}" y="{y + 1}" '
                f'width="{length:.1f}" height="{ROW_HEIGHT - 2}">'
                f"<title>{escape(category)} · {escape(one.name)}: {_number(value)}</title></rect>"
            )
            parts.append(
                f'<text class="value" x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 11}">'
                f"{_number(value)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
