"""Where a circular's seconds went, from its copies' own timestamps in the database: when the
relay's batches began, when the copies' claims (pushes) and acknowledgements were stored, when
the sender's status notices were. Each timestamp is its transaction's start (docaxis stores
now()), counted from the Submit's, so a batch's figure is when it began, not when it committed.

With the DMSs' own times of each copy (its arrival and its acknowledgement's confirmation, wall
clock: the bench and the servers share the machine's clock), the tail: where the last copies'
seconds went between their claim and their confirmation, and what the whole axis did meanwhile
(per half second: claims, arrivals, acknowledgements, confirmations, the sender's notices)."""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

# The tail's copies: this share of the last confirmed.
TAIL_SHARE = 0.1
# The activity's bins, in s.
BIN_S = 0.5


@dataclass(frozen=True, slots=True)
class CopyTimeline:
    # Each relay batch that published copies of the document: its start in s, its copies, and
    # the last claim of one of them in s (when the next batch begins after that, the relay
    # waited for something else than the broker's confirms).
    relay_batches: list[tuple[float, int, float]] = field(default_factory=list)
    # First, median and last, in s.
    claimed: tuple[float, float, float] | None = None
    acknowledged: tuple[float, float, float] | None = None
    # The sender's status notices: the last one created, pushed and acknowledged, in s.
    notices: tuple[float | None, float | None, float | None] | None = None
    # The last confirmed copies (TAIL_SHARE of them), each stage's median and max in ms:
    # claimed -> at the DMS, at the DMS -> its acknowledgement's transaction began, -> confirmed
    # at the DMS; and the same three for the very last copy confirmed.
    tail: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None
    last_copy: tuple[float, float, float] | None = None
    # Per BIN_S from the Submit: copies claimed, at the DMS, acknowledged (transactions began),
    # confirmed at the DMS; the sender's notices created, pushed, acknowledged.
    activity: list[tuple[int, ...]] = field(default_factory=list)


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    return (min(values), statistics.median(values), max(values)) if values else None


async def copy_timeline(
    database_url: str,
    document_uuid: str,
    dms_times: Mapping[str, tuple[float, float]] | None = None,
) -> CopyTimeline:
    """`dms_times`: delivery id -> (arrival, confirmation) at the DMS, epoch seconds."""
    conn = await asyncpg.connect(database_url)
    try:
        key = uuid.UUID(document_uuid)
        rows = await conn.fetch(
            """
            SELECT c.id::text AS id, extract(epoch FROM doc.submitted_at)::float8 AS submitted,
                extract(epoch FROM c.queued_at - doc.submitted_at)::float8 AS queued,
                extract(epoch FROM c.pushed_at - doc.submitted_at)::float8 AS pushed,
                extract(epoch FROM c.acknowledged_at - doc.submitted_at)::float8 AS acknowledged
            FROM exchange.delivery c JOIN exchange.document doc ON doc.uuid = c.document_uuid
            WHERE c.document_uuid = $1
            """,
            key,
        )
        notice_rows = await conn.fetch(
            """
            SELECT extract(epoch FROM n.created_at - doc.submitted_at)::float8 AS created,
                extract(epoch FROM n.pushed_at - doc.submitted_at)::float8 AS pushed,
                extract(epoch FROM n.acknowledged_at - doc.submitted_at)::float8 AS acknowledged
            FROM exchange.notice n JOIN exchange.delivery c ON c.id = n.delivery_id
            JOIN exchange.document doc ON doc.uuid = c.document_uuid
            WHERE c.document_uuid = $1 AND n.kind = 'status'
            """,
            key,
        )
        notices = await conn.fetchrow(
            """
            SELECT extract(epoch FROM max(n.created_at) - doc.submitted_at)::float8 AS created,
                extract(epoch FROM max(n.pushed_at) - doc.submitted_at)::float8 AS pushed,
                extract(epoch FROM max(n.acknowledged_at) - doc.submitted_at)::float8
                    AS acknowledged
            FROM exchange.notice n JOIN exchange.delivery c ON c.id = n.delivery_id
            JOIN exchange.document doc ON doc.uuid = c.document_uuid
            WHERE c.document_uuid = $1 AND n.kind = 'status'
            GROUP BY doc.submitted_at
            """,
            key,
        )
    finally:
        await conn.close()
    batches: dict[float, int] = {}
    claimed: dict[float, float] = {}  # batch -> the last claim of its copies
    for row in rows:
        if row["queued"] is not None:
            batches[row["queued"]] = batches.get(row["queued"], 0) + 1
            if row["pushed"] is not None:
                claimed[row["queued"]] = max(claimed.get(row["queued"], 0.0), row["pushed"])
    tail, last_copy, activity = _tail(
        [dict(r) for r in rows], [dict(r) for r in notice_rows], dms_times or {}
    )
    return CopyTimeline(
        tail=tail,
        last_copy=last_copy,
        activity=activity,
        relay_batches=[
            (start, n, claimed.get(start, math.nan)) for start, n in sorted(batches.items())
        ],
        claimed=_spread([r["pushed"] for r in rows if r["pushed"] is not None]),
        acknowledged=_spread([r["acknowledged"] for r in rows if r["acknowledged"] is not None]),
        notices=(
            None
            if notices is None
            else (notices["created"], notices["pushed"], notices["acknowledged"])
        ),
    )


