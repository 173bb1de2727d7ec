"""Hand-written in-memory fakes of our ports, faithful to the Postgres adapters' semantics.

tests/integration/contract/ runs the same tests against these fakes and the real adapters, so a
fake that drifts from its adapter fails there first.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from docaxis.exchange.v1 import events_pb2

from docaxis_client.trust.bindings import Bindings, CertificateBinding
from docaxis_client.trust.receipts import TransportReceipt
from services.bootstrap.directory_view import exchange_view
from services.directory.domain.model import Agency, AgencyKind
from services.directory.domain.reorganisation import Reorganisation, resolve
from services.directory.domain.signature_policy import ANY_DOCUMENT_TYPE, SignaturePolicy
from services.directory.service_layer.ports import AgencyExistsError, StaleAgencyError
from services.exchange.domain import delivery
from services.exchange.domain.addresses import Resolution
from services.exchange.domain.delivery import Copy, CopyRef, LedgerEvent
from services.exchange.domain.model import (
    AttachmentRef,
    BusinessType,
    DeliveryState,
    Header,
    Receipt,
    Route,
    Signature,
    Submission,
)
from services.exchange.domain.quota import check_upload_quota
from services.exchange.domain.signature_rules import DEFAULT_RULES, SignatureRules
from services.exchange.domain.statuses import RecallState
from services.exchange.domain.verification import Verification
from services.exchange.service_layer.ports import (
    Acknowledgement,
    AgencyView,
    AttachmentsGoneError,
    DeadLetter,
    DeliveryRecord,
    DocumentTrack,
    DuplicateConsignmentError,
    DuplicateDocumentError,
    NewSubmission,
    PushItem,
    RecipientTrack,
    StoredSubmission,
    StoreRefusal,
    SubmitLookups,
)
from services.exchange.service_layer.upload_ports import UploadOffsetError, UploadState

DELIVERY_MESSAGE_TYPE = events_pb2.DeliveryQueued.DESCRIPTOR.full_name


class ConstraintViolation(ValueError):
    """What a fake raises where Postgres would refuse the write with an integrity error (a primary
    key, foreign key or check constraint that the caller, not the user, broke)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- directory ----------------------------------------------------------------------------------


class FakeAgencies:
    """The `Agencies` port over a dict. Versions grow like the Postgres sequence; codes order as
    in the test database's C collation (code point order)."""

    def __init__(self, agencies: Iterable[Agency] = ()) -> None:
        self.rows: dict[str, Agency] = {}
        self._versions = itertools.count(1)
        self.reorganisations: list[Reorganisation] = []
        # ledger.pending rows the store staged: the `data` of each `directory` event.
        self.ledger: list[dict[str, object]] = []
        self.seed(*agencies)

    def seed(self, *agencies: Agency) -> None:
        """Stores agencies as `add` would, for arranging a test without awaiting."""
        for agency in agencies:
            self._insert(agency)

    async def get(self, code: str) -> Agency | None:
        return self.rows.get(code)

    async def get_many(self, codes: Sequence[str]) -> dict[str, Agency]:
        return {code: self.rows[code] for code in codes if code in self.rows}

    async def add(self, agency: Agency) -> Agency:
        return self._insert(agency)

    async def list(
        self, *, parent_code: str | None, open_on: dt.date | None, after_code: str, limit: int
    ) -> list[Agency]:
        if limit < 0:
            raise ConstraintViolation("LIMIT must not be negative")
        rows = [
            agency
            for code, agency in sorted(self.rows.items())
            if code > after_code
            and (parent_code is None or agency.parent_code == parent_code)
            and (open_on is None or agency.valid_to is None or agency.valid_to >= open_on)
        ]
        return rows[:limit]

    async def record_reorganisation(
        self, reorganisation: Reorganisation, closed: Sequence[Agency]
    ) -> tuple[Reorganisation, builtins.list[Agency]]:
        for agency in closed:
            current = self.rows.get(agency.code)
            if current is None or current.version != agency.version:
                raise StaleAgencyError(agency.code)
            if agency.valid_to is not None and agency.valid_to < agency.valid_from:
                raise ConstraintViolation("valid_to before valid_from (check valid_range)")
        if not reorganisation.old_codes:
            raise ConstraintViolation("a reorganisation closes at least one code (check)")
        updated = [dataclasses.replace(a, version=next(self._versions)) for a in closed]
        for agency in updated:
            self.rows[agency.code] = agency
        recorded = dataclasses.replace(reorganisation, id=len(self.reorganisations) + 1)
        self.reorganisations.append(recorded)
        self.ledger.append(
            {
                "event": "reorganised",
                "reorganisation": recorded.id,
                "kind": recorded.kind.value,
                "effective_date": recorded.effective_date.isoformat(),
                "old_codes": list(recorded.old_codes),
                "new_codes": list(recorded.new_codes),
                "versions": {a.code: a.version for a in updated},
            }
        )
        return recorded, updated

    async def changes(self, since_version: int, limit: int) -> builtins.list[Agency]:
        if limit < 0:
            raise ConstraintViolation("LIMIT must not be negative")
        rows = sorted(
            (a for a in self.rows.values() if a.version > since_version), key=lambda a: a.version
        )
        return rows[:limit]

    async def latest_version(self) -> int:
        return max((a.version for a in self.rows.values()), default=0)

    def _insert(self, agency: Agency) -> Agency:
        if agency.code in self.rows:
            raise AgencyExistsError(agency.code)
        if agency.parent_code is not None and agency.parent_code not in self.rows:
            raise ConstraintViolation(f"unknown parent {agency.parent_code} (foreign key)")
        if agency.valid_to is not None and agency.valid_to < agency.valid_from:
            raise ConstraintViolation("valid_to before valid_from (check valid_range)")
        stored = dataclasses.replace(agency, version=next(self._versions))
        self.rows[stored.code] = stored
        self.ledger.append({"event": "registered", "code": stored.code, "version": stored.version})
        return stored


