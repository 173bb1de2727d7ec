"""The `DocumentStore` port: one set of tests, run against FakeDocumentStore and
PostgresDocumentStore, observing staged ledger events and outbox rows through a probe each."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import asyncpg
import pytest
from docaxis.exchange.v1 import events_pb2

from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_copies import LOCK_FORWARDED_SQL, LOCK_PUBLISHED_SQL
from services.exchange.adapters.postgres_federation import PostgresFederationStore
from services.exchange.domain.delivery import HandoverFailure, LedgerEvent, text_commitment
from services.exchange.domain.model import (
    MAX_PUSHES_EXCEEDED,
    AttachmentRef,
    BusinessType,
    DeliveryState,
    Header,
    Receipt,
    Route,
    Signature,
    Submission,
)
from services.exchange.service_layer.ports import (
    DeadLetter,
    DocumentStore,
    DuplicateConsignmentError,
    DuplicateDocumentError,
    NewSubmission,
    PushItem,
)
from tests.fakes import DELIVERY_MESSAGE_TYPE, FakeDocumentStore, OutboxMessage
from tests.hub_receipts import hub_receipt
from tests.integration.contract.conftest import unique

ACCEPTED_AT = dt.datetime(2025, 8, 1, 3, 4, 5, 678901, tzinfo=dt.UTC)


class Probe(Protocol):
    """Reads what a store staged for others: ledger events and outbox rows."""

    async def staged(self, document_uuid: str) -> list[LedgerEvent]: ...

    async def outbox(self, delivery_ids: Sequence[str]) -> list[OutboxMessage]: ...


class StreamFailed(Exception):
    """Raised by a test's chunk iterator in the middle of an upload."""


async def chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise StreamFailed


