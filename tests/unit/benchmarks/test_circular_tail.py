"""The circular's tail in the bench's timeline: each of the last copies' stages (claim, arrival
at its DMS, its acknowledgement's transaction, its confirmation) from the database's and the
DMSs' times, and the activity per bin."""

from __future__ import annotations

from benchmarks.timeline import _tail

SUBMITTED = 1_000.0


def _copy(copy_id: str, claimed: float, acknowledged: float) -> dict[str, object]:
    return {"id": copy_id, "submitted": SUBMITTED, "pushed": claimed, "acknowledged": acknowledged}


def test_the_tail_is_the_last_confirmed_copies_stages_in_ms() -> None:
    rows = [_copy(f"c{i}", 0.1 * i, 0.1 * i + 0.3) for i in range(29)]
    # Each copy at its DMS 0.1 s after its claim, confirmed 0.05 s after its acknowledgement
    # began; the last one (of the three in the tail) waited 1 s between its arrival and its
    # acknowledgement instead.
    dms = {f"c{i}": (SUBMITTED + 0.1 * i + 0.1, SUBMITTED + 0.1 * i + 0.35) for i in range(29)}
    rows.append(_copy("late", 3.0, 4.1))
    dms["late"] = (SUBMITTED + 3.1, SUBMITTED + 4.15)
    notices = [{"created": 0.4, "pushed": 2.6, "acknowledged": None}]

    tail, last, activity = _tail(rows, notices, dms)

    assert last is not None
    assert [round(v) for v in last] == [100, 1000, 50]
    assert tail is not None
    (claimed, _), (waited, longest), (confirmed, _) = tail
    assert (round(claimed), round(waited), round(longest), round(confirmed)) == (100, 200, 1000, 50)
    # Bins of 0.5 s up to the last time (4.15 s): claims, arrivals, acknowledgements,
    # confirmations, then the notices created, pushed, acknowledged.
    assert len(activity) == 9
    assert [sum(column) for column in zip(*activity, strict=True)] == [30, 30, 30, 30, 1, 1, 0]
    assert activity[5][4:] == (0, 1, 0)


def test_no_copies_no_tail() -> None:
    assert _tail([], [], {}) == (None, None, [])