class FakeHubRoutes:
    """The `HubRoutes` port over dicts, storing pulled agencies into a FakeAgencies."""

    def __init__(self, agencies: FakeAgencies) -> None:
        self.agencies = agencies
        self.table: dict[str, str] = {}
        self.since: dict[str, int] = {}

    async def routes(self) -> dict[str, str]:
        return dict(self.table)

    async def set_route(self, pattern: str, hub_code: str | None, updated_by: str) -> None:
        if hub_code is None:
            self.table.pop(pattern, None)
        else:
            self.table[pattern] = hub_code
        self.agencies.ledger.append({"event": "hub_route", "pattern": pattern, "hub": hub_code})

    async def peer_since(self, hub_code: str) -> int:
        return self.since.get(hub_code, 0)

    async def apply_peer_page(
        self, hub_code: str, agencies: Sequence[Agency], next_since: int
    ) -> int:
        changed = 0
        for agency in agencies:
            current = self.agencies.rows.get(agency.code)
            if current is not None and current.served_by is None:
                continue  # served here: never replaced by a peer's record
            pulled = dataclasses.replace(
                agency,
                parent_code=agency.parent_code
                if agency.parent_code in self.agencies.rows
                else None,
                served_by=hub_code,
            )
            if current is not None and current == pulled and current.served_by == hub_code:
                continue
            self.agencies.rows[agency.code] = dataclasses.replace(
                pulled, version=next(self.agencies._versions)
            )
            changed += 1
        self.since[hub_code] = next_since
        return changed


# --- exchange -----------------------------------------------------------------------------------


