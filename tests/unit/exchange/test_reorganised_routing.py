"""Submitting to reorganised agencies over fakes: successors, refusals, what is recorded."""

from __future__ import annotations

import pytest

from services.common.errors import RejectedError, ValidationError
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.routing import effective_agency
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.exchange.builders import (
    CLOSED,
    EDUCATION,
    HEALTH,
    SENDER,
    SUCCESSOR,
    TODAY,
    header,
    submission,
)

CHAINED = "000.00.11.H40"


async def test_a_closed_recipient_is_delivered_to_its_successor_recording_both(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The receipt, the delivery and the routing ledger event keep the code the sender wrote and
    the successor that receives it; the outbox addresses the successor's queue."""
    result = await exchange.submit(SENDER, submission(head=header([HEALTH, CLOSED])))
    routes = result.receipt.routes
    assert [(r.requested_recipient, r.effective_recipient) for r in routes] == [
        (HEALTH, HEALTH),
        (CLOSED, SUCCESSOR),
    ]
    delivery = store.deliveries[routes[1].delivery_id]
    assert (delivery.requested_recipient, delivery.recipient) == (CLOSED, SUCCESSOR)
    assert [m.routing_key for m in store.outbox] == [HEALTH, SUCCESSOR]
    routing = [e for e in store.ledger if e.entry_type == "routing"]
    assert [(e.to_agency, e.data["requested"]) for e in routing] == [
        (HEALTH, HEALTH),
        (SUCCESSOR, CLOSED),
    ]
    track = await exchange.track(
        SUCCESSOR, document_uuid=result.receipt.document_uuid, document_id=None
    )
    assert [(r.requested_recipient, r.effective_recipient) for r in track.recipients] == [
        (CLOSED, SUCCESSOR)
    ]


async def test_a_chain_of_closures_is_followed(
    exchange: ExchangeHandlers, directory: FakeDirectoryLookup
) -> None:
    directory.close(CHAINED, CLOSED)
    result = await exchange.submit(SENDER, submission(head=header([CHAINED])))
    assert [(r.requested_recipient, r.effective_recipient) for r in result.receipt.routes] == [
        (CHAINED, SUCCESSOR)
    ]
    assert await effective_agency(directory, CHAINED, TODAY) == SUCCESSOR
    assert await effective_agency(directory, HEALTH, TODAY) == HEALTH
    assert await effective_agency(directory, "000.00.98.H45", TODAY) is None


async def test_a_successor_cycle_is_refused_not_looped(
    exchange: ExchangeHandlers, store: FakeDocumentStore, directory: FakeDirectoryLookup
) -> None:
    directory.close(CHAINED, CLOSED)
    directory.close(CLOSED, CHAINED)
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(SENDER, submission(head=header([CHAINED])))
    assert failure.value.reason == "INVALID_ADDRESSEE"
    assert failure.value.meta[f"problem.{CHAINED}"] == f"successor cycle through {CHAINED}"
    assert not store.documents


async def test_a_recipient_not_yet_valid_is_refused(
    exchange: ExchangeHandlers, directory: FakeDirectoryLookup
) -> None:
    directory.register_ahead(EDUCATION)
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(SENDER, submission())
    assert failure.value.reason == "INVALID_ADDRESSEE"
    assert failure.value.meta["not_yet_valid"] == EDUCATION
    assert "not open yet" in str(failure.value)


async def test_two_codes_reaching_one_successor_are_refused(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Writing a closed ward and its successor would be two copies for one agency."""
    with pytest.raises(ValidationError) as failure:
        await exchange.submit(SENDER, submission(head=header([SUCCESSOR, CLOSED])))
    assert [v.field for v in failure.value.violations] == ["header.recipients[1]"]
    assert SUCCESSOR in failure.value.violations[0].description
    assert not store.documents
