"""Where a circular's seconds went, from its copies' own timestamps in the database: when the
relay's batches began, when the copies' claims (pushes) and acknowledgements were stored, when
the sender's status notices were. Each timestamp is its transaction's start (docaxis stores
now()), counted from the Submit's, so a batch's figure is when it began, not when it committed."""

from __future__ import annotations

import math
import statistics
import uuid
from dataclasses import dataclass, field

import asyncpg


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


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    return (min(values), statistics.median(values), max(values)) if values else None


async def copy_timeline(database_url: str, document_uuid: str) -> CopyTimeline:
    conn = await asyncpg.connect(database_url)
    try:
        key = uuid.UUID(document_uuid)
        rows = await conn.fetch(
            """
            SELECT extract(epoch FROM c.queued_at - doc.submitted_at)::float8 AS queued,
                extract(epoch FROM c.pushed_at - doc.submitted_at)::float8 AS pushed,
                extract(epoch FROM c.acknowledged_at - doc.submitted_at)::float8 AS acknowledged
            FROM exchange.delivery c JOIN exchange.document doc ON doc.uuid = c.document_uuid
            WHERE c.document_uuid = $1
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
    return CopyTimeline(
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
    return lines