def _tail(
    rows: Sequence[Mapping[str, Any]],
    notice_rows: Sequence[Mapping[str, Any]],
    dms: Mapping[str, tuple[float, float]],
) -> tuple[
    tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None,
    tuple[float, float, float] | None,
    list[tuple[int, ...]],
]:
    """The tail's stages and the activity per bin (CopyTimeline.tail, last_copy, activity)."""
    if not rows:
        return None, None, []
    submitted = rows[0]["submitted"]
    # (claimed, at the DMS, acknowledgement began, confirmed), s from the Submit.
    stages = [
        (r["pushed"], dms[r["id"]][0] - submitted, r["acknowledged"], dms[r["id"]][1] - submitted)
        for r in rows
        if r["id"] in dms and r["pushed"] is not None and r["acknowledged"] is not None
    ]
    stages.sort(key=lambda s: s[3])
    last = stages[-max(1, int(len(stages) * TAIL_SHARE)) :]

    def gaps(s: tuple[float, float, float, float]) -> tuple[float, float, float]:
        return ((s[1] - s[0]) * 1000, (s[2] - s[1]) * 1000, (s[3] - s[2]) * 1000)

    def median_max(i: int) -> tuple[float, float]:
        values = [gaps(s)[i] for s in last]
        return statistics.median(values), max(values)

    series = [
        [r["pushed"] for r in rows],
        [t[0] - submitted for t in dms.values()],
        [r["acknowledged"] for r in rows],
        [t[1] - submitted for t in dms.values()],
        *([r[k] for r in notice_rows] for k in ("created", "pushed", "acknowledged")),
    ]
    end = max((v for values in series for v in values if v is not None), default=0.0)
    activity = [[0] * len(series) for _ in range(int(end / BIN_S) + 1)]
    for column, values in enumerate(series):
        for v in values:
            if v is not None and v >= 0:
                activity[int(v / BIN_S)][column] += 1
    if not last:
        return None, None, [tuple(b) for b in activity]
    return (
        (median_max(0), median_max(1), median_max(2)),
        gaps(last[-1]),
        [tuple(b) for b in activity],
    )


def timeline_lines(timeline: CopyTimeline | None) -> list[str]:
    if timeline is None:
        return []

    def spread(values: tuple[float, float, float] | None) -> str:
        return "-" if values is None else " / ".join(f"{v:.2f}" for v in values) + " s"

    batches = ", ".join(
        f"{start:.2f} ({copies:,}, the last claimed {last:.2f})"
        for start, copies, last in timeline.relay_batches
    )
    lines = [
        "  in the database (transactions' starts, from the Submit's): relay batches at "
        f"{batches or '-'} s; copies claimed {spread(timeline.claimed)} (first / median / "
        f"last), acknowledged {spread(timeline.acknowledged)}",
    ]
    if timeline.notices is not None:
        created, pushed, acknowledged = (
            "-" if v is None else f"{v:.2f} s" for v in timeline.notices
        )
        lines.append(
            f"  the sender's notices: the last created {created}, pushed {pushed}, "
            f"acknowledged {acknowledged}"
        )
    if timeline.tail is not None and timeline.last_copy is not None:
        (a, b), (c, d), (e, f) = timeline.tail
        x, y, z = timeline.last_copy
        lines.append(
            f"  the tail, the last {TAIL_SHARE:.0%} of the copies confirmed, median / max ms: "
            f"claimed -> at the DMS {a:.0f} / {b:.0f}, at the DMS -> its acknowledgement's "
            f"transaction began {c:.0f} / {d:.0f}, -> confirmed at the DMS {e:.0f} / {f:.0f}; "
            f"the last copy {x:.0f}, {y:.0f}, {z:.0f}"
        )
    if timeline.activity:
        lines.append(
            f"  per {BIN_S} s from the Submit: copies claimed, at the DMS, acknowledged, "
            "confirmed at the DMS | the sender's notices created, pushed, acknowledged"
        )
        lines += [
            f"    {i * BIN_S:4.1f} s  {' '.join(f'{n:5d}' for n in b[:4])} | "
            + " ".join(f"{n:5d}" for n in b[4:])
            for i, b in enumerate(timeline.activity)
        ]
    return lines
