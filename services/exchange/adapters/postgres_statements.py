"""Building one statement out of several writes: numbered parameters placed with their types,
and the ledger staging every transaction that changes a copy writes as one of its WITH clauses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from services.exchange.domain.delivery import LedgerEvent

ACTOR = "exchange"


class Parameters:
    """The values of one statement's numbered parameters, each placed with its type."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object, sql_type: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{sql_type}"


def ledger_events_sql(p: Parameters, events: Sequence[LedgerEvent], where: str = "") -> str:
    """The events in ledger.pending, ids in the list's order, as stage_ledger_events; `where`:
    a WHERE clause on which they are staged at all."""
    return f"""
        INSERT INTO ledger.pending
            (entry_type, doc_uuid, document_id, from_agency, to_agency, actor, occurred_at, data)
        SELECT e.entry_type, e.doc_uuid, e.document_id, e.from_agency, e.to_agency,
            {p(ACTOR, "text")}, e.occurred_at, e.data::jsonb
        FROM unnest({p([e.entry_type for e in events], "text[]")},
            {p(document_keys(events), "uuid[]")},
            {p([e.document_id for e in events], "text[]")},
            {p([e.from_agency for e in events], "text[]")},
            {p([e.to_agency for e in events], "text[]")},
            {p([e.occurred_at for e in events], "timestamptz[]")},
            {p([event_data(e) for e in events], "text[]")}) WITH ORDINALITY
            AS e(entry_type, doc_uuid, document_id, from_agency, to_agency, occurred_at, data, n)
        {where}
        ORDER BY e.n"""  # noqa: S608 - placeholders and constants only


def document_keys(events: Sequence[LedgerEvent]) -> list[uuid.UUID]:
    """Each event's document as a UUID, each document parsed once: a group of a circular's
    acknowledgements stages two events a copy, all of one document."""
    parsed = {text: uuid.UUID(text) for text in {e.doc_uuid for e in events}}
    return [parsed[e.doc_uuid] for e in events]


# json.dumps's options, its encoder made once: dumps builds a JSONEncoder a call (two Python
# frames more an event, 15 events a bench document). Postgres keeps the data as jsonb.
_EVENT_DATA = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def event_data(event: LedgerEvent) -> str:
    return _EVENT_DATA.encode(dict(event.data))
