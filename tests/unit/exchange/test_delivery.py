"""After submission: pushing, acknowledging, tracking and downloading, over fakes."""

from __future__ import annotations

import unicodedata
import uuid

import pytest

from services.common.errors import NotFoundError, ValidationError
from services.exchange.domain.model import DeliveryState, Receipt
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.ports import PushItem
from tests.fakes import FakeDocumentStore
from tests.unit.exchange.builders import (
    EDUCATION,
    HEALTH,
    NOW,
    OUTSIDER,
    SENDER,
    header,
    submission,
    upload,
)

CONTENT = b"%PDF-1.7 " + b"0123456789" * 50


async def sent(exchange: ExchangeHandlers, consignment_id: str = "c-1") -> Receipt:
    attachment = await upload(exchange, SENDER, CONTENT)
    result = await exchange.submit(SENDER, submission(consignment_id, attachments=(attachment,)))
    return result.receipt


def delivery_to(receipt: Receipt, recipient: str) -> str:
    return next(r.delivery_id for r in receipt.routes if r.effective_recipient == recipient)


async def test_a_push_marks_the_delivery_pushed_and_carries_the_document(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The push item has the header and attachments; the first push is staged for the ledger."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    item = await exchange.begin_push(delivery_id, HEALTH)
    assert isinstance(item, PushItem)
    assert (item.document_uuid, item.requested_recipient) == (receipt.document_uuid, HEALTH)
    assert item.header == header()
    assert [a.size for a in item.attachments] == [len(CONTENT)]
    assert store.deliveries[delivery_id].state is DeliveryState.PUSHED
    assert store.deliveries[delivery_id].push_count == 1
    assert store.ledger[-1].entry_type == "delivery"
    assert store.ledger[-1].data == {"delivery": delivery_id, "event": "pushed"}


async def test_a_repeated_push_counts_but_stages_no_second_ledger_event(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """A stream that dropped before the acknowledgement pushes again; the ledger says it once."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    await exchange.begin_push(delivery_id, HEALTH)
    staged = len(store.ledger)
    assert isinstance(await exchange.begin_push(delivery_id, HEALTH), PushItem)
    assert store.deliveries[delivery_id].push_count == 2
    assert len(store.ledger) == staged


async def test_another_agencys_delivery_is_never_pushed_to_you(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """begin_push answers None for a delivery addressed to someone else and changes nothing."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    assert await exchange.begin_push(delivery_id, EDUCATION) is None
    assert store.deliveries[delivery_id].state is DeliveryState.ACCEPTED


async def test_acknowledging_twice_reports_the_first_acknowledgement(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The second call is flagged already_acknowledged, keeps the first time, stages nothing."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    first = await exchange.acknowledge(HEALTH, delivery_id)
    assert (first.acknowledged_at, first.already_acknowledged) == (NOW, False)
    receipts = [e for e in store.ledger if e.entry_type == "receipt"]
    assert [(e.to_agency, e.data) for e in receipts] == [(HEALTH, {"delivery": delivery_id})]
    again = await exchange.acknowledge(HEALTH, delivery_id)
    assert (again.acknowledged_at, again.already_acknowledged) == (NOW, True)
    assert [e for e in store.ledger if e.entry_type == "receipt"] == receipts
    delivery = store.deliveries[delivery_id]
    assert (delivery.state, delivery.acknowledged_at, delivery.pushed_at) == (
        DeliveryState.ACKNOWLEDGED,
        NOW,
        NOW,
    )


async def test_an_acknowledged_delivery_is_not_pushed_again(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """A redelivered broker message for an acknowledged copy is dropped."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    await exchange.begin_push(delivery_id, HEALTH)
    await exchange.acknowledge(HEALTH, delivery_id)
    assert await exchange.begin_push(delivery_id, HEALTH) is None
    assert store.deliveries[delivery_id].push_count == 1


async def test_acknowledging_a_delivery_that_is_not_yours_is_not_found(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Another recipient's or an unknown delivery id is NotFoundError; state is unchanged."""
    receipt = await sent(exchange)
    delivery_id = delivery_to(receipt, HEALTH)
    with pytest.raises(NotFoundError):
        await exchange.acknowledge(EDUCATION, delivery_id)
    with pytest.raises(NotFoundError):
        await exchange.acknowledge(HEALTH, str(uuid.uuid4()))
    assert store.deliveries[delivery_id].acknowledged_at is None


async def test_a_delivery_id_that_is_not_a_uuid_is_a_validation_error(
    exchange: ExchangeHandlers,
) -> None:
    """The field is delivery_id."""
    with pytest.raises(ValidationError) as failure:
        await exchange.acknowledge(HEALTH, "delivery-1")
    assert [v.field for v in failure.value.violations] == ["delivery_id"]


async def test_the_sender_tracks_every_recipient(exchange: ExchangeHandlers) -> None:
    """The sender sees each copy with its own state."""
    receipt = await sent(exchange)
    await exchange.acknowledge(HEALTH, delivery_to(receipt, HEALTH))
    track = await exchange.track(SENDER, document_uuid=receipt.document_uuid, document_id=None)
    assert track.submitted_at == NOW
    assert [(r.effective_recipient, r.state) for r in track.recipients] == [
        (HEALTH, DeliveryState.ACKNOWLEDGED),
        (EDUCATION, DeliveryState.ACCEPTED),
    ]


async def test_a_recipient_tracks_only_its_own_copy(exchange: ExchangeHandlers) -> None:
    """Other recipients' states are not disclosed to a recipient."""
    receipt = await sent(exchange)
    track = await exchange.track(EDUCATION, document_uuid=receipt.document_uuid, document_id=None)
    assert [r.effective_recipient for r in track.recipients] == [EDUCATION]
    assert track.header.sender == SENDER


async def test_an_outsider_cannot_tell_a_document_exists(exchange: ExchangeHandlers) -> None:
    """An existing document not yours and a missing one give the same NotFoundError."""
    receipt = await sent(exchange)
    with pytest.raises(NotFoundError) as hidden:
        await exchange.track(OUTSIDER, document_uuid=receipt.document_uuid, document_id=None)
    with pytest.raises(NotFoundError) as missing:
        await exchange.track(OUTSIDER, document_uuid=str(uuid.uuid4()), document_id=None)
    assert str(hidden.value) == str(missing.value)


async def test_a_document_can_be_tracked_by_its_document_id_in_either_normal_form(
    exchange: ExchangeHandlers,
) -> None:
    """A decomposed (NFD) DocumentId finds the document stored under its NFC form."""
    receipt = await sent(exchange)
    decomposed = unicodedata.normalize("NFD", receipt.document_id)
    assert decomposed != receipt.document_id
    track = await exchange.track(SENDER, document_uuid=None, document_id=decomposed)
    assert track.document_uuid == receipt.document_uuid


async def test_tracking_needs_a_well_formed_key(exchange: ExchangeHandlers) -> None:
    """A malformed uuid or no key at all is a validation error."""
    with pytest.raises(ValidationError) as bad:
        await exchange.track(SENDER, document_uuid="nope", document_id=None)
    assert [v.field for v in bad.value.violations] == ["document_uuid"]
    with pytest.raises(ValidationError) as empty:
        await exchange.track(SENDER, document_uuid=None, document_id="")
    assert [v.field for v in empty.value.violations] == ["document"]


async def test_sender_and_recipient_download_an_attachment_and_resume_at_an_offset(
    exchange: ExchangeHandlers,
) -> None:
    """Pieces start at the requested offset and together are the rest of the file."""
    receipt = await sent(exchange)
    track = await exchange.track(SENDER, document_uuid=receipt.document_uuid, document_id=None)
    digest = track.attachments[0].sha256
    for caller in (SENDER, HEALTH):
        pieces = [
            piece
            async for piece in await exchange.download(caller, receipt.document_uuid, digest, 100)
        ]
        assert pieces[0][0] == 100
        assert b"".join(data for _, data in pieces) == CONTENT[100:]


async def test_an_outsider_or_a_foreign_attachment_cannot_be_downloaded(
    exchange: ExchangeHandlers,
) -> None:
    """Authorisation comes first, and only the document's own attachments are served."""
    receipt = await sent(exchange)
    other = await upload(exchange, SENDER, b"another file")
    digest = (
        (await exchange.track(SENDER, document_uuid=receipt.document_uuid, document_id=None))
        .attachments[0]
        .sha256
    )
    with pytest.raises(NotFoundError):
        await exchange.download(OUTSIDER, receipt.document_uuid, digest, 0)
    with pytest.raises(NotFoundError):
        await exchange.download(SENDER, receipt.document_uuid, other.sha256, 0)
    with pytest.raises(ValidationError):
        await exchange.download(SENDER, receipt.document_uuid, digest, -1)
