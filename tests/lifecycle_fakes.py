"""An in-memory `LifecycleStore`, faithful to PostgresLifecycleStore, over a FakeDocumentStore's
documents, deliveries, outbox and ledger (the tables both adapters share).

tests/integration/contract/test_lifecycle_store_contract.py runs the same tests against both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from docaxis.exchange.v1 import events_pb2

from services.common.errors import DomainError
from services.exchange.domain import delivery as domain_delivery
from services.exchange.domain.model import BusinessType, DeliveryState
from services.exchange.domain.notices import (
    NewNotice,
    NoticeFate,
    NoticeLimits,
    Waiting,
    fates,
)
from services.exchange.domain.statuses import (
    RecallState,
    StatusEntry,
    admit,
    ordered,
)
from services.exchange.domain.withdrawal import Sight, recipient_sight
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    DocumentLink,
    ItemKind,
    NoticeItem,
    PageCursor,
    PendingEntry,
    RecallNoticeItem,
    RecallOutcome,
    ReceiptIssuer,
    StatusNoticeItem,
    StatusOutcome,
)
from services.exchange.service_layer.ports import Acknowledgement
from tests.fakes import FakeDelivery, FakeDocument, FakeDocumentStore, OutboxMessage

NOTICE_MESSAGE_TYPE = events_pb2.NoticeQueued.DESCRIPTOR.full_name
_PENDING_STATES = (DeliveryState.ACCEPTED, DeliveryState.QUEUED, DeliveryState.PUSHED)


@dataclass(slots=True)
class FakeNotice:
    id: str
    agency: str
    kind: ItemKind
    delivery_id: str
    status: StatusEntry | None
    created_at: dt.datetime
    pushed_at: dt.datetime | None = None
    push_count: int = 0
    acknowledged_at: dt.datetime | None = None
    # The notice that replaced this one before its agency was handed it (notices.py).
    coalesced_into: str = ""


@dataclass(slots=True)
class FakeRecall:
    """The recall columns of exchange.delivery beside its state (FakeDelivery.recall)."""

    reason: str
    requested_at: dt.datetime
    answered_at: dt.datetime | None = None


@dataclass(slots=True)
class FakeLifecycleStore:
    documents: FakeDocumentStore
    # exchange.delivery_status, by delivery id, in insertion order.
    statuses: dict[str, list[StatusEntry]] = field(default_factory=dict)
    notices: dict[str, FakeNotice] = field(default_factory=dict)
    # The recall columns of exchange.delivery other than its state, by delivery id.
    recalls: dict[str, FakeRecall] = field(default_factory=dict)
    notice_limits: NoticeLimits = field(default_factory=NoticeLimits)
    # The fate of every status notice, in order (what on_notices is told).
    notice_fates: list[NoticeFate] = field(default_factory=list)

    def _status_notice(self, agency: str, delivery_id: str, status: StatusEntry) -> str:
        """As queue_status_notices does: the notice id, "" when suppressed."""
        waiting = [n for n in self.notices.values() if n.agency == agency and not n.acknowledged_at]
        unhanded = frozenset(
            n.delivery_id for n in waiting if n.kind is ItemKind.STATUS and n.pushed_at is None
        )
        (fate,) = fates(
            [NewNotice(agency, delivery_id)],
            {agency: Waiting(len(waiting), unhanded)},
            bound=self.notice_limits.bound,
            coalesce_after=self.notice_limits.coalesce_after,
        )
        self.notice_fates.append(fate)
        if fate is NoticeFate.SUPPRESSED:
            return ""
        notice_id = self._notice(
            agency=agency,
            kind=ItemKind.STATUS,
            delivery_id=delivery_id,
            status=status,
            now=status.recorded_at,
        )
        if fate is NoticeFate.COALESCED:
            for old in waiting:
                if (old.kind, old.delivery_id, old.pushed_at) == (
                    ItemKind.STATUS,
                    delivery_id,
                    None,
                ):
                    old.acknowledged_at = status.recorded_at
                    old.coalesced_into = notice_id
        return notice_id

    def _delivery(self, delivery_id: str) -> FakeDelivery | None:
        return self.documents.deliveries.get(str(uuid.UUID(delivery_id)))

    def _notice(
        self,
        *,
        notice_id: str = "",
        agency: str,
        kind: ItemKind,
        delivery_id: str,
        status: StatusEntry | None,
        now: dt.datetime,
    ) -> str:
        notice_id = notice_id or str(uuid.uuid4())
        self.notices[notice_id] = FakeNotice(notice_id, agency, kind, delivery_id, status, now)
        self.queue_notice(notice_id, agency)
        return notice_id

    def queue_notice(self, notice_id: str, agency: str) -> None:
        """Stages the outbox row that queues the notice to `agency` (stage_notice_messages)."""
        self.documents.outbox.append(
            OutboxMessage(
                routing_key=agency,
                message_id=notice_id,
                message_type=NOTICE_MESSAGE_TYPE,
                payload=events_pb2.NoticeQueued(
                    notice_id=notice_id, agency=agency
                ).SerializeToString(),
                delivery_id="",
            )
        )

    async def record_status(
        self,
        delivery_id: str,
        entry: StatusEntry,
        *,
        recipient: str | None = None,
        notify: str | None = None,
        notify_hub: str | None = None,
    ) -> StatusOutcome | None:
        delivery = self._delivery(delivery_id)
        if delivery is None or delivery.recipient != (recipient or entry.reported_by):
            return None
        history = self.statuses.get(delivery.id, [])
        duplicate = admit(
            history,
            entry,
            received=delivery.acknowledged_at is not None,
            withdrawn=delivery.state is DeliveryState.WITHDRAWN,
            recall=delivery.recall,
        )
        if duplicate is not None:
            return StatusOutcome(duplicate, already_recorded=True)
        # Every check passed: commit.
        self.statuses.setdefault(delivery.id, []).append(entry)
        answered = domain_delivery.answer_recall(delivery.copy(), entry.code)
        if answered != delivery.copy():
            delivery.apply(answered)
            self.recalls[delivery.id].answered_at = entry.recorded_at
        document = self.documents.documents[delivery.document_uuid]
        notice_id = self._status_notice(notify or document.sender, delivery.id, entry)
        self.documents.ledger.append(
            domain_delivery.status_event(self.documents.ref(delivery), entry, notice_id)
        )
        return StatusOutcome(entry, already_recorded=False)

    async def request_recall(
        self,
        document_uuid: str,
        sender: str,
        reason: str,
        recipients: Sequence[str],
        now: dt.datetime,
    ) -> list[RecallOutcome] | None:
        document = self.documents.documents.get(str(uuid.UUID(document_uuid)))
        if document is None or document.sender != sender:
            return None
        outcomes: list[RecallOutcome] = []
        wanted = set(recipients)
        for delivery in self.documents._deliveries_of(document.uuid):
            if wanted and delivery.recipient not in wanted:
                continue
            notice_id = str(uuid.uuid4())
            decided = domain_delivery.recall(
                self.documents.ref(delivery), delivery.copy(), reason, now, notice_id=notice_id
            )
            outcomes.append(
                RecallOutcome(
                    delivery.recipient,
                    delivery.id,
                    decided.recall,
                    already_requested=decided.already,
                )
            )
            if decided.already:
                continue
            delivery.apply(decided.copy)
            self.recalls[delivery.id] = FakeRecall(reason, now)
            if decided.notify_recipient:
                self._notice(
                    notice_id=notice_id,
                    agency=delivery.recipient,
                    kind=ItemKind.RECALL,
                    delivery_id=delivery.id,
                    status=None,
                    now=now,
                )
            if decided.status is not None:
                self.statuses.setdefault(delivery.id, []).append(decided.status)
            self.documents.ledger.extend(decided.events)
        return outcomes

    async def begin_notices(self, claims: Sequence[tuple[str, str]]) -> list[NoticeItem | None]:
        return [self._begin_notice(notice_id, agency) for notice_id, agency in claims]

    def _begin_notice(self, notice_id: str, agency: str) -> NoticeItem | None:
        notice = self.notices.get(str(uuid.UUID(notice_id)))
        if notice is None or notice.agency != agency or notice.acknowledged_at is not None:
            return None
        notice.push_count += 1
        notice.pushed_at = notice.pushed_at or self.documents.clock()
        delivery = self.documents.deliveries[notice.delivery_id]
        document = self.documents.documents[delivery.document_uuid]
        if notice.kind is ItemKind.RECALL:
            recall = self.recalls[delivery.id]
            return RecallNoticeItem(
                notice_id=notice.id,
                document_uuid=document.uuid,
                document_id=document.document_id,
                delivery_id=delivery.id,
                sender=document.sender,
                reason=recall.reason,
                requested_at=recall.requested_at,
                withdrawn=delivery.recall is RecallState.WITHDRAWN_BEFORE_RECEIPT,
            )
        assert notice.status is not None
        return StatusNoticeItem(
            notice_id=notice.id,
            document_uuid=document.uuid,
            document_id=document.document_id,
            delivery_id=delivery.id,
            recipient=delivery.recipient,
            entry=notice.status,
        )

    async def acknowledge_notices(
        self, claims: Sequence[tuple[str, str]], now: dt.datetime
    ) -> list[Acknowledgement | None]:
        results: list[Acknowledgement | None] = []
        for notice_id, agency in claims:
            notice = self.notices.get(str(uuid.UUID(notice_id)))
            if notice is None or notice.agency != agency:
                results.append(None)
                continue
            if notice.acknowledged_at is not None:
                results.append(Acknowledgement(notice.acknowledged_at, already_acknowledged=True))
                continue
            notice.acknowledged_at = now
            notice.pushed_at = notice.pushed_at or now
            results.append(Acknowledgement(now, already_acknowledged=False))
        return results

    async def acknowledge_deliveries(
        self,
        claims: Sequence[tuple[str, str]],
        now: dt.datetime,
        receipts: ReceiptIssuer,
    ) -> list[Acknowledgement | DomainError | None]:
        found = {
            delivery_id: copy
            for delivery_id, _ in claims
            if (copy := self._delivery(delivery_id)) is not None
        }
        group = domain_delivery.acknowledge_group(
            claims,
            {key: (self.documents.ref(copy), copy.copy()) for key, copy in found.items()},
            now,
        )
        for key, decided in group.copies.items():
            found[key].apply(decided)
        self.documents.ledger.extend(group.events)
        for key, ref, arrived in group.arrivals:
            self.statuses.setdefault(found[key].id, []).append(arrived)
            notice_id = self._status_notice(ref.sender, found[key].id, arrived)
            self.documents.ledger.append(domain_delivery.status_event(ref, arrived, notice_id))
        for (key, _), answer in zip(claims, group.answers, strict=True):
            copy = found.get(key)
            acknowledged = isinstance(answer, domain_delivery.Acknowledged)
            if acknowledged and copy is not None and copy.transport_receipt is None:
                record = await self.documents.delivery(copy.id)
                assert record is not None
                receipt = receipts(record)
                copy.transport_receipt = None if receipt is None else receipt.to_json()
        return [
            Acknowledgement(answer.acknowledged_at, answer.already)
            if isinstance(answer, domain_delivery.Acknowledged)
            else answer
            for answer in group.answers
        ]

    async def pending(
        self, agency: str, after: PageCursor | None, limit: int
    ) -> list[PendingEntry]:
        documents = self.documents.documents
        items = [
            PendingEntry(
                ItemKind.DELIVERY,
                d.id,
                d.document_uuid,
                d.accepted_at,
                documents[d.document_uuid].sender,
            )
            for d in self.documents.deliveries.values()
            if d.recipient == agency and d.state in _PENDING_STATES
        ]
        for n in self.notices.values():
            if n.agency != agency or n.acknowledged_at is not None:
                continue
            document = documents[self.documents.deliveries[n.delivery_id].document_uuid]
            # A status notice is from the agency that reported it; a recall, from the sender.
            sender = n.status.reported_by if n.status is not None else document.sender
            items.append(PendingEntry(n.kind, n.id, document.uuid, n.created_at, sender))
        # Postgres orders uuids by their bytes: the order of their lowercase hex text.
        items.sort(key=lambda i: (i.created_at, i.item_id))
        if after is not None:
            items = [
                i for i in items if (i.created_at, i.item_id) > (after.created_at, after.item_id)
            ]
        return items[:limit]

    async def lifecycles(self, document_uuid: str) -> dict[str, DeliveryLifecycle]:
        result: dict[str, DeliveryLifecycle] = {}
        for delivery in self.documents._deliveries_of(str(uuid.UUID(document_uuid))):
            recall = self.recalls.get(delivery.id)
            result[delivery.id] = DeliveryLifecycle(
                delivery_id=delivery.id,
                statuses=tuple(ordered(self.statuses.get(delivery.id, []))),
                recall=delivery.recall,
                recall_reason=recall.reason if recall else "",
                recall_requested_at=recall.requested_at if recall else None,
                recall_answered_at=recall.answered_at if recall else None,
            )
        return result

    def _link(self, document: FakeDocument) -> DocumentLink:
        return DocumentLink(
            document.uuid,
            document.document_id,
            document.sender,
            document.business_type,
            document.submitted_at,
        )

    def _by_time(self, documents: list[FakeDocument]) -> list[DocumentLink]:
        return [self._link(d) for d in sorted(documents, key=lambda d: (d.submitted_at, d.uuid))]

    def _visible(self, document: FakeDocument, agency: str | None) -> bool:
        return (
            agency is None
            or document.sender == agency
            or any(
                d.recipient == agency and recipient_sight(d.state, d.acknowledged_at) is Sight.FULL
                for d in self.documents._deliveries_of(document.uuid)
            )
        )

    async def links(
        self, document_uuid: str, agency: str | None
    ) -> tuple[list[DocumentLink], list[DocumentLink]]:
        document = self.documents.documents.get(str(uuid.UUID(document_uuid)))
        if document is None:
            return [], []
        others = [
            d
            for d in self.documents.documents.values()
            if d.uuid != document.uuid and self._visible(d, agency)
        ]
        answered = [d for d in others if d.document_id in document.header.response_for]
        replies = [d for d in others if document.document_id in d.header.response_for]
        return self._by_time(answered), self._by_time(replies)

    async def versions(self, document_id: str) -> list[DocumentLink]:
        return self._by_time(
            [
                d
                for d in self.documents.documents.values()
                if d.document_id == document_id
                or (d.business_type is BusinessType.UPDATE and document_id in d.header.response_for)
            ]
        )
