"""Lifecycle use cases: business statuses back to the sender, recalls, and pull mode."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Collection, Sequence

import structlog

from docaxis_client.trust.document import parse_document_id
from services.common.clock import Clock, utc_now
from services.common.errors import (
    DomainError,
    FieldViolation,
    NotFoundError,
    ValidationError,
    check_uuid,
    require_uuid,
)
from services.common.group_commit import SIDE_BY_SIDE, GroupCommit
from services.exchange.domain.model import BusinessType, Header, Submission, nfc
from services.exchange.domain.statuses import (
    MAX_DESCRIPTION,
    StatusEntry,
    StatusReport,
    report_problems,
)
from services.exchange.service_layer.handlers import ExchangeHandlers, SubmitResult
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    DocumentLink,
    ItemKind,
    LifecycleStore,
    NoticeItem,
    PageCursor,
    PendingEntry,
    RecallOutcome,
    StatusOutcome,
)
from services.exchange.service_layer.ports import (
    Acknowledgement,
    DeadLetter,
    DocumentTrack,
    PushItem,
)

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 100
# The reasons recalls made on behalf of an update or a replacement give (NĐ 30 wording).
UPDATED_REASON = "Cập nhật: thay bằng văn bản {document_id}"
REMOVED_REASON = "Thu hồi: nơi nhận bị bỏ khi cập nhật bằng văn bản {document_id}"
REPLACED_REASON = "Thay thế bằng văn bản {document_id}"
MAX_PAGE_SIZE = 500
# Items acknowledged in one call (AcknowledgeBatch), and at most in one transaction.
MAX_BATCH = 1000


def _only(outcomes: Sequence[Acknowledgement | DomainError]) -> Acknowledgement:
    (outcome,) = outcomes
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


def encode_page_token(cursor: PageCursor) -> str:
    raw = json.dumps({"t": cursor.created_at.isoformat(), "i": cursor.item_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_page_token(token: str, rpc: str = "ListPending") -> PageCursor:
    """The cursor of a token `encode_page_token` made for the `rpc` listing."""
    invalid = ValidationError(
        "invalid page token", [FieldViolation("page_token", f"not a token from {rpc}")]
    )
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        cursor = PageCursor(dt.datetime.fromisoformat(data["t"]), str(uuid.UUID(data["i"])))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid from None
    if cursor.created_at.tzinfo is None:
        raise invalid
    return cursor


class LifecycleHandlers:
    def __init__(
        self,
        exchange: ExchangeHandlers,
        store: LifecycleStore,
        clock: Clock = utc_now,
    ) -> None:
        self._exchange = exchange
        self._store = store
        self._clock = clock
        self._deliveries: GroupCommit[tuple[str, str], Acknowledgement] = GroupCommit(
            self._commit_deliveries,
            max_items=MAX_BATCH,
            name="acknowledge",
            concurrency=SIDE_BY_SIDE,
        )
        self._notices: GroupCommit[tuple[str, str], Acknowledgement] = GroupCommit(
            self._commit_notices,
            max_items=MAX_BATCH,
            name="acknowledge-notices",
            concurrency=SIDE_BY_SIDE,
        )

    async def acknowledge(self, agency: str, delivery_id: str) -> Acknowledgement:
        """Acknowledges a delivery (see acknowledge_items)."""
        return _only(await self.acknowledge_items(agency, [(ItemKind.DELIVERY, delivery_id)]))

    async def acknowledge_notice(self, agency: str, notice_id: str) -> Acknowledgement:
        return _only(await self.acknowledge_items(agency, [(ItemKind.STATUS, notice_id)]))

    async def acknowledge_items(
        self, agency: str, items: Sequence[tuple[ItemKind, str]]
    ) -> list[Acknowledgement | DomainError]:
        """Acknowledges deliveries and notices (any kind but DELIVERY is a notice), each
        answered on its own: its acknowledgement, or the error that refused it alone.

        Deliveries are group-committed with every other caller's: in one transaction each
        first acknowledgement, its 01 (arrived) at the acknowledgement time with a notice to the
        sender, the hub's transport receipt and their ledger events. Each answer comes only
        once that transaction has committed.
        """
        if len(items) > MAX_BATCH:
            raise ValidationError(
                "too many items", [FieldViolation("items", f"at most {MAX_BATCH} per call")]
            )
        outcomes: list[Acknowledgement | DomainError | None] = [None] * len(items)
        deliveries: list[tuple[int, str]] = []
        notices: list[tuple[int, str]] = []
        for index, (kind, item_id) in enumerate(items):
            field = "delivery_id" if kind is ItemKind.DELIVERY else "notice_id"
            problems: list[FieldViolation] = []
            check_uuid(problems, field, item_id)
            if problems:
                outcomes[index] = ValidationError(f"invalid {field}", problems)
            else:
                (deliveries if kind is ItemKind.DELIVERY else notices).append((index, item_id))
        delivering = [(item_id, agency) for _, item_id in deliveries]
        noticing = [(item_id, agency) for _, item_id in notices]
        if delivering and noticing:
            delivered, noticed = await asyncio.gather(
                self._deliveries.submit(delivering), self._notices.submit(noticing)
            )
        else:
            # A stream's acknowledgements are nearly always of one kind: the one group commit
            # awaited in this task, without two tasks and a gather per call.
            delivered = await self._deliveries.submit(delivering) if delivering else []
            noticed = await self._notices.submit(noticing) if noticing else []
        for (index, _), outcome in zip(
            [*deliveries, *notices], [*delivered, *noticed], strict=True
        ):
            outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    async def _commit_deliveries(
        self, claims: Sequence[tuple[str, str]]
    ) -> list[Acknowledgement | DomainError]:
        results = await self._store.acknowledge_deliveries(
            claims, self._clock(), self._exchange.receipt_for
        )
        fresh = sum(
            1 for r in results if isinstance(r, Acknowledgement) and not r.already_acknowledged
        )
        if fresh:
            log.info("deliveries_acknowledged", count=fresh, batch=len(claims))
        return [
            NotFoundError(f"no delivery {delivery_id} for {agency}") if result is None else result
            for (delivery_id, agency), result in zip(claims, results, strict=True)
        ]

    async def _commit_notices(
        self, claims: Sequence[tuple[str, str]]
    ) -> list[Acknowledgement | DomainError]:
        results = await self._store.acknowledge_notices(claims, self._clock())
        return [
            result or NotFoundError(f"no notice {notice_id} for {agency}")
            for (notice_id, agency), result in zip(claims, results, strict=True)
        ]

    async def submit(
        self,
        agency: str,
        submission: Submission,
        *,
        wire_problems: Sequence[FieldViolation] = (),
    ) -> SubmitResult:
        """Submits a document; a revoke (1), update (2) or replacement (3) then puts the copies
        it acts on under a pending decision (a recall their recipients answer with 15 or 16).

        An update's new recipient list is complete: the previous version's recipients that it
        drops get a recall, the ones it keeps get the new version and a pending decision on the
        old one, and new ones just get the new version. A replacement supersedes the latest
        version of every document its response_for names, for the agencies it is addressed to.
        A revoke package (the edXML way to recall) recalls the latest version from the agencies
        it is addressed to, for the reason it gives (its content, else its subject).
        Nothing is mutated: every version stays, linked through response_for. The supersession
        is a second, idempotent step: a replay of the submission completes it.
        """
        header = submission.header
        acting = header.business_type is not BusinessType.NEW
        if acting and not wire_problems and header.sender == agency:
            await self._check_targets(agency, header)
        result = await self._exchange.submit(agency, submission, wire_problems=wire_problems)
        if acting:
            receipt = result.receipt
            await self.supersede(
                agency,
                header,
                receipt.document_uuid,
                receipt.accepted_at,
                {r.effective_recipient for r in receipt.routes},
            )
        return result

    async def _check_targets(self, agency: str, header: Header) -> None:
        problems: list[FieldViolation] = []
        for index, target in enumerate(header.response_for):
            try:
                parse_document_id(target)
            except ValueError:
                continue  # reported by the submission's own validation
            versions = await self._store.versions(target)
            if not any(v.sender == agency for v in versions):
                problems.append(
                    FieldViolation(
                        f"header.response_for[{index}]",
                        f"{target} is not a document you sent: a revoke, update or replacement "
                        "acts on the sender's own documents",
                    )
                )
        if problems:
            raise ValidationError("nothing to revoke, update or replace", problems)

    async def supersede(
        self,
        agency: str,
        header: Header,
        new_uuid: str,
        accepted_at: dt.datetime,
        addressed: Collection[str],
    ) -> None:
        """What `submit` does after storing a revoke, update or replacement (`header`, stored as
        `new_uuid`): the copies it acts on go under a pending decision. `addressed`: the
        agencies the new package goes to (a national axis's package arrives one copy at a time,
        so its poller names every recipient the package lists). Idempotent."""
        new_id = header.document_id
        for target in dict.fromkeys(header.response_for):
            previous = [
                v
                for v in await self._store.versions(target)
                if v.document_uuid != new_uuid
                and v.business_type is not BusinessType.REVOKE  # revokes are not versions
                and v.sender == agency
                and v.submitted_at <= accepted_at
            ]
            if not previous:
                continue
            latest = previous[-1]
            track = await self._exchange.track(
                agency, document_uuid=latest.document_uuid, document_id=None
            )
            copies = [r.effective_recipient for r in track.recipients]
            superseded = [code for code in copies if code in addressed]
            recalls: list[tuple[str, list[str]]] = []
            if header.business_type is BusinessType.UPDATE:
                removed = [code for code in copies if code not in addressed]
                recalls.append((UPDATED_REASON.format(document_id=new_id), superseded))
                recalls.append((REMOVED_REASON.format(document_id=new_id), removed))
            elif header.business_type is BusinessType.REPLACE:
                recalls.append((REPLACED_REASON.format(document_id=new_id), superseded))
            else:
                reason = header.content.strip() or header.subject
                recalls.append((reason[:MAX_DESCRIPTION], superseded))
            for reason, recipients in recalls:
                if not recipients:
                    continue  # an empty list would mean every copy
                outcomes = await self._store.request_recall(
                    latest.document_uuid, agency, reason, recipients, self._clock()
                )
                log.info(
                    "document_superseded",
                    document_uuid=latest.document_uuid,
                    by=new_uuid,
                    business_type=int(header.business_type),
                    recipients=len(outcomes or ()),
                )

    async def report_status(
        self,
        agency: str,
        delivery_id: str,
        report: StatusReport,
        *,
        wire_problems: Sequence[FieldViolation] = (),
        relayed: bool = False,
    ) -> StatusOutcome:
        """`wire_problems` are what the transport could not parse (reported with the rest).
        `relayed`: a peer hub carries the status back from the recipient's hub (federation),
        so its id may be one docaxis gave it there (the 01 recorded at acknowledgement)."""
        now = self._clock()
        problems: list[FieldViolation] = []
        check_uuid(problems, "delivery_id", delivery_id)  # reported first
        problems += [*wire_problems, *report_problems(report, now=now, relayed=relayed)]
        if problems:
            raise ValidationError("invalid status report", problems)
        recipient, notify, notify_hub = await self._exchange.status_parties(agency, delivery_id)
        outcome = await self._store.record_status(
            delivery_id,
            StatusEntry(report, reported_by=agency, recorded_at=now),
            recipient=recipient,
            notify=notify,
            notify_hub=notify_hub,
        )
        if outcome is None:
            raise NotFoundError(f"no delivery {delivery_id} for {agency}")
        if not outcome.already_recorded:
            log.info(
                "status_recorded", delivery_id=delivery_id, code=report.code.value, agency=agency
            )
        return outcome

    async def recall(
        self, agency: str, document_uuid: str, reason: str, recipients: Sequence[str]
    ) -> list[RecallOutcome]:
        problems: list[FieldViolation] = []
        check_uuid(problems, "document_uuid", document_uuid)
        reason = nfc(reason)
        if not reason.strip():
            problems.append(FieldViolation("reason", "a recall states its reason"))
        elif len(reason) > MAX_DESCRIPTION:
            problems.append(FieldViolation("reason", f"at most {MAX_DESCRIPTION} characters"))
        seen: set[str] = set()
        for index, code in enumerate(recipients):
            if code in seen:
                problems.append(FieldViolation(f"recipients[{index}]", "listed twice"))
            seen.add(code)
        if problems:
            raise ValidationError("invalid recall", problems)
        missing = NotFoundError("no such document among those you sent")
        track = await self._exchange.track(agency, document_uuid=document_uuid, document_id=None)
        if track.header.sender != agency:
            raise missing
        copies = {r.effective_recipient for r in track.recipients}
        strangers = [
            FieldViolation(f"recipients[{i}]", f"{code} is not a recipient of this document")
            for i, code in enumerate(recipients)
            if code not in copies
        ]
        if strangers:
            raise ValidationError("invalid recall", strangers)
        outcomes = await self._store.request_recall(
            document_uuid, agency, reason, recipients, self._clock()
        )
        if outcomes is None:  # pragma: no cover - tracked above as the sender's
            raise missing
        log.info(
            "recall_requested",
            document_uuid=document_uuid,
            recipients=len(outcomes),
            pending=sum(1 for o in outcomes if not o.already_requested),
        )
        return outcomes

    async def begin_notices(self, claims: Sequence[tuple[str, str]]) -> list[NoticeItem | None]:
        """Each (notice id, agency) claimed for a push, in one transaction."""
        return await self._store.begin_notices(claims)

    async def list_pending(
        self, agency: str, page_size: int, page_token: str
    ) -> tuple[list[PendingEntry], str]:
        """A page of the agency's unacknowledged items and the token of the next ("" if none)."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise ValidationError(
                "invalid page size", [FieldViolation("page_size", f"0 to {MAX_PAGE_SIZE}")]
            )
        limit = page_size or DEFAULT_PAGE_SIZE
        after = decode_page_token(page_token) if page_token else None
        items = await self._store.pending(agency, after, limit + 1)
        if len(items) <= limit:
            return items, ""
        last = items[limit - 1]
        return items[:limit], encode_page_token(PageCursor(last.created_at, last.item_id))

    async def fetch_delivery(self, agency: str, delivery_id: str) -> PushItem:
        """Pull mode's fetch: the same bookkeeping as a push."""
        require_uuid("delivery_id", delivery_id)
        item = await self._exchange.begin_push(delivery_id, agency)
        if isinstance(item, DeadLetter):
            # Fetched as often as the limit allows and never acknowledged: no longer pending.
            raise NotFoundError(
                f"delivery {delivery_id} was dead-lettered after {item.push_count} fetches "
                "without an acknowledgement",
                meta={"delivery_id": delivery_id, "dead_letter_reason": item.reason},
            )
        if item is None:
            raise NotFoundError(
                f"no pending delivery {delivery_id} for {agency} (acknowledged or withdrawn?)"
            )
        return item

    async def fetch_notice(self, agency: str, notice_id: str) -> NoticeItem:
        require_uuid("notice_id", notice_id)
        (item,) = await self._store.begin_notices([(notice_id, agency)])
        if item is None:
            raise NotFoundError(f"no pending notice {notice_id} for {agency} (acknowledged?)")
        return item

    async def links(
        self, agency: str, track: DocumentTrack
    ) -> tuple[list[DocumentLink], list[DocumentLink]]:
        """(in_reply_to, replies) of a document `track` shows the caller (already authorised);
        none when the caller's copy was withdrawn (only its own history is left)."""
        if track.withheld:
            return [], []
        return await self._store.links(track.document_uuid, agency)

    async def lifecycles(self, track: DocumentTrack) -> dict[str, DeliveryLifecycle]:
        """Statuses and recalls of the copies `track` shows (already authorised)."""
        every = await self._store.lifecycles(track.document_uuid)
        shown = {r.delivery_id for r in track.recipients}
        return {key: value for key, value in every.items() if key in shown}