def sha256_of(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    submission: Submission
    receipt: Receipt
    fingerprint: str
    events: tuple[LedgerEvent, ...]


def a_submission(
    sender: str,
    recipients: Sequence[str],
    *,
    consignment_id: str | None = None,
    number: str | None = None,
    attachments: tuple[AttachmentRef, ...] = (),
    business_type: BusinessType = BusinessType.NEW,
) -> Submission:
    header = Header(
        sender=sender,
        recipients=tuple(recipients),
        code_number=number or str(uuid.uuid4().int % 10**9),
        code_notation="KH-SỞYT/VP",
        promulgation_date=dt.date(2025, 7, 30),
        subject="Về việc sáp nhập đơn vị hành chính cấp xã",
        promulgation_place="Quảng Ninh",
        document_type=1,
        type_name="Công văn",
        content="Nội dung",
        signer_competence="KT. GIÁM ĐỐC",
        signer_position="Phó Giám đốc",
        signer_full_name="Lê Thị B",
        due_date=dt.date(2025, 8, 15),
        priority=2,
        business_type=business_type,
        response_for=("000.00.00.G22,2025/07/01,12/VPCP-TTĐT",)
        if business_type is not BusinessType.NEW
        else (),
        to_places=("Như trên", "Lưu: VT"),
    )
    return Submission(
        consignment_id or f"c-{uuid.uuid4()}",
        header,
        attachments,
        (
            Signature(
                "organization",
                "ES256",
                b"\x30\x44sig",
                (b"leaf-der", b"ca-der"),
                dt.datetime(2025, 7, 30, 1, 2, 3, tzinfo=dt.UTC),
            ),
        ),
    )


def a_receipt(
    submission: Submission, accepted_at: dt.datetime = ACCEPTED_AT, document_uuid: str = ""
) -> Receipt:
    return Receipt(
        document_uuid=document_uuid or str(uuid.uuid4()),
        document_id=submission.header.document_id,
        consignment_id=submission.consignment_id,
        accepted_at=accepted_at,
        routes=tuple(Route(r, r, str(uuid.uuid4())) for r in submission.header.recipients),
    )


def events_for(receipt: Receipt, sender: str) -> tuple[LedgerEvent, ...]:
    return (
        LedgerEvent(
            "submission",
            receipt.document_uuid,
            receipt.document_id,
            receipt.accepted_at,
            from_agency=sender,
            data={"business_type": 0, "attachments": ["x"], "note": "Đã nhận"},
        ),
        *(
            LedgerEvent(
                "routing",
                receipt.document_uuid,
                receipt.document_id,
                receipt.accepted_at,
                from_agency=sender,
                to_agency=route.effective_recipient,
                data={"delivery": route.delivery_id},
            )
            for route in receipt.routes
        ),
    )


async def send(
    store: DocumentStore, submission: Submission, receipt: Receipt | None = None
) -> Sent:
    receipt = receipt or a_receipt(submission)
    fingerprint = hashlib.sha256(repr(submission).encode()).hexdigest()
    events = events_for(receipt, submission.header.sender)
    (refusal,) = await store.store_submissions(
        [NewSubmission(submission, receipt, fingerprint, events)]
    )
    if refusal is not None:
        raise refusal
    return Sent(submission, receipt, fingerprint, events)


def without_time(events: Sequence[LedgerEvent]) -> list[LedgerEvent]:
    """Events with the time left out, for events the store timestamps itself."""
    return [dataclasses.replace(e, occurred_at=ACCEPTED_AT) for e in events]


class DocumentStoreContract:
    """What ExchangeHandlers and the servicer rely on. Agency codes, consignments and numbers
    are unique per test, so the tests share one database without seeing each other."""

    # --- blobs ----------------------------------------------------------------------------------

    async def test_an_uploaded_blob_is_owned_only_by_its_uploader_at_its_size(
        self, store: DocumentStore
    ) -> None:
        """unowned_attachments lists the references the owner cannot use, by index."""
        owner, other = unique("A"), unique("A")
        sha = sha256_of(b"%PDF", b"-1.7")
        await store.store_blob(owner, sha, chunks(b"%PDF", b"-1.7"))
        ref = AttachmentRef("cv.pdf", "application/pdf", 8, sha)
        assert await store.unowned_attachments(owner, [ref]) == []
        assert await store.unowned_attachments(other, [ref]) == [0]
        wrong_size = dataclasses.replace(ref, size=9)
        never = dataclasses.replace(ref, sha256=sha256_of(uuid.uuid4().bytes))
        assert await store.unowned_attachments(owner, [wrong_size, ref, never]) == [0, 2]
        assert await store.unowned_attachments(owner, []) == []

    async def test_submit_lookups_answer_ownership_contents_and_the_earlier_request(
        self, store: DocumentStore
    ) -> None:
        """In one call: the files the sender does not hold (by index), the bytes of the blobs
        asked for that it holds (those stored in one piece; the rest are read when needed),
        and the request stored earlier under the consignment id."""
        owner, other, recipient = unique("A"), unique("A"), unique("R")
        whole, split = b"%PDF-1.7" + uuid.uuid4().bytes, b"%PDF-1.4" + uuid.uuid4().bytes
        await store.store_blob(owner, sha256_of(whole), chunks(whole))
        await store.store_blob(owner, sha256_of(split), chunks(split[:5], split[5:]))
        one = AttachmentRef("a.pdf", "application/pdf", len(whole), sha256_of(whole))
        two = AttachmentRef("b.pdf", "application/pdf", len(split), sha256_of(split))
        never = dataclasses.replace(one, sha256=sha256_of(uuid.uuid4().bytes))
        wanted = {one.sha256, two.sha256, never.sha256}
        found = await store.submit_lookups(owner, [one, never, two], "c-none", wanted)
        assert found.unowned == [1]
        assert found.contents.get(one.sha256) == whole
        assert found.contents.get(two.sha256) in (None, split)
        assert never.sha256 not in found.contents
        assert found.earlier is None
        stranger = await store.submit_lookups(other, [one], "c-none", wanted)
        assert (stranger.unowned, stranger.contents) == ([0], {})
        sent = await send(store, a_submission(owner, [recipient], attachments=(one,)))
        again = await store.submit_lookups(owner, [one], sent.submission.consignment_id, set())
        assert again.contents == {}
        assert again.earlier is not None
        assert again.earlier.receipt == sent.receipt
        assert again.earlier.fingerprint == sent.fingerprint

    async def test_an_upload_whose_stream_fails_stores_nothing(self, store: DocumentStore) -> None:
        """The iterator's exception comes through and no ownership or content is kept."""
        owner = unique("A")
        content = uuid.uuid4().bytes
        sha = sha256_of(content)
        with pytest.raises(StreamFailed):
            await store.store_blob(owner, sha, chunks(content[:5], content[5:], fail=True))
        ref = AttachmentRef("a.bin", "application/octet-stream", len(content), sha)
        assert await store.unowned_attachments(owner, [ref]) == [0]
        await store.store_blob(owner, sha, chunks(content))
        assert await store.unowned_attachments(owner, [ref]) == []

    async def test_a_second_upload_of_known_content_adds_an_owner_and_keeps_the_bytes(
        self, store: DocumentStore
    ) -> None:
        """Content is addressed by hash; the second uploader's chunking does not matter."""
        first, second, recipient = unique("A"), unique("A"), unique("A")
        content = b"0123456789" + uuid.uuid4().bytes
        sha = sha256_of(content)
        await store.store_blob(first, sha, chunks(content[:4], content[4:]))
        await store.store_blob(second, sha, chunks(content))
        ref = AttachmentRef("a.bin", "application/octet-stream", len(content), sha)
        assert await store.unowned_attachments(second, [ref]) == []
        sent = await send(store, a_submission(second, [recipient], attachments=(ref,)))
        pieces = [p async for p in store.attachment_chunks(sent.receipt.document_uuid, sha, 0)]
        assert pieces == [(0, content[:4]), (4, content[4:])]

    async def test_attachment_chunks_resume_from_any_offset(self, store: DocumentStore) -> None:
        """Pieces keep the stored chunking; the first is cut at the offset, past the end is
        empty, and an unknown hash yields nothing."""
        owner, recipient = unique("A"), unique("A")
        parts = (b"abc", b"defg", uuid.uuid4().bytes)
        sha = sha256_of(*parts)
        await store.store_blob(owner, sha, chunks(*parts))
        size = sum(map(len, parts))
        ref = AttachmentRef("a.bin", "application/octet-stream", size, sha)
        doc = (await send(store, a_submission(owner, [recipient], attachments=(ref,)))).receipt

        async def read(offset: int, digest: str = sha) -> list[tuple[int, bytes]]:
            return [p async for p in store.attachment_chunks(doc.document_uuid, digest, offset)]

        assert await read(0) == [(0, b"abc"), (3, b"defg"), (7, parts[2])]
        assert await read(3) == [(3, b"defg"), (7, parts[2])]
        assert await read(5) == [(5, b"fg"), (7, parts[2])]
        assert await read(size - 1) == [(size - 1, parts[2][-1:])]
        assert await read(size) == []
        assert await read(0, sha256_of(b"unknown")) == []

    async def test_empty_chunks_in_an_upload_are_harmless(self, store: DocumentStore) -> None:
        """A DMS may send an empty chunk message; the content is still what was sent."""
        owner, recipient = unique("A"), unique("A")
        content = uuid.uuid4().bytes
        sha = sha256_of(content)
        await store.store_blob(owner, sha, chunks(b"", content[:3], b"", content[3:], b""))
        ref = AttachmentRef("a.bin", "application/octet-stream", len(content), sha)
        doc = (await send(store, a_submission(owner, [recipient], attachments=(ref,)))).receipt
        pieces = [p async for p in store.attachment_chunks(doc.document_uuid, sha, 0)]
        assert b"".join(data for _, data in pieces) == content

    # --- submissions ----------------------------------------------------------------------------

    async def test_a_stored_submission_is_found_by_its_sender_and_consignment(
        self, store: DocumentStore
    ) -> None:
        """The receipt comes back equal, routes in order, with the fingerprint."""
        sender, r1, r2 = unique("S"), unique("R"), unique("R")
        sent = await send(store, a_submission(sender, [r2, r1]))
        found = await store.find_by_consignment(sender, sent.submission.consignment_id)
        assert found is not None
        assert found.receipt == sent.receipt
        assert found.fingerprint == sent.fingerprint
        assert await store.find_by_consignment(r1, sent.submission.consignment_id) is None
        assert await store.find_by_consignment(sender, "c-never-used") is None

    async def test_a_submission_stages_its_ledger_events_and_one_outbox_row_per_delivery(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """The events given are staged as given; each delivery has a DeliveryQueued message
        routed to its recipient."""
        sender, r1, r2 = unique("S"), unique("R"), unique("R")
        sent = await send(store, a_submission(sender, [r1, r2]))
        assert await probe.staged(sent.receipt.document_uuid) == list(sent.events)
        routes = sent.receipt.routes
        rows = await probe.outbox([r.delivery_id for r in routes])
        assert [(m.routing_key, m.message_id, m.delivery_id, m.message_type) for m in rows] == [
            (r.effective_recipient, r.delivery_id, r.delivery_id, DELIVERY_MESSAGE_TYPE)
            for r in routes
        ]
        queued = events_pb2.DeliveryQueued.FromString(rows[1].payload)
        assert (queued.delivery_id, queued.document_uuid, queued.recipient) == (
            routes[1].delivery_id,
            sent.receipt.document_uuid,
            r2,
        )

    async def test_a_reused_consignment_raises_and_stores_nothing(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """DuplicateConsignmentError, even when the DocumentId is also taken: the consignment
        is checked first."""
        sender, recipient = unique("S"), unique("R")
        first = await send(store, a_submission(sender, [recipient], number="1"))
        for number in ("2", "1"):
            again = dataclasses.replace(
                a_submission(sender, [recipient], number=number),
                consignment_id=first.submission.consignment_id,
            )
            receipt = a_receipt(again)
            with pytest.raises(DuplicateConsignmentError):
                await send(store, again, receipt)
            assert await store.track(document_uuid=receipt.document_uuid, document_id=None) is None
            assert await probe.staged(receipt.document_uuid) == []
            assert await probe.outbox([r.delivery_id for r in receipt.routes]) == []

    async def test_a_new_document_with_a_taken_document_id_names_the_original(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """DuplicateDocumentError carries the first document's uuid; nothing is stored."""
        sender, recipient = unique("S"), unique("R")
        first = await send(store, a_submission(sender, [recipient], number="77"))
        second = a_submission(sender, [recipient], number="77")
        receipt = a_receipt(second)
        with pytest.raises(DuplicateDocumentError) as failure:
            await send(store, second, receipt)
        assert failure.value.document_uuid == first.receipt.document_uuid
        assert await store.find_by_consignment(sender, second.consignment_id) is None
        assert await probe.staged(receipt.document_uuid) == []

    async def test_a_batch_stores_every_document_but_the_refused_ones(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """A duplicate DocumentId inside the batch and a consignment already used: each refused
        on its own, storing nothing of it; every other document stored with its copies, outbox
        rows and ledger events; the first of two documents with one DocumentId wins."""
        sender, recipient = unique("S"), unique("R")
        used = await send(store, a_submission(sender, [recipient], number="1"))
        batch = [
            a_submission(sender, [recipient], number="2"),
            a_submission(sender, [recipient], number="3"),
            a_submission(sender, [recipient], number="2"),  # the first one's DocumentId
            dataclasses.replace(
                a_submission(sender, [recipient], number="4"),
                consignment_id=used.submission.consignment_id,
            ),
            a_submission(sender, [recipient], number="5"),
        ]
        receipts = [a_receipt(submission) for submission in batch]
        events = [events_for(receipt, sender) for receipt in receipts]
        outcomes = await store.store_submissions(
            [
                NewSubmission(submission, receipt, f"fp-{index}", items)
                for index, (submission, receipt, items) in enumerate(
                    zip(batch, receipts, events, strict=True)
                )
            ]
        )
        assert [type(outcome) for outcome in outcomes] == [
            type(None),
            type(None),
            DuplicateDocumentError,
            DuplicateConsignmentError,
            type(None),
        ]
        duplicate = outcomes[2]
        assert isinstance(duplicate, DuplicateDocumentError)
        assert duplicate.document_uuid == receipts[0].document_uuid
        for index in (0, 1, 4):
            stored = await store.find_by_consignment(sender, batch[index].consignment_id)
            assert stored is not None
            assert stored.receipt.document_uuid == receipts[index].document_uuid
            assert without_time(await probe.staged(receipts[index].document_uuid)) == (
                without_time(events[index])
            )
            assert len(await probe.outbox([r.delivery_id for r in receipts[index].routes])) == 1
        for index in (2, 3):
            assert (
                await store.track(document_uuid=receipts[index].document_uuid, document_id=None)
                is None
            )
            assert await probe.staged(receipts[index].document_uuid) == []
            assert await probe.outbox([r.delivery_id for r in receipts[index].routes]) == []

    async def test_revocations_reuse_a_document_id_but_new_documents_still_may_not(
        self, store: DocumentStore
    ) -> None:
        """Only NEW documents are unique by DocumentId; the duplicate names the NEW one."""
        sender, recipient = unique("S"), unique("R")
        first = await send(store, a_submission(sender, [recipient], number="5"))
        revoke = a_submission(sender, [recipient], number="5", business_type=BusinessType.REVOKE)
        revoked = await send(store, revoke, a_receipt(revoke, ACCEPTED_AT + dt.timedelta(hours=1)))
        assert revoked.receipt.document_id == first.receipt.document_id
        with pytest.raises(DuplicateDocumentError) as failure:
            await send(store, a_submission(sender, [recipient], number="5"))
        assert failure.value.document_uuid == first.receipt.document_uuid

    async def test_tracking_shows_the_document_and_every_copy_in_order(
        self, store: DocumentStore
    ) -> None:
        """By uuid: the header, attachments and each delivery ACCEPTED at the receipt's time."""
        sender, r1, r2 = unique("S"), unique("R"), unique("R")
        sha = sha256_of(b"track")
        await store.store_blob(sender, sha, chunks(b"track"))
        ref = AttachmentRef("tệp.pdf", "application/pdf", 5, sha, "mô tả")
        sent = await send(store, a_submission(sender, [r2, r1], attachments=(ref,)))
        track = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert track is not None
        assert track.document_uuid == sent.receipt.document_uuid
        assert track.header == sent.submission.header
        assert track.attachments == (ref,)
        assert track.submitted_at == ACCEPTED_AT
        assert [
            (r.requested_recipient, r.effective_recipient, r.delivery_id, r.state, r.push_count)
            for r in track.recipients
        ] == [
            (route.requested_recipient, route.effective_recipient, route.delivery_id,
             DeliveryState.ACCEPTED, 0)
            for route in sent.receipt.routes
        ]  # fmt: skip
        assert all(r.accepted_at == ACCEPTED_AT for r in track.recipients)
        assert all(
            r.queued_at is r.pushed_at is r.acknowledged_at is None for r in track.recipients
        )

    async def test_tracking_by_document_id_finds_the_latest_document_with_it(
        self, store: DocumentStore
    ) -> None:
        """A revocation reusing the id is newer than the original, so it is the one shown."""
        sender, recipient = unique("S"), unique("R")
        first = await send(store, a_submission(sender, [recipient], number="9"))
        revoke = a_submission(sender, [recipient], number="9", business_type=BusinessType.REVOKE)
        later = await send(store, revoke, a_receipt(revoke, ACCEPTED_AT + dt.timedelta(days=1)))
        found = await store.track(document_uuid=None, document_id=first.receipt.document_id)
        assert found is not None
        assert found.document_uuid == later.receipt.document_uuid
        assert await store.track(document_uuid=None, document_id=f"{sender},x") is None
        assert await store.track(document_uuid=str(uuid.uuid4()), document_id=None) is None

    # --- pushing and acknowledging --------------------------------------------------------------

    async def test_a_push_returns_the_document_and_marks_the_copy_pushed(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """The push item is the stored document; the first push is staged for the ledger."""
        sender, recipient = unique("S"), unique("R")
        sha = sha256_of(b"push")
        await store.store_blob(sender, sha, chunks(b"push"))
        ref = AttachmentRef("tệp.pdf", "application/pdf", 4, sha, "mô tả")
        sent = await send(store, a_submission(sender, [recipient], attachments=(ref,)))
        delivery_id = sent.receipt.routes[0].delivery_id
        item = (await store.begin_pushes([(delivery_id, recipient)]))[0]
        assert isinstance(item, PushItem)
        assert (item.delivery_id, item.document_uuid, item.requested_recipient) == (
            delivery_id,
            sent.receipt.document_uuid,
            recipient,
        )
        assert item.header == sent.submission.header
        assert item.attachments == (ref,)
        assert item.signatures == sent.submission.signatures
        assert item.submitted_at == ACCEPTED_AT
        track = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert track is not None
        (copy,) = track.recipients
        assert (copy.state, copy.push_count) == (DeliveryState.PUSHED, 1)
        assert copy.pushed_at is not None
        staged = await probe.staged(sent.receipt.document_uuid)
        assert without_time(staged[len(sent.events) :]) == [
            LedgerEvent(
                "delivery",
                sent.receipt.document_uuid,
                sent.receipt.document_id,
                ACCEPTED_AT,
                from_agency=sender,
                to_agency=recipient,
                data={"delivery": delivery_id, "event": "pushed"},
            )
        ]
        assert staged[-1].occurred_at == copy.pushed_at  # the ledger's time is the push's

    async def test_a_second_push_counts_without_a_second_ledger_event(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """push_count grows, pushed_at keeps the first push's time, and only the first push is
        a first hand-over (what the delivery latency histogram observes)."""
        sender, recipient = unique("S"), unique("R")
        sent = await send(store, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        pushed = (await store.begin_pushes([(delivery_id, recipient)]))[0]
        assert isinstance(pushed, PushItem)
        assert pushed.first_handover
        first = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        again = (await store.begin_pushes([(delivery_id, recipient)]))[0]
        assert isinstance(again, PushItem)
        assert not again.first_handover
        second = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert first is not None
        assert second is not None
        assert second.recipients[0].push_count == 2
        assert second.recipients[0].pushed_at == first.recipients[0].pushed_at
        assert len(await probe.staged(sent.receipt.document_uuid)) == len(sent.events) + 1

    async def test_a_push_past_the_limit_dead_letters_the_copy_instead(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """With max_pushes 2 the third attempt is not a push: the copy becomes dead-lettered
        (MAX_PUSHES_EXCEEDED, ledgered), Track shows it, and it is never pushed again."""
        sender, recipient = unique("S"), unique("R")
        sent = await send(store, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        for _ in range(2):
            assert isinstance(
                (await store.begin_pushes([(delivery_id, recipient)], 2))[0], PushItem
            )
        dead = (await store.begin_pushes([(delivery_id, recipient)], 2))[0]
        assert isinstance(dead, DeadLetter)
        assert (dead.delivery_id, dead.reason, dead.push_count) == (
            delivery_id,
            MAX_PUSHES_EXCEEDED,
            2,
        )
        assert (await store.begin_pushes([(delivery_id, recipient)], 2))[0] is None
        assert (await store.begin_pushes([(delivery_id, recipient)]))[0] is None
        track = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert track is not None
        (copy,) = track.recipients
        assert (copy.state, copy.push_count, copy.dead_letter_reason) == (
            DeliveryState.DEAD_LETTERED,
            2,
            MAX_PUSHES_EXCEEDED,
        )
        assert copy.dead_lettered_at == dead.dead_lettered_at
        staged = await probe.staged(sent.receipt.document_uuid)
        assert without_time(staged[len(sent.events) + 1 :]) == [
            LedgerEvent(
                "delivery",
                sent.receipt.document_uuid,
                sent.receipt.document_id,
                ACCEPTED_AT,
                from_agency=sender,
                to_agency=recipient,
                data={
                    "delivery": delivery_id,
                    "event": "dead_lettered",
                    "reason": MAX_PUSHES_EXCEEDED,
                    "push_count": 2,
                },
            )
        ]

    async def test_nobody_else_gets_a_copy_pushed(self, store: DocumentStore) -> None:
        """Another recipient's or an unknown delivery is None, and the copy is untouched."""
        sender, recipient, other = unique("S"), unique("R"), unique("R")
        sent = await send(store, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        assert (await store.begin_pushes([(delivery_id, other)]))[0] is None
        assert (await store.begin_pushes([(str(uuid.uuid4()), recipient)]))[0] is None
        track = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert track is not None
        assert (track.recipients[0].state, track.recipients[0].push_count) == (
            DeliveryState.ACCEPTED,
            0,
        )

    async def test_acknowledging_is_recorded_once_and_stops_further_pushes(
        self, store: DocumentStore, probe: Probe
    ) -> None:
        """The first acknowledgement's time is kept; a copy never pushed counts as pushed then."""
        sender, recipient = unique("S"), unique("R")
        sent = await send(store, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        now = ACCEPTED_AT + dt.timedelta(minutes=5)
        first = await store.acknowledge(delivery_id, recipient, now)
        assert first is not None
        assert (first.acknowledged_at, first.already_acknowledged) == (now, False)
        again = await store.acknowledge(delivery_id, recipient, now + dt.timedelta(hours=1))
        assert again is not None
        assert (again.acknowledged_at, again.already_acknowledged) == (now, True)
        assert (await store.begin_pushes([(delivery_id, recipient)]))[0] is None
        track = await store.track(document_uuid=sent.receipt.document_uuid, document_id=None)
        assert track is not None
        (copy,) = track.recipients
        assert (copy.state, copy.acknowledged_at, copy.pushed_at, copy.push_count) == (
            DeliveryState.ACKNOWLEDGED,
            now,
            now,
            0,
        )
        staged = await probe.staged(sent.receipt.document_uuid)
        assert staged[len(sent.events) :] == [
            LedgerEvent(
                "receipt",
                sent.receipt.document_uuid,
                sent.receipt.document_id,
                now,
                from_agency=sender,
                to_agency=recipient,
                data={"delivery": delivery_id},
            )
        ]

    async def test_only_the_recipient_can_acknowledge_its_copy(self, store: DocumentStore) -> None:
        """Another agency or an unknown delivery gets None."""
        sender, recipient = unique("S"), unique("R")
        sent = await send(store, a_submission(sender, [recipient]))
        delivery_id = sent.receipt.routes[0].delivery_id
        assert await store.acknowledge(delivery_id, sender, ACCEPTED_AT) is None
        assert await store.acknowledge(str(uuid.uuid4()), recipient, ACCEPTED_AT) is None

    async def test_a_delivery_record_shows_the_copy_and_keeps_the_first_receipt(
        self, store: DocumentStore
    ) -> None:
        """delivery() describes one copy; the first transport receipt saved is the one kept."""
        sender, recipient = unique("S"), unique("R")
        sha = sha256_of(b"record")
        await store.store_blob(sender, sha, chunks(b"record"))
        ref = AttachmentRef("a.pdf", "application/pdf", 6, sha)
        sent = await send(store, a_submission(sender, [recipient], attachments=(ref,)))
        delivery_id = sent.receipt.routes[0].delivery_id
        assert await store.delivery(str(uuid.uuid4())) is None
        record = await store.delivery(delivery_id)
        assert record is not None
        assert (record.document_uuid, record.sender, record.recipient) == (
            sent.receipt.document_uuid,
            sender,
            recipient,
        )
        assert (record.header, record.attachments) == (sent.submission.header, (ref,))
        assert (record.acknowledged_at, record.transport_receipt) == (None, None)
        now = ACCEPTED_AT + dt.timedelta(minutes=1)
        await store.acknowledge(delivery_id, recipient, now)
        acknowledged = await store.delivery(delivery_id)
        assert acknowledged is not None
        first = hub_receipt(acknowledged)
        second = dataclasses.replace(first, signature=b"another")
        assert await store.save_transport_receipt(delivery_id, first) == first.to_json()
        assert await store.save_transport_receipt(delivery_id, second) == first.to_json()
        after = await store.delivery(delivery_id)
        assert after is not None
        assert (after.acknowledged_at, after.transport_receipt) == (now, first.to_json())

    async def test_a_delivery_id_that_is_not_a_uuid_is_a_value_error(
        self, store: DocumentStore
    ) -> None:
        """The handlers validate ids first; the stores do not guess."""
        with pytest.raises(ValueError, match="UUID"):
            await store.begin_pushes([("delivery-1", unique("R"))])
        with pytest.raises(ValueError, match="UUID"):
            await store.acknowledge("delivery-1", unique("R"), ACCEPTED_AT)


class FakeProbe:
    def __init__(self, store: FakeDocumentStore) -> None:
        self._store = store

    async def staged(self, document_uuid: str) -> list[LedgerEvent]:
        return [
            dataclasses.replace(e, data=dict(e.data))
            for e in self._store.ledger
            if e.doc_uuid == document_uuid
        ]

    async def outbox(self, delivery_ids: Sequence[str]) -> list[OutboxMessage]:
        return [m for m in self._store.outbox if m.delivery_id in delivery_ids]


class PostgresProbe:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def staged(self, document_uuid: str) -> list[LedgerEvent]:
        rows = await self._pool.fetch(
            """
            SELECT entry_type, doc_uuid, document_id, occurred_at, from_agency, to_agency,
                   data::text AS data
            FROM ledger.pending WHERE doc_uuid = $1 ORDER BY id
            """,
            uuid.UUID(document_uuid),
        )
        return [
            LedgerEvent(
                r["entry_type"],
                str(r["doc_uuid"]),
                r["document_id"],
                r["occurred_at"],
                r["from_agency"],
                r["to_agency"],
                json.loads(r["data"]),
            )
            for r in rows
        ]

    async def outbox(self, delivery_ids: Sequence[str]) -> list[OutboxMessage]:
        rows = await self._pool.fetch(
            """
            SELECT routing_key, message_id, message_type, payload, delivery_id
            FROM exchange.outbox WHERE delivery_id = ANY($1::uuid[]) ORDER BY id
            """,
            [uuid.UUID(d) for d in delivery_ids],
        )
        return [
            OutboxMessage(
                r["routing_key"],
                r["message_id"],
                r["message_type"],
                r["payload"],
                str(r["delivery_id"]),
            )
            for r in rows
        ]


class TestFakeDocumentStore(DocumentStoreContract):
    @pytest.fixture
    def fake(self) -> FakeDocumentStore:
        return FakeDocumentStore()

    @pytest.fixture
    def store(self, fake: FakeDocumentStore) -> DocumentStore:
        return fake

    @pytest.fixture
    def probe(self, fake: FakeDocumentStore) -> Probe:
        return FakeProbe(fake)


@pytest.mark.integration
class TestPostgresDocumentStore(DocumentStoreContract):
    @pytest.fixture
    def store(self, pool: asyncpg.Pool) -> DocumentStore:
        return PostgresDocumentStore(pool)

    @pytest.fixture
    def probe(self, pool: asyncpg.Pool) -> Probe:
        return PostgresProbe(pool)

    async def test_the_push_limit_names_the_last_failed_hand_over_the_lock_did_not_read(
        self, store: DocumentStore, probe: Probe, pool: asyncpg.Pool
    ) -> None:
        """Two copies dead-lettered in one claim, one whose hand-overs to a peer hub failed:
        its ledger event names that failure (its code, its detail by hash), the other's none.
        The copies' lock reads no failure columns: they are read for the copies the push limit
        dead-letters only."""
        for lock in (LOCK_PUBLISHED_SQL, LOCK_FORWARDED_SQL):  # both of _LOCK_SQL, as all locks
            async with pool.acquire() as conn:
                columns = {a.name for a in (await conn.prepare(lock)).get_attributes()}
            assert {"last_failure_reason", "last_failure_detail"} & columns == set()
        sender, failed, plain = unique("S"), unique("R"), unique("R")
        sent = await send(store, a_submission(sender, [failed, plain]))
        routes = {r.effective_recipient: r.delivery_id for r in sent.receipt.routes}
        cause = HandoverFailure("PEER_RECEIPT_INVALID", "hub national's receipt: SIGNER_MISMATCH")
        await PostgresFederationStore(pool).handover_failed({routes[failed]: cause})
        claims = [(routes[failed], failed), (routes[plain], plain)]
        for _ in range(2):
            assert all(isinstance(item, PushItem) for item in await store.begin_pushes(claims, 2))
        dead = await store.begin_pushes(claims, 2)
        assert [(d.delivery_id, d.reason) for d in dead if isinstance(d, DeadLetter)] == [
            (routes[failed], MAX_PUSHES_EXCEEDED),
            (routes[plain], MAX_PUSHES_EXCEEDED),
        ]
        staged = await probe.staged(sent.receipt.document_uuid)
        dead_lettered = {
            e.data["delivery"]: e.data for e in staged if e.data.get("event") == "dead_lettered"
        }
        assert dead_lettered[routes[failed]] == {
            "delivery": routes[failed],
            "event": "dead_lettered",
            "reason": MAX_PUSHES_EXCEEDED,
            "push_count": 2,
            "cause": "PEER_RECEIPT_INVALID",
            "cause_detail_sha256": text_commitment(cause.detail),
        }
        assert "cause" not in dead_lettered[routes[plain]]
