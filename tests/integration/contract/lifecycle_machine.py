"""A hypothesis state machine of the exchange's lifecycle, over any pair of adapters.

Agencies submit, the relay queues, DMSs are pushed or fetch, acknowledge and report statuses,
senders recall, update and replace, recipients agree to or refuse recalls, the push limit
dead-letters copies that an administrator resends, and recipients are merged or closed (the
re-routing sweep follows). Every step drives the real use cases (ExchangeHandlers,
LifecycleHandlers, AdminHandlers, Rerouter) over the adapters of a `World`, predicts the answer
with lifecycle_model.py and compares; after every step the invariants are checked against what
the adapters store:

- Track, the copies' statuses and recalls, and every agency's pending items equal the model's
  (so statuses reach the sender in the order they happened, notices in the order they were made);
- every copy's ledger events, replayed, give the state and recipient Track shows (every state
  change has its event), with at most one `receipt` (a copy is acknowledged at most once), and
  no push after the copy was withdrawn (a recalled copy is never pushed again).

Only the directory (another service) is a fake in both worlds; the agencies of one run are
fresh codes, so runs over one database do not see each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.common.errors import DomainError, NotFoundError, RejectedError, ValidationError
from services.common.identity import Caller, Role
from services.directory.domain.codes import code_problem
from services.exchange.domain.delivery import LedgerEvent, NotDeadLetteredError
from services.exchange.domain.model import (
    MAX_PUSHES_EXCEEDED,
    BusinessType,
    DeliveryState,
    Submission,
)
from services.exchange.domain.statuses import (
    ARRIVAL_STATUS_ID,
    RECALL_STATUS_ID,
    IllegalTransitionError,
    RecallState,
    StaffInfo,
    StatusCode,
    StatusConflictError,
    StatusReport,
)
from services.exchange.domain.withdrawal import CopyWithdrawnError
from services.exchange.service_layer.admin import AdminHandlers
from services.exchange.service_layer.admin_ports import AdminStore
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.lifecycle import (
    REMOVED_REASON,
    REPLACED_REASON,
    UPDATED_REASON,
    LifecycleHandlers,
)
from services.exchange.service_layer.lifecycle_ports import (
    ItemKind,
    LifecycleStore,
    RecallNoticeItem,
    StatusNoticeItem,
)
from services.exchange.service_layer.ports import DeadLetter, DocumentStore, PushItem
from services.exchange.service_layer.reroute import RECIPIENT_CLOSED, Rerouter, RerouteStore
from tests.fakes import FakeDirectoryLookup
from tests.integration.contract.conftest import unique
from tests.integration.contract.lifecycle_model import (
    Copy,
    Document,
    Notice,
    Refused,
    Status,
    admit,
)
from tests.integration.contract.test_document_store_contract import Probe
from tests.unit.exchange.builders import NOW, header

T = TypeVar("T")

START = NOW
# Small, so that copies reach their dead letter within a run.
MAX_PUSHES = 1
MAX_DOCUMENTS = 8
MAX_AGENCIES = 8
ADMIN = Caller(Role.ADMIN, subject="CN=quản trị viên", serial="5a7e")
# Rules act as a stranger (to be refused) once in four times.
ONE_IN_FOUR = st.integers(0, 3).map(lambda n: n == 3)
REPORTABLE = sorted(set(StatusCode) - {StatusCode.RECALL_REQUESTED})
REFUSALS: dict[str, type[DomainError]] = {
    "not_found": NotFoundError,
    "illegal": IllegalTransitionError,
    "conflict": StatusConflictError,
}


class Clock:
    """The time every use case and store sees: one second later at each step."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self) -> None:
        self.now += dt.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class World:
    """The adapters a run drives, and how to read what they staged."""

    documents: DocumentStore
    lifecycle: LifecycleStore
    admin: AdminStore
    reroute: RerouteStore
    probe: Probe
    # Publishes every outbox row and marks the copies queued (the relay, without a broker).
    relay: Callable[[], Coroutine[Any, Any, None]]


