"""Staged events turned into entries: the per-event work stays a few Python frames (the ledger
writer runs it on the event loop, 13 events a bench document), and an unknown type is still
refused as the enum refuses it."""

from __future__ import annotations

import datetime as dt
import itertools
import sys
import uuid
from types import FrameType

import pytest

from docaxis_client.ledger.entry import PrevRef, parse_entry
from services.ledger.domain.sequencing import StagedEvent, sequence_events

NOW = dt.datetime(2026, 12, 7, 23, 0, 0, 123456, tzinfo=dt.UTC)
DOC = str(uuid.UUID(int=1))


def _events(count: int, entry_type: str = "routing") -> list[StagedEvent]:
    return [
        StagedEvent(i, entry_type, DOC, "1/QD", "A", "B", "docaxis", NOW, {"delivery": str(i)})
        for i in range(count)
    ]


def test_an_event_is_sequenced_in_at_most_fifteen_python_frames() -> None:
    """18 before the enum's call (2 frames), the JSON encoder's `encode` and `iterencode` (2)
    were taken out of the loop's path: 14 now."""
    frames = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal frames
        if event == "call":
            frames += 1

    events = _events(100)
    sys.setprofile(count)
    try:
        sequence_events(events, first_seq=0, origin="o", logged_at=NOW, prevs={})
    finally:
        sys.setprofile(None)
    assert frames / len(events) <= 15


def test_the_entries_chain_and_parse_back_to_their_bytes() -> None:
    entries = sequence_events(_events(3), first_seq=7, origin="o", logged_at=NOW, prevs={})
    assert [e.seq for e in entries] == [7, 8, 9]
    for earlier, later in itertools.pairwise(entries):
        assert parse_entry(later.body).prev == PrevRef(earlier.seq, earlier.leaf_hash)
        assert parse_entry(later.body).encode() == later.body


def test_an_unknown_entry_type_is_refused_as_the_enum_refuses_it() -> None:
    with pytest.raises(ValueError, match="'parcel' is not a valid EntryType"):
        sequence_events(_events(1, "parcel"), first_seq=0, origin="o", logged_at=NOW, prevs={})
