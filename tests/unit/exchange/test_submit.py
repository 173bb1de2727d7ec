"""Submitting a document over fakes: who may send, to whom, idempotency and what is stored."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from docaxis.exchange.v1 import events_pb2

from services.common.errors import (
    ConflictError,
    PermissionDeniedError,
    RejectedError,
    UnavailableError,
    ValidationError,
)
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.service_layer.handlers import ExchangeHandlers, submission_fingerprint
from services.exchange.service_layer.ports import StoredSubmission
from tests.fakes import DELIVERY_MESSAGE_TYPE, FakeDirectoryLookup, FakeDocumentStore
from tests.unit.exchange.builders import (
    CLOSED,
    EDUCATION,
    HEALTH,
    NOW,
    OUTSIDER,
    SENDER,
    SUCCESSOR,
    header,
    submission,
    upload,
)


def nothing_stored(store: FakeDocumentStore) -> bool:
    return not (store.documents or store.deliveries or store.outbox or store.ledger)


async def test_a_submission_stores_one_accepted_delivery_and_outbox_message_per_recipient(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The receipt routes each recipient to itself; each copy is ACCEPTED with an outbox row."""
    attachment = await upload(exchange, SENDER, b"%PDF-1.7 body")
    result = await exchange.submit(SENDER, submission(attachments=(attachment,)))
    receipt = result.receipt
    assert not result.replayed
    assert receipt.document_id == header().document_id
    assert receipt.accepted_at == NOW
    assert [(r.requested_recipient, r.effective_recipient) for r in receipt.routes] == [
        (HEALTH, HEALTH),
        (EDUCATION, EDUCATION),
    ]
    assert list(store.documents) == [receipt.document_uuid]
    assert {d.id: (d.recipient, d.state) for d in store.deliveries.values()} == {
        r.delivery_id: (r.effective_recipient, DeliveryState.ACCEPTED) for r in receipt.routes
    }
    assert [(m.routing_key, m.delivery_id) for m in store.outbox] == [
        (r.effective_recipient, r.delivery_id) for r in receipt.routes
    ]
    message = events_pb2.DeliveryQueued.FromString(store.outbox[0].payload)
    assert store.outbox[0].message_type == DELIVERY_MESSAGE_TYPE
    assert (message.delivery_id, message.document_uuid, message.recipient) == (
        receipt.routes[0].delivery_id,
        receipt.document_uuid,
        HEALTH,
    )