class FakeDirectoryLookup:
    """The exchange's `DirectoryLookup`: agencies as routing sees them on the day of sending."""

    def __init__(self, *open_codes: str) -> None:
        self.agencies: dict[str, AgencyView] = {}
        self.closed_on: dict[str, dt.date] = {}
        self.not_yet_valid: set[str] = set()
        # Set to make every lookup fail, as GrpcDirectoryLookup does when the directory is down.
        self.failure: Exception | None = None
        self.policies: dict[str, SignatureRules] = {}
        self.bindings: dict[str, CertificateBinding] = {}
        self.open(*open_codes)

    def open(self, *codes: str) -> None:
        for code in codes:
            self.agencies[code] = AgencyView(code, open=True)

    def close(self, code: str, *successors: str, on: dt.date = dt.date(2025, 6, 30)) -> None:
        """Closed after `on` (its last valid day), mail following `successors`."""
        self.agencies[code] = AgencyView(code, open=False, successor_codes=successors)
        self.closed_on[code] = on
        self.not_yet_valid.discard(code)

    def register_ahead(self, code: str) -> None:
        """Registered, valid only from a day after any sending day (not yet open)."""
        self.agencies[code] = AgencyView(code, open=False)
        self.not_yet_valid.add(code)

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        if self.failure is not None:
            raise self.failure
        return {code: self.agencies[code] for code in dict.fromkeys(codes) if code in self.agencies}

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        """The bindings set in `bindings` (by key) among these keys."""
        return {key: self.bindings[key] for key in spki_sha256 if key in self.bindings}

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
        """The agency's rules set in `policies` (by code), else the deployment default."""
        return self.policies.get(agency_code, DEFAULT_RULES)

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        """What the directory's resolution answers for agencies in these states on `on_date`."""
        if self.failure is not None:
            raise self.failure
        records: dict[str, Agency] = {}
        for code, view in self.agencies.items():
            if view.open:
                records[code] = Agency(code, code, AgencyKind.OTHER, dt.date(2019, 3, 12))
            elif code in self.not_yet_valid:
                ahead = on_date + dt.timedelta(days=1)
                records[code] = Agency(code, code, AgencyKind.OTHER, ahead)
            else:
                last = min(self.closed_on.get(code, on_date), on_date - dt.timedelta(days=1))
                records[code] = Agency(
                    code,
                    code,
                    AgencyKind.OTHER,
                    dt.date(2000, 1, 1),
                    valid_to=last,
                    successor_codes=view.successor_codes,
                )
        return {
            code: exchange_view(resolve(code, records, on_date)) for code in dict.fromkeys(codes)
        }


@dataclass(frozen=True, slots=True)
class FakeDocument:
    uuid: str
    document_id: str
    sender: str
    consignment_id: str
    fingerprint: str
    business_type: BusinessType
    header: Header
    attachments: tuple[AttachmentRef, ...]
    signatures: tuple[Signature, ...]
    submitted_at: dt.datetime
    verification: Verification | None = None
    envelope: AttachmentRef | None = None


@dataclass(slots=True)
class FakeDelivery:
    id: str
    document_uuid: str
    position: int
    requested_recipient: str
    recipient: str
    state: DeliveryState
    accepted_at: dt.datetime
    queued_at: dt.datetime | None = None
    pushed_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    push_count: int = 0
    transport_receipt: bytes | None = None
    dead_lettered_at: dt.datetime | None = None
    dead_letter_reason: str = ""
    recall: RecallState | None = None

    def copy(self) -> Copy:
        """The copy as the rules of domain/delivery.py see it."""
        return Copy(
            state=self.state,
            push_count=self.push_count,
            queued_at=self.queued_at,
            pushed_at=self.pushed_at,
            acknowledged_at=self.acknowledged_at,
            dead_lettered_at=self.dead_lettered_at,
            dead_letter_reason=self.dead_letter_reason,
            recall=self.recall,
        )

    def apply(self, copy: Copy) -> None:
        """Stores what a rule decided."""
        self.state = copy.state
        self.push_count = copy.push_count
        self.queued_at = copy.queued_at
        self.pushed_at = copy.pushed_at
        self.acknowledged_at = copy.acknowledged_at
        self.dead_lettered_at = copy.dead_lettered_at
        self.dead_letter_reason = copy.dead_letter_reason
        self.recall = copy.recall


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """An exchange.outbox row: what the relay will publish to the recipient's queue."""

    routing_key: str
    message_id: str
    message_type: str
    payload: bytes
    delivery_id: str


@dataclass(frozen=True, slots=True)
class FakeBlob:
    size: int
    # (start offset, bytes) in upload order, as exchange.blob_chunk stores them.
    chunks: tuple[tuple[int, bytes], ...]

    @property
    def content(self) -> bytes:
        return b"".join(data for _, data in self.chunks)


