"""Turning staged events into log entries: bodies, leaf hashes, per-document back-pointers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from docaxis_client.ledger.entry import EntryType, LedgerEntry, PrevRef
from docaxis_client.ledger.merkle import hash_leaf

# The enum's call is two Python frames an event; an unknown type still raises its ValueError.
_ENTRY_TYPES: dict[str, EntryType] = {t.value: t for t in EntryType}


@dataclass(frozen=True, slots=True)
class StagedEvent:
    """A row of ledger.pending: what business code recorded, in its own transaction."""

    pending_id: int
    entry_type: str
    doc_uuid: str | None
    document_id: str
    from_agency: str
    to_agency: str
    actor: str
    occurred_at: dt.datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SequencedEntry:
    seq: int
    entry_type: str
    doc_uuid: str | None
    logged_at: dt.datetime
    body: bytes
    leaf_hash: bytes


def sequence_events(
    events: Sequence[StagedEvent],
    *,
    first_seq: int,
    origin: str,
    logged_at: dt.datetime,
    prevs: MutableMapping[str, PrevRef],
) -> list[SequencedEntry]:
    """Entries for `events` in order from `first_seq`. `prevs` holds each document's latest
    entry before this batch and is updated, so a document's entries chain within a batch too."""
    return list(
        iter_sequenced(events, first_seq=first_seq, origin=origin, logged_at=logged_at, prevs=prevs)
    )


def iter_sequenced(
    events: Sequence[StagedEvent],
    *,
    first_seq: int,
    origin: str,
    logged_at: dt.datetime,
    prevs: MutableMapping[str, PrevRef],
) -> Iterator[SequencedEntry]:
    """sequence_events, one entry at a time: lets a writer stream entries to the database while
    it encodes the next ones."""
    for offset, event in enumerate(events):
        seq = first_seq + offset
        entry = LedgerEntry(
            log=origin,
            type=_ENTRY_TYPES.get(event.entry_type) or EntryType(event.entry_type),
            actor=event.actor,
            occurred_at=event.occurred_at,
            logged_at=logged_at,
            data=dict(event.data),
            doc=event.doc_uuid,
            document_id=event.document_id or None,
            from_=event.from_agency or None,
            to=event.to_agency or None,
            prev=prevs.get(event.doc_uuid) if event.doc_uuid else None,
        )
        body = entry.encode()
        leaf = hash_leaf(body)
        if event.doc_uuid:
            prevs[event.doc_uuid] = PrevRef(seq, leaf)
        yield SequencedEntry(seq, event.entry_type, event.doc_uuid, logged_at, body, leaf)