async def test_the_ledger_events_are_staged_with_the_submission(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """One `submission` event and one `routing` event per recipient, naming its delivery."""
    attachment = await upload(exchange, SENDER, b"%PDF-1.7 body")
    sent = submission("c-ledger", attachments=(attachment,))
    receipt = (await exchange.submit(SENDER, sent)).receipt
    assert [e.entry_type for e in store.ledger] == ["submission", "routing", "routing"]
    first, *routing = store.ledger
    assert all(e.doc_uuid == receipt.document_uuid for e in store.ledger)
    assert all(e.document_id == receipt.document_id for e in store.ledger)
    assert all(e.occurred_at == NOW and e.from_agency == SENDER for e in store.ledger)
    assert first.to_agency == ""
    assert first.data == {
        "consignment_sha256": hashlib.sha256(b"c-ledger").hexdigest(),
        "request_sha256": submission_fingerprint(sent),
        "business_type": 0,
        "attachments": [attachment.sha256],
        "signatures": 0,
        "signature_mode": "unsigned",
    }
    assert [(e.to_agency, e.data) for e in routing] == [
        (r.effective_recipient, {"delivery": r.delivery_id, "requested": r.requested_recipient})
        for r in receipt.routes
    ]


async def test_an_agency_cannot_submit_in_another_agencys_name(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """PermissionDeniedError with reason SENDER_MISMATCH; nothing is stored."""
    with pytest.raises(PermissionDeniedError) as failure:
        await exchange.submit(OUTSIDER, submission())
    assert failure.value.reason == "SENDER_MISMATCH"
    assert failure.value.meta == {"caller": OUTSIDER, "sender": SENDER}
    assert nothing_stored(store)


@pytest.mark.parametrize("registered", [False, True])
async def test_a_sender_that_is_unknown_or_closed_is_not_registered(
    exchange: ExchangeHandlers,
    store: FakeDocumentStore,
    directory: FakeDirectoryLookup,
    registered: bool,
) -> None:
    """Only an open agency of the directory may send: RejectedError with NOT_REGISTERED."""
    if registered:
        directory.close(SENDER)
    else:
        del directory.agencies[SENDER]
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(SENDER, submission())
    assert failure.value.reason == "NOT_REGISTERED"
    assert failure.value.meta == {"sender": SENDER}
    assert nothing_stored(store)


async def test_unknown_and_split_recipients_are_refused_naming_the_successors(
    exchange: ExchangeHandlers, store: FakeDocumentStore, directory: FakeDirectoryLookup
) -> None:
    """INVALID_ADDRESSEE lists unknown and unroutable closed codes, and for each closed code its
    closure date, successors and why its mail cannot follow them (several: ambiguous)."""
    unknown = "000.00.99.H45"
    directory.close(CLOSED, SUCCESSOR, HEALTH)
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(SENDER, submission(head=header([EDUCATION, unknown, CLOSED])))
    assert failure.value.reason == "INVALID_ADDRESSEE"
    assert failure.value.meta == {
        "unknown": unknown,
        "closed": CLOSED,
        f"successors.{CLOSED}": f"{SUCCESSOR},{HEALTH}",
        f"closed_on.{CLOSED}": "2025-06-30",
        f"problem.{CLOSED}": (
            f"{CLOSED} closed on 2025-06-30 with several successors ({SUCCESSOR}, {HEALTH}): "
            "address one of them"
        ),
    }
    assert SUCCESSOR in str(failure.value)
    assert nothing_stored(store)


async def test_a_closed_recipient_without_successors_says_so(
    exchange: ExchangeHandlers, directory: FakeDirectoryLookup
) -> None:
    """The message names the closure and reads "successors: none"; the metadata entry is
    empty."""
    directory.close(EDUCATION)
    with pytest.raises(RejectedError) as failure:
        await exchange.submit(SENDER, submission())
    assert failure.value.meta == {
        "unknown": "",
        "closed": EDUCATION,
        f"successors.{EDUCATION}": "",
        f"closed_on.{EDUCATION}": "2025-06-30",
        f"problem.{EDUCATION}": f"{EDUCATION} closed on 2025-06-30 without successor",
    }
    assert "successors: none" in str(failure.value)
    assert "closed on 2025-06-30" in str(failure.value)


async def test_a_directory_outage_stores_nothing(
    exchange: ExchangeHandlers, store: FakeDocumentStore, directory: FakeDirectoryLookup
) -> None:
    """The lookup's UnavailableError reaches the caller, who may retry."""
    directory.failure = UnavailableError("the directory did not answer")
    with pytest.raises(UnavailableError):
        await exchange.submit(SENDER, submission())
    assert nothing_stored(store)


async def test_an_invalid_submission_is_refused_before_anything_is_stored(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """ValidationError lists the problems; the store is untouched."""
    with pytest.raises(ValidationError) as failure:
        await exchange.submit(SENDER, submission("", header(subject="", number="")))
    assert [v.field for v in failure.value.violations] == [
        "consignment_id",
        "header.code.number",
        "header.subject",
    ]
    assert nothing_stored(store)


async def test_resubmitting_the_same_consignment_returns_the_first_receipt(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """The replay is flagged and nothing is stored a second time."""
    first = await exchange.submit(SENDER, submission("c-replay"))
    ledger, outbox = list(store.ledger), list(store.outbox)
    again = await exchange.submit(SENDER, submission("c-replay"))
    assert again.replayed
    assert again.receipt == first.receipt
    assert len(store.documents) == 1
    assert (store.ledger, store.outbox) == (ledger, outbox)


async def test_a_reused_consignment_with_other_content_is_a_duplicate(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """ConflictError (DUPLICATE) names the original document; nothing new is stored."""
    first = await exchange.submit(SENDER, submission("c-reused"))
    with pytest.raises(ConflictError) as failure:
        await exchange.submit(SENDER, submission("c-reused", header(subject="Nội dung khác")))
    assert failure.value.reason == "DUPLICATE"
    assert failure.value.meta == {
        "consignment_id": "c-reused",
        "document_uuid": first.receipt.document_uuid,
    }
    assert list(store.documents) == [first.receipt.document_uuid]


async def test_the_same_consignment_id_from_another_sender_is_a_different_request(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Consignment ids are scoped to their sender."""
    await exchange.submit(SENDER, submission("c-shared"))
    other = await exchange.submit(
        HEALTH, submission("c-shared", header([EDUCATION], sender=HEALTH))
    )
    assert not other.replayed
    assert len(store.documents) == 2


async def test_a_new_document_whose_document_id_exists_is_a_duplicate(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Another consignment with the same sender, date, number and notation is refused."""
    first = await exchange.submit(SENDER, submission("c-first", header(number="4242")))
    with pytest.raises(ConflictError) as failure:
        await exchange.submit(SENDER, submission("c-second", header([OUTSIDER], number="4242")))
    assert failure.value.meta == {
        "document_uuid": first.receipt.document_uuid,
        "document_id": first.receipt.document_id,
    }
    assert len(store.documents) == 1
    assert {d.recipient for d in store.deliveries.values()} == {HEALTH, EDUCATION}


async def test_a_revocation_may_reuse_the_document_id_it_revokes(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Only NEW documents must have a fresh DocumentId."""
    first = await exchange.submit(SENDER, submission("c-new", header(number="4243")))
    revoke = dataclasses.replace(
        header(number="4243"),
        business_type=BusinessType.REVOKE,
        response_for=(first.receipt.document_id,),
    )
    second = await exchange.submit(SENDER, submission("c-revoke", revoke))
    assert second.receipt.document_id == first.receipt.document_id
    assert second.receipt.document_uuid != first.receipt.document_uuid
    assert len(store.documents) == 2


async def test_attachments_the_sender_never_uploaded_are_refused(
    exchange: ExchangeHandlers, store: FakeDocumentStore
) -> None:
    """Not uploaded, uploaded by another agency, or uploaded with another size: each is named."""
    mine = await upload(exchange, SENDER, b"mine")
    theirs = await upload(exchange, HEALTH, b"theirs")
    resized = dataclasses.replace(mine, size=mine.size + 1)
    never = dataclasses.replace(mine, sha256="f" * 64)
    with pytest.raises(ValidationError) as failure:
        await exchange.submit(SENDER, submission(attachments=(mine, theirs, resized, never)))
    assert [v.field for v in failure.value.violations] == [
        "attachments[1]",
        "attachments[2]",
        "attachments[3]",
    ]
    assert not store.documents


async def test_a_concurrent_identical_request_that_committed_first_is_answered_as_a_replay(
    directory: FakeDirectoryLookup,
) -> None:
    """When the store reports the consignment taken at commit, the winner's receipt is returned."""
    winner = FakeDocumentStore()
    await ExchangeHandlers(winner, directory, lambda _: None).submit(SENDER, submission("c-race"))

    class LateStore(FakeDocumentStore):
        """Sees no earlier request on the first look, as a request racing the winner would."""

        looks = 0

        async def find_by_consignment(
            self, sender: str, consignment_id: str
        ) -> StoredSubmission | None:
            self.looks += 1
            if self.looks == 1:
                return None
            return await super().find_by_consignment(sender, consignment_id)

    racing = LateStore(documents=winner.documents, deliveries=winner.deliveries)
    result = await ExchangeHandlers(racing, directory, lambda _: None).submit(
        SENDER, submission("c-race")
    )
    assert result.replayed
    assert result.receipt.document_uuid in winner.documents
    assert len(racing.documents) == 1