@dataclass(slots=True)
class FakeDocumentStore:
    """The exchange's `DocumentStore` in memory. Each method commits all or nothing, like the
    one transaction per method of PostgresDocumentStore; `clock` stands in for the database's
    now()."""

    clock: Callable[[], dt.datetime] = utc_now
    documents: dict[str, FakeDocument] = field(default_factory=dict)
    deliveries: dict[str, FakeDelivery] = field(default_factory=dict)
    blobs: dict[str, FakeBlob] = field(default_factory=dict)
    # (sha256, agency): who proved they hold a blob.
    blob_owners: set[tuple[str, str]] = field(default_factory=set)
    # exchange.upload rows, and each upload's committed chunks (exchange.blob_chunk).
    uploads: dict[str, UploadState] = field(default_factory=dict)
    upload_chunks: dict[str, list[bytes]] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    # ledger.pending: events staged with the change they record.
    ledger: list[LedgerEvent] = field(default_factory=list)

    async def find_by_consignment(
        self, sender: str, consignment_id: str
    ) -> StoredSubmission | None:
        document = next(
            (
                d
                for d in self.documents.values()
                if d.sender == sender and d.consignment_id == consignment_id
            ),
            None,
        )
        if document is None:
            return None
        receipt = Receipt(
            document_uuid=document.uuid,
            document_id=document.document_id,
            consignment_id=consignment_id,
            accepted_at=document.submitted_at,
            routes=tuple(
                Route(d.requested_recipient, d.recipient, d.id)
                for d in self._deliveries_of(document.uuid)
            ),
        )
        return StoredSubmission(receipt, document.fingerprint)

    async def submit_lookups(
        self,
        sender: str,
        files: Sequence[AttachmentRef],
        consignment_id: str,
        contents: Collection[str],
    ) -> SubmitLookups:
        unowned = await self.unowned_attachments(sender, files)
        held = {f.sha256 for i, f in enumerate(files) if i not in unowned}
        return SubmitLookups(
            unowned=unowned,
            contents={sha256: self.blobs[sha256].content for sha256 in set(contents) & held},
            earlier=await self.find_by_consignment(sender, consignment_id),
        )

    async def unowned_attachments(
        self, owner: str, attachments: Sequence[AttachmentRef]
    ) -> list[int]:
        return [
            index
            for index, attachment in enumerate(attachments)
            if (attachment.sha256, owner) not in self.blob_owners
            or self.blobs[attachment.sha256].size != attachment.size
        ]

    async def store_submissions(self, batch: Sequence[NewSubmission]) -> list[StoreRefusal | None]:
        # Postgres stores a batch in one transaction, or each on its own if one is refused:
        # either way the outcomes are those of storing them one by one, in order.
        outcomes: list[StoreRefusal | None] = []
        for item in batch:
            try:
                self._store_submission(
                    item.submission,
                    item.receipt,
                    item.fingerprint,
                    item.events,
                    item.verification,
                )
            except (DuplicateDocumentError, DuplicateConsignmentError, AttachmentsGoneError) as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def _store_submission(
        self,
        submission: Submission,
        receipt: Receipt,
        fingerprint: str,
        events: Sequence[LedgerEvent],
        verification: Verification | None = None,
    ) -> None:
        header = submission.header
        # Postgres checks the document's unique indexes in creation order: the primary key, then
        # (sender, consignment_id), then the DocumentId of new documents.
        document_uuid = str(uuid.UUID(receipt.document_uuid))
        if document_uuid in self.documents:
            raise DuplicateDocumentError(self._new_document_uuid(receipt.document_id))
        if any(
            d.sender == header.sender and d.consignment_id == submission.consignment_id
            for d in self.documents.values()
        ):
            raise DuplicateConsignmentError
        if header.business_type is BusinessType.NEW and self._new_document_uuid(
            receipt.document_id
        ):
            raise DuplicateDocumentError(self._new_document_uuid(receipt.document_id))
        for attachment in (*submission.attachments, *filter(None, [submission.envelope])):
            if attachment.sha256 not in self.blobs:
                raise AttachmentsGoneError  # the foreign key to exchange.blob
        recipients = [route.effective_recipient for route in receipt.routes]
        if len(set(recipients)) != len(recipients):
            raise ConstraintViolation("two copies for one recipient (one_copy_per_recipient)")
        for route in receipt.routes:
            if str(uuid.UUID(route.delivery_id)) in self.deliveries:
                raise ConstraintViolation(f"delivery {route.delivery_id} exists (primary key)")
        for event in events:
            uuid.UUID(event.doc_uuid)  # the ledger column is a uuid
        # Every check passed: commit.
        self.documents[document_uuid] = FakeDocument(
            uuid=document_uuid,
            document_id=receipt.document_id,
            sender=header.sender,
            consignment_id=submission.consignment_id,
            fingerprint=fingerprint,
            business_type=header.business_type,
            header=header,
            attachments=submission.attachments,
            signatures=submission.signatures,
            submitted_at=receipt.accepted_at,
            verification=verification,
            envelope=submission.envelope,
        )
        for position, route in enumerate(receipt.routes):
            delivery_id = str(uuid.UUID(route.delivery_id))
            self.deliveries[delivery_id] = FakeDelivery(
                id=delivery_id,
                document_uuid=document_uuid,
                position=position,
                requested_recipient=route.requested_recipient,
                recipient=route.effective_recipient,
                state=DeliveryState.ACCEPTED,
                accepted_at=receipt.accepted_at,
            )
            self.queue_delivery(self.deliveries[delivery_id])
        self.ledger.extend(events)

    def queue_delivery(self, copy: FakeDelivery) -> None:
        """Stages the outbox row that queues the copy to its recipient (stage_delivery_messages)."""
        self.outbox.append(
            OutboxMessage(
                routing_key=copy.recipient,
                message_id=copy.id,
                message_type=DELIVERY_MESSAGE_TYPE,
                payload=events_pb2.DeliveryQueued(
                    delivery_id=copy.id,
                    document_uuid=copy.document_uuid,
                    recipient=copy.recipient,
                ).SerializeToString(),
                delivery_id=copy.id,
            )
        )

    def ref(self, delivery: FakeDelivery) -> CopyRef:
        document = self.documents[delivery.document_uuid]
        return CopyRef(
            delivery.id, document.uuid, document.document_id, document.sender, delivery.recipient
        )

    async def begin_pushes(
        self,
        claims: Sequence[tuple[str, str]],
        max_pushes: int | None = None,
        *,
        published: Mapping[str, dt.datetime] | None = None,
    ) -> list[PushItem | DeadLetter | None]:
        now = self.clock()
        items: list[PushItem | DeadLetter | None] = []
        for delivery_id, recipient in claims:
            copy = self.deliveries.get(str(uuid.UUID(delivery_id)))
            if copy is None or copy.recipient != recipient:
                items.append(None)
                continue
            decided = delivery.push(
                self.ref(copy),
                copy.copy(),
                max_pushes=max_pushes,
                now=now,
                published_at=(published or {}).get(delivery_id),
            )
            if decided is None:
                items.append(None)
                continue
            copy.apply(decided.copy)
            self.ledger.extend(decided.events)
            if isinstance(decided, delivery.DeadLettered):
                items.append(DeadLetter(copy.id, copy.dead_letter_reason, now, copy.push_count))
                continue
            document = self.documents[copy.document_uuid]
            items.append(
                PushItem(
                    delivery_id=delivery_id,
                    document_uuid=document.uuid,
                    requested_recipient=copy.requested_recipient,
                    header=document.header,
                    attachments=document.attachments,
                    signatures=document.signatures,
                    submitted_at=document.submitted_at,
                    verification=document.verification,
                    envelope=document.envelope,
                    first_handover=decided.first_handover,
                )
            )
        return items

    async def acknowledge(
        self, delivery_id: str, recipient: str, now: dt.datetime
    ) -> Acknowledgement | None:
        copy = self.deliveries.get(str(uuid.UUID(delivery_id)))
        if copy is None or copy.recipient != recipient:
            return None
        decided = delivery.acknowledge(self.ref(copy), copy.copy(), now)
        copy.apply(decided.copy)
        self.ledger.extend(decided.events)
        return Acknowledgement(decided.acknowledged_at, already_acknowledged=decided.already)

    async def track(
        self, *, document_uuid: str | None, document_id: str | None
    ) -> DocumentTrack | None:
        if document_uuid is not None:
            document = self.documents.get(str(uuid.UUID(document_uuid)))
        else:
            same_id = [d for d in self.documents.values() if d.document_id == document_id]
            document = max(same_id, key=lambda d: d.submitted_at) if same_id else None
        if document is None:
            return None
        return DocumentTrack(
            document_uuid=document.uuid,
            header=document.header,
            attachments=document.attachments,
            submitted_at=document.submitted_at,
            recipients=tuple(
                RecipientTrack(
                    requested_recipient=d.requested_recipient,
                    effective_recipient=d.recipient,
                    delivery_id=d.id,
                    state=d.state,
                    accepted_at=d.accepted_at,
                    queued_at=d.queued_at,
                    pushed_at=d.pushed_at,
                    acknowledged_at=d.acknowledged_at,
                    push_count=d.push_count,
                    dead_lettered_at=d.dead_lettered_at,
                    dead_letter_reason=d.dead_letter_reason,
                )
                for d in self._deliveries_of(document.uuid)
            ),
            verification=document.verification,
            envelope=document.envelope,
        )

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        delivery = self.deliveries.get(str(uuid.UUID(delivery_id)))
        if delivery is None:
            return None
        document = self.documents[delivery.document_uuid]
        return DeliveryRecord(
            delivery_id=delivery_id,
            document_uuid=document.uuid,
            sender=document.sender,
            recipient=delivery.recipient,
            header=document.header,
            attachments=document.attachments,
            acknowledged_at=delivery.acknowledged_at,
            transport_receipt=delivery.transport_receipt,
            state=delivery.state,
        )

    async def save_transport_receipt(self, delivery_id: str, receipt: TransportReceipt) -> bytes:
        delivery = self.deliveries.get(str(uuid.UUID(delivery_id)))
        if delivery is None or delivery.acknowledged_at is None:
            raise ValueError(f"delivery {delivery_id} is not acknowledged")
        if delivery.transport_receipt is None:
            delivery.transport_receipt = receipt.to_json()
        return delivery.transport_receipt

    async def store_blob(
        self, owner: str, sha256: str, chunks: AsyncIterator[bytes], quota: int | None = None
    ) -> None:
        exists = sha256 in self.blobs
        stored: list[tuple[int, bytes]] = []
        offset = 0
        # Nothing is kept until the iterator finishes: an exception here is a rollback.
        async for chunk in chunks:
            if not exists:
                stored.append((offset, bytes(chunk)))
            offset += len(chunk)
        if (sha256, owner) not in self.blob_owners:
            check_upload_quota(owner, self._unused_bytes(owner, sha256), offset, quota)
        if not exists:
            if offset <= 0:
                raise ConstraintViolation("a blob has at least one byte (check size > 0)")
            self.blobs[sha256] = FakeBlob(offset, tuple(stored))
        self.blob_owners.add((sha256, owner))

    async def blob_content(self, sha256: str, max_bytes: int) -> bytes:
        blob = self.blobs.get(sha256)
        content = b"" if blob is None else blob.content
        if len(content) > max_bytes:
            raise ValueError(f"blob {sha256} is larger than {max_bytes} bytes")
        return content

    async def attachment_chunks(
        self, document_uuid: str, sha256: str, offset: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        del document_uuid  # authorised by the caller; content is addressed by hash
        blob = self.blobs.get(sha256)
        if blob is None:
            return
        position = offset
        for start, data in blob.chunks:
            if start + len(data) <= position:
                continue
            yield position, data[position - start :] if position > start else data
            position = start + len(data)

    async def unused_upload_bytes(self, agency: str, except_sha256: str) -> int:
        return self._unused_bytes(agency, except_sha256)

    def _unused_bytes(self, agency: str, except_sha256: str) -> int:
        used = {a.sha256 for d in self.documents.values() for a in d.attachments}
        held = sum(
            self.blobs[sha256].size
            for sha256, owner in self.blob_owners
            if owner == agency and sha256 != except_sha256 and sha256 not in used
        )
        reserved = sum(
            u.size
            for u in self.uploads.values()
            if u.agency == agency and not u.complete and u.sha256 != except_sha256
        )
        return held + reserved

    async def begin_upload(
        self, agency: str, sha256: str, size: int, new_upload_id: str, quota: int | None = None
    ) -> UploadState:
        for state in self.uploads.values():
            if (state.agency, state.sha256, state.size) == (agency, sha256, size) and (
                not state.complete
            ):
                return state
        if size <= 0:
            raise ConstraintViolation("an upload has at least one byte (check size > 0)")
        upload_id = str(uuid.UUID(new_upload_id))
        if upload_id in self.uploads:
            raise ConstraintViolation(f"upload {upload_id} exists (primary key)")
        owned = (sha256, agency) in self.blob_owners and self.blobs[sha256].size == size
        if not owned:
            check_upload_quota(agency, self._unused_bytes(agency, sha256), size, quota)
        state = UploadState(
            upload_id=upload_id,
            agency=agency,
            sha256=sha256,
            size=size,
            committed_size=size if owned else 0,
            completed_at=self.clock() if owned else None,
        )
        self.uploads[upload_id] = state
        self.upload_chunks[upload_id] = []
        return state

    async def upload(self, upload_id: str) -> UploadState | None:
        return self.uploads.get(str(uuid.UUID(upload_id)))

    async def append_chunk(self, upload_id: str, offset: int, data: bytes) -> UploadState:
        key = str(uuid.UUID(upload_id))
        state = self.uploads.get(key)
        if state is None:
            raise KeyError(upload_id)
        if state.complete or state.committed_size != offset or not data:
            raise UploadOffsetError(state)
        if offset + len(data) > state.size:
            raise ConstraintViolation("committed beyond the size (check committed_within_size)")
        self.upload_chunks[key].append(bytes(data))
        state = dataclasses.replace(state, committed_size=offset + len(data))
        self.uploads[key] = state
        return state

    async def upload_content(self, upload_id: str) -> AsyncIterator[bytes]:
        for data in list(self.upload_chunks.get(str(uuid.UUID(upload_id)), [])):
            yield data

    async def complete_upload(self, upload_id: str, now: dt.datetime) -> UploadState:
        key = str(uuid.UUID(upload_id))
        state = self.uploads.get(key)
        if state is None:
            raise KeyError(upload_id)
        if state.complete:
            return state
        if state.committed_size != state.size:
            raise UploadOffsetError(state)
        if state.sha256 not in self.blobs:
            chunks: list[tuple[int, bytes]] = []
            offset = 0
            for data in self.upload_chunks[key]:
                chunks.append((offset, data))
                offset += len(data)
            self.blobs[state.sha256] = FakeBlob(state.size, tuple(chunks))
        else:
            self.upload_chunks[key] = []  # someone stored this content first: keep theirs
        self.blob_owners.add((state.sha256, state.agency))
        state = dataclasses.replace(state, completed_at=now)
        self.uploads[key] = state
        return state

    async def discard_upload(self, upload_id: str) -> None:
        key = str(uuid.UUID(upload_id))
        state = self.uploads.get(key)
        if state is not None and not state.complete:
            del self.uploads[key]
            del self.upload_chunks[key]

    def relay_outbox(self) -> list[OutboxMessage]:
        """What PostgresOutbox.relay_batch does once the broker confirmed: empties the outbox and
        marks the accepted deliveries queued, staging a ledger event for each."""
        relayed, self.outbox = self.outbox, []
        now = self.clock()
        for message in relayed:
            if not message.delivery_id:
                continue  # a notice (tests/lifecycle_fakes.py): no delivery to mark queued
            copy = self.deliveries[message.delivery_id]
            decided = delivery.queued(self.ref(copy), copy.copy(), now)
            if decided is not None:
                copy.apply(decided.copy)
                self.ledger.extend(decided.events)
        return relayed

    def _deliveries_of(self, document_uuid: str) -> list[FakeDelivery]:
        return sorted(
            (d for d in self.deliveries.values() if d.document_uuid == document_uuid),
            key=lambda d: d.position,
        )

    def _new_document_uuid(self, document_id: str) -> str:
        return next(
            (
                d.uuid
                for d in self.documents.values()
                if d.document_id == document_id and d.business_type is BusinessType.NEW
            ),
            "",
        )


class FakeSignaturePolicies:
    """The directory's `SignaturePolicies` port over a dict keyed by (agency, document type)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], SignaturePolicy] = {}
        # ledger.pending: the `directory` events the store staged.
        self.ledger: list[dict[str, object]] = []

    async def find(self, agency_code: str, document_type: int) -> SignaturePolicy | None:
        return self.rows.get((agency_code, document_type)) or self.rows.get(
            (agency_code, ANY_DOCUMENT_TYPE)
        )

    async def save(self, policy: SignaturePolicy) -> SignaturePolicy:
        stored = dataclasses.replace(policy, updated_at=utc_now())
        self.rows[(policy.agency_code, policy.document_type)] = stored
        self.ledger.append(stored.ledger_data())
        return stored