class Loop:
    """One event loop for a whole hypothesis run: the rules are synchronous."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(
        self,
        loop: Loop,
        make_world: Callable[[Clock], World],
        seen: Counter[str],
        *,
        check_everything: bool,
    ) -> None:
        """With `check_everything`, every step checks every document and agency; without it
        (Postgres, some 30 times slower), only those whose model the step changed, and the end
        of each run all of them."""
        super().__init__()
        self.loop = loop
        self.check_everything = check_everything
        # What the stores were last found to agree with: documents and pending items.
        self.checked: dict[str, object] = {}
        # What the runs reached, so that the test can tell a search that missed a path.
        self.seen = seen
        self.clock = Clock()
        self.world = make_world(self.clock)
        # Fresh codes for each run that order as they were made (hypothesis replays a run's
        # choices and must find the same state).
        self.run_code = unique("")
        self.codes = itertools.count(10)
        self.senders = [self.code("S") for _ in range(2)]
        self.recipients = [self.code("R") for _ in range(4)]
        self.directory = FakeDirectoryLookup(*self.senders, *self.recipients)
        exchange = ExchangeHandlers(
            self.world.documents,
            self.directory,
            code_problem,
            Limits(max_pushes=MAX_PUSHES),
            clock=self.clock,
        )
        self.exchange = exchange
        self.lifecycle = LifecycleHandlers(exchange, self.world.lifecycle, clock=self.clock)
        self.admin = AdminHandlers(
            self.world.admin, self.world.documents, self.world.lifecycle, clock=self.clock
        )
        self.rerouter = Rerouter(self.world.reroute, self.directory, clock=self.clock)
        self.documents: list[Document] = []
        # The DocumentIds a sender may update or replace: their versions, oldest first.
        self.chains: dict[str, list[Document]] = {}
        self.notices: list[Notice] = []
        # Closed recipients and the agency that took their mail ("" when none did).
        self.closed: dict[str, str] = {}
        self.numbers = itertools.count(1)
        self.reports = itertools.count(1)

    # --- helpers ----------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coroutine)

    def code(self, kind: str) -> str:
        return f"{kind}{self.run_code}{next(self.codes)}"

    def refused(self, coroutine: Coroutine[Any, Any, object], error: type[Exception]) -> None:
        try:
            outcome = self.run(coroutine)
        except error:
            self.seen[f"refused {error.__name__}"] += 1
            return
        raise AssertionError(f"expected {error.__name__}, got {outcome!r}")

    @property
    def copies(self) -> list[Copy]:
        return [c for d in self.documents for c in d.copies]

    @property
    def agencies(self) -> list[str]:
        return [*self.senders, *self.recipients]

    def open_recipients(self) -> list[str]:
        return [r for r in self.recipients if r not in self.closed]

    def answering(self, copy: Copy) -> str | None:
        """Who reports for the copy: its recipient, or the agency that took a closed one's
        mail."""
        if copy.recipient not in self.closed:
            return copy.recipient
        return self.closed[copy.recipient] or None

    def pick(self, data: st.DataObject, likely: Callable[[Copy], bool]) -> Copy:
        """A copy, mostly one the rule has something to do with (`likely`): the others, for
        the refusals."""
        copies = self.copies
        fitting = [c for c in copies if likely(c)]
        if fitting and not data.draw(ONE_IN_FOUR, label="any copy"):
            copies = fitting
        return data.draw(st.sampled_from(copies), label="copy")

    def stranger(self, data: st.DataObject, *besides: str) -> str:
        others = [a for a in self.agencies if a not in besides and a not in self.closed]
        return data.draw(st.sampled_from(others))

    def notify(self, copy: Copy, status: Status) -> None:
        self.notices.append(
            Notice(
                copy.sender,
                ItemKind.STATUS,
                copy.delivery_id,
                copy.document_uuid,
                status.recorded_at,
                status.reported_by,
                status_id=status.status_id,
            )
        )

    def submitted(self, submission: Submission, business_type: BusinessType) -> Document:
        """Submits through LifecycleHandlers and checks the receipt: one copy per recipient."""
        header = submission.header
        result = self.run(self.lifecycle.submit(header.sender, submission))
        receipt = result.receipt
        assert not result.replayed
        assert receipt.accepted_at == self.clock.now
        effective = [self.closed.get(code, code) for code in header.recipients]
        assert [(r.requested_recipient, r.effective_recipient) for r in receipt.routes] == list(
            zip(header.recipients, effective, strict=True)
        )
        document = Document(
            receipt.document_uuid,
            receipt.document_id,
            header.sender,
            business_type,
            receipt.accepted_at,
            [
                Copy(r.delivery_id, receipt.document_uuid, header.sender, code, to)
                for r, code, to in zip(receipt.routes, header.recipients, effective, strict=True)
            ],
        )
        self.documents.append(document)
        return document

    def recall_copy(self, copy: Copy, reason: str) -> tuple[RecallState, bool]:
        """The model of request_recall for one copy: (state, already requested)."""
        now = self.clock.now
        if copy.recall is not None:
            self.seen["recall again"] += 1
            return copy.recall, True
        copy.recall_reason = reason
        if copy.received:
            copy.recall = RecallState.PENDING
            copy.statuses.append(
                Status(RECALL_STATUS_ID, StatusCode.RECALL_REQUESTED, now, now, copy.sender)
            )
        else:
            self.seen["withdrawn before receipt"] += 1
            copy.recall = RecallState.WITHDRAWN_BEFORE_RECEIPT
            copy.state = DeliveryState.WITHDRAWN
            copy.dead_letter_reason = ""
        if copy.received or copy.pushed:  # its DMS holds it, or may (pushed, even before a resend)
            self.notices.append(
                Notice(
                    copy.recipient,
                    ItemKind.RECALL,
                    copy.delivery_id,
                    copy.document_uuid,
                    now,
                    copy.sender,
                    withdrawn=not copy.received,
                )
            )
        return copy.recall, False

    def sweep(self) -> None:
        """The re-routing sweep, run and predicted: the waiting mail of every closed recipient
        moves to its successor, unless the successor has a copy of the document already; what
        cannot move is dead-lettered."""
        self.run(self.rerouter.sweep())
        for old, new in self.closed.items():
            for document in self.documents:
                copy = document.copy_for(old)
                if copy is None or not copy.waiting:
                    continue
                if new and document.copy_for(new) is None:
                    self.seen["copy rerouted"] += 1
                    copy.recipient = new
                    copy.state = DeliveryState.QUEUED
                    copy.queued = True
                    copy.push_count = 0
                    copy.pushed = False  # never handed to the new recipient
                    copy.unpublished += 1
                else:
                    self.seen["copy of a closed recipient dead-lettered"] += 1
                    copy.state = DeliveryState.DEAD_LETTERED
                    copy.dead_letter_reason = RECIPIENT_CLOSED
            if new:
                for notice in self.notices:
                    if notice.agency == old and not notice.acknowledged:
                        notice.agency = new

    # --- rules --------------------------------------------------------------------------------

    @precondition(lambda self: len(self.documents) < MAX_DOCUMENTS)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        """A new document. Now and then it names closed recipients too: one merged into
        another is routed there (the copy keeps the code written), one closed outright is
        refused, and two codes that now reach one agency are refused."""
        sender = data.draw(st.sampled_from(self.senders), label="sender")
        codes = self.open_recipients()
        if len(self.closed) > 0 and data.draw(ONE_IN_FOUR, label="closed codes too"):
            codes = self.recipients
        recipients = data.draw(
            st.lists(st.sampled_from(codes), min_size=1, max_size=3, unique=True),
            label="recipients",
        )
        submission = Submission(
            f"c-{next(self.numbers)}",
            header(recipients, sender=sender, number=str(next(self.numbers))),
            (),
        )
        effective = [self.closed.get(code, code) for code in recipients]
        if "" in effective:
            self.refused(self.lifecycle.submit(sender, submission), RejectedError)
            return
        if len(set(effective)) < len(effective):
            self.refused(self.lifecycle.submit(sender, submission), ValidationError)
            return
        if effective != recipients:
            self.seen["routed to a successor"] += 1
        document = self.submitted(submission, BusinessType.NEW)
        self.chains[document.document_id] = [document]

    @precondition(lambda self: any(c.unpublished for c in self.copies))
    @rule()
    def relay(self) -> None:
        self.run(self.world.relay())
        for copy in self.copies:
            if copy.unpublished and not copy.queued:
                copy.queued = True
                if copy.state is DeliveryState.ACCEPTED:
                    copy.state = DeliveryState.QUEUED
            copy.unpublished = 0

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), pull=st.booleans(), by_stranger=ONE_IN_FOUR)
    def push(self, data: st.DataObject, pull: bool, by_stranger: bool) -> None:
        """A push on the Receive stream, or a pull-mode fetch: to the copy's recipient only,
        only while it waits, dead-lettered at the push limit."""
        copy = self.pick(data, lambda c: c.waiting)
        if copy.recipient in self.closed:
            return  # its DMS can no longer connect
        agency = self.stranger(data, copy.recipient) if by_stranger else copy.recipient
        expected: type[PushItem | DeadLetter] | None = None
        if agency == copy.recipient and copy.waiting:
            expected = DeadLetter if copy.push_count >= MAX_PUSHES else PushItem
        if pull:
            fetch = self.lifecycle.fetch_delivery(agency, copy.delivery_id)
            if expected is not PushItem:
                self.refused(fetch, NotFoundError)
                outcome: PushItem | DeadLetter | None = None
            else:
                outcome = self.run(fetch)
        else:
            outcome = self.run(self.exchange.begin_push(copy.delivery_id, agency))
            assert type(outcome) is expected if expected else outcome is None, outcome
        self.seen[f"push {getattr(expected, '__name__', None)} pull={pull}"] += 1
        if expected is DeadLetter:
            if isinstance(outcome, DeadLetter):
                assert (outcome.push_count, outcome.reason) == (MAX_PUSHES, MAX_PUSHES_EXCEEDED)
            copy.state = DeliveryState.DEAD_LETTERED
            copy.dead_letter_reason = MAX_PUSHES_EXCEEDED
        elif expected is PushItem:
            assert isinstance(outcome, PushItem)
            assert (outcome.delivery_id, outcome.document_uuid) == (
                copy.delivery_id,
                copy.document_uuid,
            )
            assert outcome.requested_recipient == copy.requested
            assert outcome.first_handover is not copy.pushed
            copy.push_count += 1
            copy.pushed = True
            copy.state = DeliveryState.PUSHED

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), by_stranger=ONE_IN_FOUR)
    def acknowledge(self, data: st.DataObject, by_stranger: bool) -> None:
        """Only the recipient acknowledges its copy, once; a withdrawn copy not at all; a dead
        letter late (its DMS had it after all)."""
        dead = [c for c in self.copies if c.state is DeliveryState.DEAD_LETTERED]
        if len(dead) > 0 and data.draw(ONE_IN_FOUR, label="a dead letter"):
            copy = data.draw(st.sampled_from(dead), label="copy")
        else:
            copy = self.pick(
                data, lambda c: not c.received and c.state is not DeliveryState.WITHDRAWN
            )
        if copy.recipient in self.closed:
            return
        agency = self.stranger(data, copy.recipient) if by_stranger else copy.recipient
        call = self.lifecycle.acknowledge(agency, copy.delivery_id)
        if agency != copy.recipient:
            self.refused(call, NotFoundError)
            return
        if copy.state is DeliveryState.WITHDRAWN:
            self.refused(call, CopyWithdrawnError)
            return
        outcome = self.run(call)
        self.seen[f"acknowledged {copy.state}"] += 1
        if copy.acknowledged_at is not None:
            assert (outcome.acknowledged_at, outcome.already_acknowledged) == (
                copy.acknowledged_at,
                True,
            )
            return
        now = self.clock.now
        assert (outcome.acknowledged_at, outcome.already_acknowledged) == (now, False)
        copy.acknowledged_at = now
        copy.state = DeliveryState.ACKNOWLEDGED
        copy.dead_letter_reason = ""
        arrived = Status(ARRIVAL_STATUS_ID, StatusCode.ARRIVED, now, now, copy.recipient)
        copy.statuses.append(arrived)
        self.notify(copy, arrived)

    def report(self, copy: Copy, agency: str, status: Status) -> None:
        report = StatusReport(
            status.status_id,
            status.code,
            status.occurred_at,
            "Văn bản sai thể thức",
            StaffInfo("Văn thư", "Nguyễn Văn A"),
        )
        call = self.lifecycle.report_status(agency, copy.delivery_id, report)
        try:
            if agency != self.answering(copy):
                raise Refused("not_found")
            duplicate = admit(copy, status)
        except Refused as refused:
            self.seen[f"status {status.code} refused {refused.kind}"] += 1
            self.refused(call, REFUSALS[refused.kind])
            return
        outcome = self.run(call)
        self.seen[f"status {status.code} {'repeated' if duplicate else 'recorded'}"] += 1
        if duplicate is not None:
            assert outcome.already_recorded
            entry = outcome.entry
            assert (entry.report.status_id, entry.code, entry.occurred_at, entry.recorded_at) == (
                duplicate.status_id,
                duplicate.code,
                duplicate.occurred_at,
                duplicate.recorded_at,
            )
            return
        assert not outcome.already_recorded
        assert outcome.entry.reported_by == agency
        if agency != copy.recipient:
            self.seen["status for a closed recipient"] += 1
        copy.statuses.append(status)
        if status.code is StatusCode.RECALL_AGREED:
            copy.recall = RecallState.AGREED
            copy.state = DeliveryState.WITHDRAWN
        elif status.code is StatusCode.RECALL_REFUSED:
            copy.recall = RecallState.REFUSED
        self.notify(copy, status)

    @precondition(lambda self: self.documents)
    @rule(
        data=st.data(),
        code=st.sampled_from(REPORTABLE),
        minutes_ago=st.integers(0, 3),
        by_stranger=ONE_IN_FOUR,
    )
    def report_status(
        self, data: st.DataObject, code: StatusCode, minutes_ago: int, by_stranger: bool
    ) -> None:
        """A status from the copy's recipient (or the agency that took a closed one's mail),
        stamped up to three minutes back, so that reports arrive out of order."""
        copy = self.pick(data, lambda c: c.received and c.state is not DeliveryState.WITHDRAWN)
        answering = self.answering(copy)
        if answering is None:
            return
        agency = self.stranger(data, answering) if by_stranger else answering
        now = self.clock.now
        status = Status(
            f"dms-{next(self.reports)}", code, now - dt.timedelta(minutes=minutes_ago), now, agency
        )
        self.report(copy, agency, status)

    @precondition(lambda self: any(c.recall is RecallState.PENDING for c in self.copies))
    @rule(data=st.data(), agree=st.booleans())
    def answer_recall(self, data: st.DataObject, agree: bool) -> None:
        """The recipient (or the agency that took a closed one's mail) agrees to a pending
        recall (15: its copy is withdrawn) or refuses it (16)."""
        copy = self.pick(data, lambda c: c.recall is RecallState.PENDING)
        agency = self.answering(copy)
        if agency is None:
            return
        now = self.clock.now
        code = StatusCode.RECALL_AGREED if agree else StatusCode.RECALL_REFUSED
        self.report(copy, agency, Status(f"dms-{next(self.reports)}", code, now, now, agency))

    @precondition(
        lambda self: any(
            not s.status_id.startswith("docaxis:") for c in self.copies for s in c.statuses
        )
    )
    @rule(data=st.data(), other_code=st.booleans())
    def repeat_status(self, data: st.DataObject, other_code: bool) -> None:
        """A DMS repeats a report it made (the first one stands), or reuses its id for another
        report (a conflict)."""
        made = [
            (c, s)
            for c in self.copies
            for s in c.statuses
            if not s.status_id.startswith("docaxis:") and self.answering(c) == s.reported_by
        ]
        if not made:
            return
        copy, status = data.draw(st.sampled_from(made), label="status")
        if other_code:
            code = (
                StatusCode.PROCESSING
                if status.code is not StatusCode.PROCESSING
                else StatusCode.ASSIGNED
            )
            status = dataclasses.replace(status, code=code)
        self.report(
            copy, status.reported_by, dataclasses.replace(status, recorded_at=self.clock.now)
        )

    @precondition(lambda self: any(c.recall is None for c in self.copies))
    @rule(data=st.data(), by_stranger=ONE_IN_FOUR)
    def recall(self, data: st.DataObject, by_stranger: bool) -> None:
        """The sender recalls some copies (every one when it names none); nobody else can."""
        # Mostly a document with a received copy to ask about, else one with copies to recall.
        live = [d for d in self.documents if any(c.recall is None for c in d.copies)]
        asking = [d for d in live if any(c.recall is None and c.received for c in d.copies)]
        if len(asking) > 0 and data.draw(ONE_IN_FOUR, label="any document"):
            asking = []
        document = data.draw(st.sampled_from(asking or live or self.documents), label="document")
        if asking:  # the received copies only: the others would be withdrawn at once
            codes = [c.recipient for c in document.copies if c.received and c.recall is None]
            recipients = data.draw(st.lists(st.sampled_from(codes), min_size=1, unique=True))
        elif data.draw(ONE_IN_FOUR, label="every copy"):
            recipients = []  # none named: every copy
        else:
            codes = [c.recipient for c in document.copies]
            recipients = data.draw(st.lists(st.sampled_from(codes), min_size=1, unique=True))
        reason = "Thu hồi văn bản điện tử"
        if by_stranger:
            agency = self.stranger(data, document.sender)
            call = self.lifecycle.recall(agency, document.uuid, reason, recipients)
            self.refused(call, NotFoundError)
            return
        outcomes = self.run(
            self.lifecycle.recall(document.sender, document.uuid, reason, recipients)
        )
        expected = [
            (c.recipient, c.delivery_id, *self.recall_copy(c, reason))
            for c in document.copies
            if not recipients or c.recipient in recipients
        ]
        assert [
            (o.recipient, o.delivery_id, o.state, o.already_requested) for o in outcomes
        ] == expected

    def supersede(self, previous: Document, reasons: list[tuple[str, list[str]]]) -> None:
        for reason, recipients in reasons:
            for copy in previous.copies:
                if copy.recipient in recipients:
                    self.recall_copy(copy, reason)

    @precondition(lambda self: self.chains and len(self.documents) < MAX_DOCUMENTS)
    @rule(
        data=st.data(),
        kind=st.sampled_from([BusinessType.UPDATE, BusinessType.REPLACE, BusinessType.REVOKE]),
    )
    def update_replace_or_revoke(self, data: st.DataObject, kind: BusinessType) -> None:
        """An update (same DocumentId, a complete new recipient list), a replacement (a new
        document) or a revoke package (same DocumentId; the edXML way to recall): the copies of
        the latest version it acts on get a recall, the update's dropped recipients too."""
        document_id = data.draw(st.sampled_from(sorted(self.chains)), label="document_id")
        chain = self.chains[document_id]
        previous = chain[-1]
        recipients = data.draw(
            st.lists(st.sampled_from(self.open_recipients()), min_size=1, max_size=3, unique=True),
            label="recipients",
        )
        number = document_id.rsplit(",", 1)[1].split("/")[0]
        if kind is BusinessType.REPLACE:
            number = str(next(self.numbers))  # a new document
        acting = dataclasses.replace(
            header(recipients, sender=previous.sender, number=number),
            business_type=kind,
            response_for=(document_id,),
        )
        new = self.submitted(Submission(f"c-{next(self.numbers)}", acting, ()), kind)
        self.seen[f"submitted {kind.name}"] += 1
        copies = [c.recipient for c in previous.copies]
        kept = [code for code in copies if code in recipients]
        if kind is BusinessType.REPLACE:
            self.chains[new.document_id] = [new]
            reasons = [(REPLACED_REASON.format(document_id=new.document_id), kept)]
        elif kind is BusinessType.UPDATE:
            chain.append(new)
            removed = [code for code in copies if code not in recipients]
            reasons = [
                (UPDATED_REASON.format(document_id=new.document_id), kept),
                (REMOVED_REASON.format(document_id=new.document_id), removed),
            ]
        else:  # a revoke is not a version: the next update still acts on `previous`
            reasons = [(acting.subject, kept)]
        self.supersede(previous, reasons)

    @precondition(lambda self: any(c.state is DeliveryState.DEAD_LETTERED for c in self.copies))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """An administrator resends a dead letter (only a dead letter); the sweep follows, as it
        would within its interval, should its recipient have closed meanwhile."""
        copy = self.pick(data, lambda c: c.state is DeliveryState.DEAD_LETTERED)
        call = self.admin.resend(ADMIN, copy.delivery_id, "DMS đã khắc phục sự cố")
        if copy.state is not DeliveryState.DEAD_LETTERED:
            self.refused(call, NotDeadLetteredError)
            return
        resent = self.run(call)
        self.seen[f"resent {copy.dead_letter_reason}"] += 1
        assert (resent.push_count, resent.dead_letter_reason) == (
            copy.push_count,
            copy.dead_letter_reason,
        )
        copy.state = DeliveryState.QUEUED
        copy.push_count = 0
        copy.dead_letter_reason = ""
        copy.unpublished += 1
        self.sweep()

    @precondition(lambda self: len(self.open_recipients()) > 2 and len(self.closed) < 2)
    @rule(data=st.data(), successor=st.sampled_from(["none", "fresh", "existing"]))
    def reorganise(self, data: st.DataObject, successor: str) -> None:
        """A recipient closes: merged into a new agency or an existing one, or closed outright.
        An agency that took another's mail stays open (no chains: the sweep's order among
        several closed codes is not defined)."""
        takers = set(self.closed.values())
        closing = [r for r in self.open_recipients() if r not in takers]
        if not closing:
            return
        code = data.draw(st.sampled_from(closing), label="closing")
        new = ""
        if successor == "fresh" and len(self.agencies) < MAX_AGENCIES:
            new = self.code("N")
            self.directory.open(new)
            self.recipients.append(new)
        elif successor == "existing":
            new = data.draw(
                st.sampled_from([r for r in self.open_recipients() if r != code]), label="successor"
            )
        self.directory.close(code, *([new] if new else []))
        self.closed[code] = new
        self.sweep()

    @precondition(lambda self: any(not n.acknowledged for n in self.notices))
    @rule(data=st.data())
    def take_notice(self, data: st.DataObject) -> None:
        """An agency lists what waits for it and takes its oldest notice: the one made first."""
        agency = data.draw(
            st.sampled_from([a for a in self.agencies if a not in self.closed]), label="agency"
        )
        items, _ = self.run(self.lifecycle.list_pending(agency, 0, ""))
        listed = [i for i in items if i.kind is not ItemKind.DELIVERY]
        waiting = [n for n in self.notices if n.agency == agency and not n.acknowledged]
        if not listed:
            assert not waiting
            return
        first = min(n.created_at for n in waiting)
        item = self.run(self.lifecycle.fetch_notice(agency, listed[0].item_id))
        candidates = [n for n in waiting if n.created_at == first]
        if isinstance(item, StatusNoticeItem):
            key = (ItemKind.STATUS, item.delivery_id, item.entry.report.status_id, False)
        else:
            assert isinstance(item, RecallNoticeItem)
            key = (ItemKind.RECALL, item.delivery_id, "", item.withdrawn)
        matches = [
            n for n in candidates if (n.kind, n.delivery_id, n.status_id, n.withdrawn) == key
        ]
        assert matches, (item, candidates)
        match = matches[0]
        self.seen[f"notice taken {match.kind}"] += 1
        outcome = self.run(self.lifecycle.acknowledge_notice(agency, listed[0].item_id))
        assert not outcome.already_acknowledged
        match.acknowledged = True

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def stores_agree_with_the_model(self) -> None:
        self.run(self._check(everything=self.check_everything))
        self.clock.tick()  # the next step happens a second later

    def teardown(self) -> None:
        self.run(self._check(everything=True))

    async def _check(self, *, everything: bool) -> None:
        for document in self.documents:
            modelled = repr(document)
            if everything or self.checked.get(document.uuid) != modelled:
                await self._check_document(document)
                self.checked[document.uuid] = modelled
        for agency in self.agencies:
            expected = self._pending(agency)
            if everything or self.checked.get(agency) != expected:
                await self._check_pending(agency, expected)
                self.checked[agency] = expected

    async def _check_document(self, document: Document) -> None:
        track = await self.world.documents.track(document_uuid=document.uuid, document_id=None)
        assert track is not None
        shown = [
            (
                r.delivery_id,
                r.requested_recipient,
                r.effective_recipient,
                r.state,
                r.push_count,
                r.acknowledged_at,
                r.dead_lettered_at is not None,
                r.dead_letter_reason,
            )
            for r in track.recipients
        ]
        modelled = [
            (
                c.delivery_id,
                c.requested,
                c.recipient,
                c.state,
                c.push_count,
                c.acknowledged_at,
                c.state is DeliveryState.DEAD_LETTERED,
                c.dead_letter_reason,
            )
            for c in document.copies
        ]
        assert shown == modelled, (shown, modelled)
        lifecycles = await self.world.lifecycle.lifecycles(document.uuid)
        for copy in document.copies:
            stored = lifecycles[copy.delivery_id]
            history = [(e.code, e.report.status_id) for e in stored.statuses]
            expected = [(s.code, s.status_id) for s in copy.history()]
            assert history == expected, (history, expected)
            assert (stored.recall, stored.recall_reason) == (copy.recall, copy.recall_reason), (
                stored,
                copy,
            )
        events = await self.world.probe.staged(document.uuid)
        for copy, row in zip(document.copies, track.recipients, strict=True):
            own = [e for e in events if e.data.get("delivery") == copy.delivery_id]
            replayed = replay(own)
            assert (replayed.state, replayed.recipient) == (row.state, row.effective_recipient), (
                row,
                own,
            )
            assert replayed.receipts == (1 if copy.received else 0), own
            ledgered = Counter(
                s.code for s in copy.statuses if s.code is not StatusCode.RECALL_REQUESTED
            )
            assert replayed.statuses == ledgered, (replayed.statuses, ledgered)

    def _pending(self, agency: str) -> Counter[tuple[ItemKind, str, dt.datetime, str]]:
        """What waits for `agency`, as (kind, document, since, from)."""
        by_uuid = {d.uuid: d for d in self.documents}
        expected = Counter(
            (ItemKind.DELIVERY, c.document_uuid, by_uuid[c.document_uuid].submitted_at, c.sender)
            for c in self.copies
            if c.recipient == agency and c.waiting
        )
        expected.update(
            (n.kind, n.document_uuid, n.created_at, n.source)
            for n in self.notices
            if n.agency == agency and not n.acknowledged
        )
        return expected

    async def _check_pending(
        self, agency: str, expected: Counter[tuple[ItemKind, str, dt.datetime, str]]
    ) -> None:
        pending = await self.world.lifecycle.pending(agency, None, 1000)
        times = [p.created_at for p in pending]
        assert times == sorted(times), pending
        listed = Counter((p.kind, p.document_uuid, p.created_at, p.sender) for p in pending)
        assert listed == expected, (agency, listed, expected)


@dataclass(slots=True)
class Replayed:
    """A copy as its ledger events tell it."""

    state: DeliveryState | None = None
    recipient: str = ""
    receipts: int = 0
    statuses: Counter[StatusCode] = dataclasses.field(default_factory=Counter)


def replay(events: list[LedgerEvent]) -> Replayed:
    """Folds one copy's events, in the order they were staged, into its state; fails on a push
    after the copy was withdrawn."""
    copy = Replayed()
    for event in events:
        kind = (event.entry_type, event.data.get("event"))
        if event.entry_type == "routing":
            copy.recipient = event.to_agency
            copy.state = DeliveryState.QUEUED if kind[1] == "rerouted" else DeliveryState.ACCEPTED
        elif kind == ("delivery", "queued"):
            if copy.state is DeliveryState.ACCEPTED:
                copy.state = DeliveryState.QUEUED
        elif kind == ("delivery", "pushed"):
            assert copy.state is not DeliveryState.WITHDRAWN, "a withdrawn copy was pushed"
            copy.state = DeliveryState.PUSHED
        elif kind == ("delivery", "dead_lettered"):
            copy.state = DeliveryState.DEAD_LETTERED
        elif kind == ("delivery", "resent"):
            copy.state = DeliveryState.QUEUED
        elif event.entry_type == "receipt":
            copy.receipts += 1
            copy.state = DeliveryState.ACKNOWLEDGED
        elif kind == ("revoke", "withdrawn_before_receipt"):
            copy.state = DeliveryState.WITHDRAWN
        elif event.entry_type == "status":
            code = StatusCode(event.data["code"])
            copy.statuses[code] += 1
            if code is StatusCode.RECALL_AGREED:
                copy.state = DeliveryState.WITHDRAWN
    return copy


def bound_machine(
    loop: Loop, make_world: Callable[[Clock], World], seen: Counter[str], *, check_everything: bool
) -> type[LifecycleMachine]:
    """The machine over one loop and one kind of world, as hypothesis wants it: a class it
    instantiates for each run."""

    class Bound(LifecycleMachine):
        def __init__(self) -> None:
            super().__init__(loop, make_world, seen, check_everything=check_everything)

    return Bound
