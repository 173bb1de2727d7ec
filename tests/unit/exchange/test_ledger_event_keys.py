"""The ledger events a statement stages carry their documents as UUIDs, each document parsed
once (postgres_statements.document_keys): a group of a circular's acknowledgements stages two
events a copy, all of one document."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import SimpleNamespace

import pytest

from services.exchange.adapters import postgres_statements
from services.exchange.adapters.postgres_statements import document_keys
from services.exchange.domain.delivery import LedgerEvent

NOW = dt.datetime(2026, 12, 7, 21, 0, tzinfo=dt.UTC)


def _event(doc_uuid: str, entry_type: str = "status") -> LedgerEvent:
    return LedgerEvent(
        entry_type=entry_type, doc_uuid=doc_uuid, document_id="1/UBND", occurred_at=NOW
    )


def test_each_event_has_its_own_document_in_the_events_order() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    spellings = [str(first), str(second).upper(), f"{{{first}}}", str(second), first.hex]
    events = [_event(text) for text in spellings]
    assert document_keys(events) == [uuid.UUID(text) for text in spellings]
    assert document_keys([]) == []


def test_a_document_is_parsed_once_however_many_events_it_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []

    def counted(text: str) -> uuid.UUID:
        parsed.append(text)
        return uuid.UUID(text)

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    monkeypatch.setattr(postgres_statements, "uuid", SimpleNamespace(UUID=counted))
    events = [_event(first, "receipt"), _event(first), _event(second), _event(first)] * 50
    keys = document_keys(events)
    monkeypatch.undo()
    assert sorted(parsed) == sorted([first, second])
    assert keys == [uuid.UUID(e.doc_uuid) for e in events]


def test_an_events_data_is_the_text_json_dumps_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged as json.dumps(data, ensure_ascii=False, sort_keys=True) wrote it, by an encoder
    made once (json.dumps built one an event: 15 a bench document)."""
    data = {
        "z": 1,
        "delivery": "c-1",
        "tên": "Sở Nội vụ",
        "nested": {"b": [1, 2.5, None], "a": True},
    }
    want = json.dumps(data, ensure_ascii=False, sort_keys=True)

    def dumps(*args: object, **kwargs: object) -> str:
        raise AssertionError("json.dumps made an encoder for this event")

    monkeypatch.setattr(json, "dumps", dumps)
    event = LedgerEvent(
        entry_type="status",
        doc_uuid=str(uuid.uuid4()),
        document_id="1/UBND",
        occurred_at=NOW,
        data=data,
    )
    assert postgres_statements.event_data(event) == want
