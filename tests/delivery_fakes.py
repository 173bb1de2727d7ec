"""In-memory resends of dead letters (`AdminStore`) and re-routing of mail for closed agencies
(`RerouteStore`), faithful to PostgresAdminStore and PostgresRerouteStore, over the tables a
FakeDocumentStore and its FakeLifecycleStore keep.

tests/integration/contract/test_lifecycle_machine.py drives the same use cases over these and
over Postgres.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.exchange.domain import delivery
from services.exchange.domain.delivery import LedgerEvent
from services.exchange.domain.model import DeliveryState
from services.exchange.service_layer.admin_ports import (
    Administrator,
    DeadLetterCopy,
    DocumentHops,
    DocumentQuery,
    DocumentSummary,
    FoundDocument,
    Resend,
)
from services.exchange.service_layer.lifecycle_ports import PageCursor
from tests.fakes import FakeDelivery, FakeDocumentStore
from tests.lifecycle_fakes import FakeLifecycleStore


@dataclass(slots=True)
class FakeAdminStore:
    """Dead letters and their audited resends. Document search is PostgresAdminStore's alone
    (its filters are SQL); this fake refuses it rather than answer differently."""

    documents: FakeDocumentStore
    # exchange.delivery_resend, in insertion order.
    resent: list[Resend] = field(default_factory=list)

    async def search(
        self, query: DocumentQuery, after: PageCursor | None, limit: int
    ) -> list[FoundDocument]:
        raise NotImplementedError("search is tested against Postgres only")

    def _summary(self, document_uuid: str) -> DocumentSummary:
        document = self.documents.documents[document_uuid]
        return DocumentSummary(
            document_uuid=document.uuid,
            document_id=document.document_id,
            code_number=document.header.code_number,
            code_notation=document.header.code_notation,
            subject=document.header.subject,
            sender=document.sender,
            submitted_at=document.submitted_at,
            business_type=document.business_type,
        )

    async def dead_letters(
        self, agency: str | None, after: PageCursor | None, limit: int, *, peer: str | None = None
    ) -> list[DeadLetterCopy]:
        copies = [
            DeadLetterCopy(
                delivery_id=d.id,
                document=self._summary(d.document_uuid),
                requested_recipient=d.requested_recipient,
                effective_recipient=d.recipient,
                reason=d.dead_letter_reason,
                dead_lettered_at=d.dead_lettered_at,
                push_count=d.push_count,
            )
            for d in self.documents.deliveries.values()
            # The fakes route nothing to a peer hub: no copy has a next hop.
            if peer is None
            and d.state is DeliveryState.DEAD_LETTERED
            and d.dead_lettered_at is not None
            and (
                agency is None
                or agency in (d.recipient, self.documents.documents[d.document_uuid].sender)
            )
        ]
        copies.sort(key=lambda c: (c.dead_lettered_at, c.delivery_id), reverse=True)
        if after is not None:
            key = (after.created_at, after.item_id)
            copies = [c for c in copies if (c.dead_lettered_at, c.delivery_id) < key]
        return copies[:limit]

    async def resend(
        self, delivery_id: str, administrator: Administrator, reason: str, now: dt.datetime
    ) -> Resend | None:
        copy = self.documents.deliveries.get(str(uuid.UUID(delivery_id)))
        if copy is None:
            return None
        decided = delivery.resend(
            self.documents.ref(copy),
            copy.copy(),
            administrator_serial=administrator.serial,
            administrator_subject=administrator.subject,
            reason=reason,
            now=now,
        )
        assert copy.dead_lettered_at is not None  # a dead letter has its time
        resend = Resend(
            delivery_id=delivery_id,
            resent_at=now,
            administrator=administrator,
            reason=reason,
            dead_lettered_at=copy.dead_lettered_at,
            dead_letter_reason=copy.dead_letter_reason,
            push_count=copy.push_count,
        )
        copy.apply(decided.copy)
        self.resent.append(resend)
        self.documents.queue_delivery(copy)
        self.documents.ledger.extend(decided.events)
        return resend

    async def trace_id(self, document_uuid: str) -> str:
        return ""  # the fakes record no traces

    async def hops(self, document_uuid: str) -> DocumentHops | None:
        return None  # the fakes have no peer hubs

    async def resends(self, delivery_ids: Sequence[str]) -> list[Resend]:
        wanted = {str(uuid.UUID(d)) for d in delivery_ids}
        return sorted(
            (r for r in self.resent if r.delivery_id in wanted), key=lambda r: r.resent_at
        )


def _waiting(copy: FakeDelivery) -> bool:
    return copy.state in delivery.PENDING_STATES


@dataclass(slots=True)
class FakeRerouteStore:
    lifecycle: FakeLifecycleStore

    @property
    def _documents(self) -> FakeDocumentStore:
        return self.lifecycle.documents

    async def waiting_agencies(self) -> list[str]:
        copies = {d.recipient for d in self._documents.deliveries.values() if _waiting(d)}
        notices = {n.agency for n in self.lifecycle.notices.values() if n.acknowledged_at is None}
        return sorted(copies | notices)

    async def reroute(
        self, olds: Sequence[str], new: str, hub: str | None, now: dt.datetime
    ) -> dict[str, tuple[int, int]]:
        """The rules of the Postgres store without its order (one old code after another); the
        fakes have no peer hubs, so `hub` is unused."""
        return {old: await self._reroute_one(old, new, now) for old in olds}

    async def _reroute_one(self, old: str, new: str, now: dt.datetime) -> tuple[int, int]:
        deliveries = self._documents.deliveries
        held = {d.document_uuid for d in deliveries.values() if d.recipient == new}
        movable = sorted(
            (
                d
                for d in deliveries.values()
                if d.recipient == old and _waiting(d) and d.document_uuid not in held
            ),
            key=lambda d: uuid.UUID(d.id).bytes,
        )
        events: list[LedgerEvent] = []
        for copy in movable:
            copy.recipient = new
            copy.apply(
                dataclasses.replace(
                    copy.copy(),
                    state=DeliveryState.QUEUED,
                    queued_at=now,
                    push_count=0,
                    pushed_at=None,
                )
            )
            self._documents.queue_delivery(copy)
            ref = self._documents.ref(copy)
            events.append(
                LedgerEvent(
                    entry_type="routing",
                    doc_uuid=ref.document_uuid,
                    document_id=ref.document_id,
                    occurred_at=now,
                    from_agency=ref.sender,
                    to_agency=new,
                    data={"delivery": copy.id, "event": "rerouted", "closed_recipient": old},
                )
            )
        self._documents.ledger.extend(events)
        notices = [
            n
            for n in self.lifecycle.notices.values()
            if n.agency == old and n.acknowledged_at is None
        ]
        for notice in notices:
            notice.agency = new
            self.lifecycle.queue_notice(notice.id, new)
        return len(movable), len(notices)

    async def dead_letter_waiting(self, agency: str, reason: str, now: dt.datetime) -> int:
        changed = 0
        for copy in self._documents.deliveries.values():
            if copy.recipient != agency:
                continue
            decided = delivery.dead_letter(self._documents.ref(copy), copy.copy(), reason, now)
            if decided is not None:
                copy.apply(decided.copy)
                self._documents.ledger.extend(decided.events)
                changed += 1
        return changed
