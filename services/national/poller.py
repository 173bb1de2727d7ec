"""The national axis's mailbox, polled (it does not push): list → get each → read with the
gateway's lenient reader → store → `updateStatus`. One poller per axis (an elected singleton).

An item is acknowledged `done` only once every copy it carries for this hub is stored (or was
already: the key of a copy is the national DocId with the recipient, so an item listed again
after a crash between storing and acknowledging is answered as before and stored once); `fail`
when the package can never be stored (unreadable, refused for good); nothing when storing failed
for a reason that may pass later, so it is listed again. A revoke package (BussinessDocType 1)
and a retrieve request (status 13) are applied as their sender's recall of the copies here, like
a local recall; the recipients' answers (15, 16) go back as status packages. An update or
replacement (2, 3) is stored as a document and puts the copies here of the version it acts on
under a pending decision. The pauses between polls grow while the mailbox is empty or the axis
fails (back-off with jitter, up to `max_pause_s`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import time
import uuid
from collections.abc import Sequence

import structlog
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from gateway.edxml import (
    BusinessDocType,
    DocumentPackage,
    EdxmlError,
    StatusPackage,
    read_edxml,
)
from gateway.edxml.mapping import attachment_ref, document_header, normalise, status_values
from services.common.errors import (
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from services.common.periodic import pause
from services.exchange.domain.model import (
    BusinessType,
    CodeCheck,
    today_in_vietnam,
    validate_submission,
)
from services.exchange.domain.peering import Hop, backoff_s
from services.exchange.domain.statuses import (
    RECALL_ANSWERS,
    StatusCode,
    StatusEntry,
    StatusReport,
)
from services.exchange.entrypoints.convert import submission_from_pb
from services.exchange.service_layer.federation import FederationHandlers
from services.exchange.service_layer.federation_ports import (
    FederationStore,
    HopOutcome,
    OutboundDocument,
    OutboundRecall,
    OutboundStatus,
)
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import DocumentStore
from services.national.blobs import NationalAxisBlobs
from services.national.client import NationalAxisClient, ReceivedItem
from services.national.stats import AxisStats

log = structlog.get_logger(__name__)

# The keys of what came from the national axis: uuid5 of "<hub code>:<DocId>".
NATIONAL_NAMESPACE = uuid.UUID("6f1d8a52-3c55-4c8e-9a0e-2f8f3b6d1c01")
ENVELOPE_NAME = "envelope.edxml"
MAX_PAGES = 100
# The reasons of a revoke package or a retrieve request (13) that give none: recalls state one.
REVOKE_REASON = "Thu hồi văn bản điện tử"
RETRIEVE_REASON = "Lấy lại văn bản điện tử"


def origin_of(hub_code: str, doc_id: str) -> str:
    """The origin uuid of a national upload: stable, so storing it again is recognised."""
    return str(uuid.uuid5(NATIONAL_NAMESPACE, f"{hub_code}:{doc_id}"))


class NationalAxisPoller:
    def __init__(
        self,
        hub_code: str,
        client: NationalAxisClient,
        federation: FederationHandlers,
        lifecycle: LifecycleHandlers,
        blobs: NationalAxisBlobs,
        documents: DocumentStore,
        store: FederationStore,
        code_problem: CodeCheck,
        *,
        max_attachment_bytes: int,
        page_size: int = 50,
        max_pause_s: float = 30.0,
        rng: random.Random | None = None,
        stats: AxisStats | None = None,
    ) -> None:
        """`stats`: what the poller counts (shared with the transport to the same axis)."""
        self._hub_code = hub_code
        self._client = client
        self._federation = federation
        self._lifecycle = lifecycle
        self._blobs = blobs
        self._documents = documents
        self._store = store
        self._code_problem = code_problem
        self._max_attachment_bytes = max_attachment_bytes
        self._page_size = page_size
        self._max_pause_s = max_pause_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.stats = stats or AxisStats(hub_code)

    async def run(self, stop: asyncio.Event) -> None:
        """Polls until `stop` is set (a term of the elected leader)."""
        quiet = 0
        stats = self.stats
        stats.backoff_s = 0.0
        try:
            while not stop.is_set():
                stats.polls += 1
                try:
                    handled = await self.poll_once()
                except DomainError as exc:
                    stats.errors[("poll", exc.reason)] += 1
                    quiet += 1
                    log.warning("national_axis_poll_failed", hub=self._hub_code, error=str(exc))
                    handled = 0
                except Exception:  # e.g. the database gone: logged, polled again later
                    stats.errors[("poll", "INTERNAL")] += 1
                    quiet += 1
                    log.exception("national_axis_poll_crashed", hub=self._hub_code)
                    handled = 0
                else:
                    stats.last_poll_success = time.time()
                if handled:
                    quiet = 0
                    stats.backoff_s = 0.0
                    continue
                quiet += 1
                stats.backoff_s = backoff_s(quiet, self._rng, base=0.05, cap=self._max_pause_s)
                await pause(stop, stats.backoff_s)
        finally:
            stats.backoff_s = None  # the term ended: no poller here until the next one

    async def poll_once(self) -> int:
        """Both mailboxes walked once; how many items were settled."""
        settled = 0
        for kind in ("edoc", "status"):
            settled += await self._mailbox(kind)
        return settled

    async def _mailbox(self, kind: str) -> int:
        """Settled items leave the list, so the pages are walked past the ones left behind."""
        seen: set[str] = set()
        left = settled = 0
        for _ in range(MAX_PAGES):
            page = left // self._page_size + 1
            items, _count = await self._client.received(kind, page=page, page_size=self._page_size)
            by_doc: dict[str, list[ReceivedItem]] = {}
            for item in items:
                if item.doc_id not in seen:
                    by_doc.setdefault(item.doc_id, []).append(item)
            if not by_doc:
                return settled
            for doc_id, listed in by_doc.items():
                seen.add(doc_id)
                if await self._take(kind, doc_id, listed):
                    settled += 1
                else:
                    left += len(listed)
        return settled

    async def _take(self, kind: str, doc_id: str, listed: Sequence[ReceivedItem]) -> bool:
        data = await self._client.get_edoc(doc_id)
        try:
            outcomes = (
                await self._document(doc_id, data, listed)
                if kind == "edoc"
                else await self._status(doc_id, data, listed)
            )
        except DomainError as exc:
            outcomes = [HopOutcome(doc_id, error=exc, retryable=exc.retryable)]
        if any(o.retryable for o in outcomes):
            self.stats.fetched[(kind, "deferred")] += 1
            log.warning(
                "national_axis_item_deferred",
                hub=self._hub_code,
                doc_id=doc_id,
                error=next(str(o.error) for o in outcomes if o.retryable),
            )
            return False
        refused = [o for o in outcomes if o.error is not None]
        stored = len(outcomes) - len(refused)
        for outcome in refused:
            assert outcome.error is not None
            log.warning(
                "national_axis_item_refused",
                hub=self._hub_code,
                doc_id=doc_id,
                reason=outcome.error.reason,
                error=str(outcome.error),
            )
        # Acknowledged only now that what could be stored is stored.
        await self._client.update_status(doc_id, "done" if stored else "fail")
        self.stats.fetched[(kind, "stored" if stored else "refused")] += 1
        log.info("national_axis_item_settled", hub=self._hub_code, doc_id=doc_id, kind=kind)
        return True

    async def _document(
        self, doc_id: str, data: bytes, listed: Sequence[ReceivedItem]
    ) -> list[HopOutcome]:
        package = _read(data)
        if not isinstance(package, DocumentPackage):
            raise ValidationError(f"national item {doc_id} is a status listed as a document")
        if package.business_type is BusinessDocType.REVOKE:
            return await self._revoke(doc_id, package, listed)
        envelope = hashlib.sha256(data).hexdigest()
        request = pb.SubmitRequest(
            consignment_id=f"national:{doc_id}",
            header=document_header(package),
            attachments=[attachment_ref(a) for a in package.attachments],
            envelope=common_pb2.AttachmentRef(
                name=ENVELOPE_NAME, media_type="application/xml", size=len(data), sha256=envelope
            ),
        )
        request.header.ClearField("document_id")
        submission, problems = submission_from_pb(request)
        if problems:
            raise ValidationError("the national package does not map to a submission", problems)
        validate_submission(
            submission,
            code_problem=self._code_problem,
            today=today_in_vietnam(),
            max_attachment_bytes=self._max_attachment_bytes,
        )
        origin = origin_of(self._hub_code, doc_id)
        trace = package.trace.trace_headers
        sent_at = next((t.timestamp for t in trace if t.timestamp), None) or dt.datetime.now(dt.UTC)
        files = {a.sha256: a.data for a in package.attachments}
        files[envelope] = data
        self._blobs.hold(origin, files)
        try:
            outcomes = [
                await self._federation.accept(
                    self._hub_code,
                    OutboundDocument(
                        item_id=f"{doc_id}:{item.recipient}",
                        origin_document_uuid=origin,
                        source_document_uuid=origin,
                        recipient=item.recipient,
                        requested_recipient=item.recipient,
                        submission=submission,
                        trace=(Hop(self._hub_code, sent_at.astimezone(dt.UTC)),),
                    ),
                )
                for item in listed
            ]
        finally:
            self._blobs.release(origin)
        if package.business_type is not BusinessDocType.NEW:
            stored = [i for i, o in zip(listed, outcomes, strict=True) if o.error is None]
            if stored:
                await self._supersede(origin, stored[0].recipient)
        return outcomes

    async def _supersede(self, origin: str, recipient: str) -> None:
        """An update or replacement stored here puts the copies here of the version it acts on
        under a pending decision, as when submitted here (LifecycleHandlers.supersede): the
        national axis carries no separate recall. Its recipients are every one the package
        names (the others of this hub may be listed on a later page). Again after a crash:
        the recalls already asked are not asked twice."""
        local = await self._store.local_copy(origin, recipient)
        track = (
            await self._documents.track(document_uuid=local[0], document_id=None) if local else None
        )
        if track is None:
            raise NotFoundError(f"the national document {origin} for {recipient} is not here")
        await self._lifecycle.supersede(
            track.header.sender,
            track.header,
            track.document_uuid,
            track.submitted_at,
            track.header.recipients,
        )

    async def _original(self, document_id: str) -> str:
        """The origin uuid of a document this hub holds, by its DocumentId."""
        track = await self._documents.track(document_uuid=None, document_id=document_id)
        if track is None:
            raise NotFoundError(f"no document {document_id} here")
        origin, _trace = (await self._store.hop_info([track.document_uuid]))[track.document_uuid]
        return origin

    async def _revoke(
        self, doc_id: str, package: DocumentPackage, listed: Sequence[ReceivedItem]
    ) -> list[HopOutcome]:
        """A revoke package (BussinessDocType 1): the sender recalls its document from the
        recipients here."""
        business = package.trace.business
        target = business.document_id if business is not None else ""
        target = target or next((r.document_id for r in package.header.response_for), "")
        if not target:
            raise ValidationError(f"revoke package {doc_id} names no original DocumentId")
        at = next((t.timestamp for t in package.trace.trace_headers if t.timestamp), None)
        reason = business.reason.strip() if business is not None else ""
        return await self._recall(
            doc_id,
            normalise(target),
            package.header.sender.organ_id,
            reason or REVOKE_REASON,
            at,
            listed,
        )

    async def _recall(
        self,
        key: str,
        document_id: str,
        sender: str,
        reason: str,
        at: dt.datetime | None,
        listed: Sequence[ReceivedItem],
    ) -> list[HopOutcome]:
        """`sender`'s recall of its document from the recipients the item is listed for, as a
        recall a peer hub carries (withdrawn at once if not yet acknowledged, else a pending
        decision the recipient answers with 15 or 16). The axis must name the same sender as
        the package."""
        _check_sender(key, listed, sender)
        origin = await self._original(document_id)
        return [
            await self._federation.accept(
                self._hub_code,
                OutboundRecall(
                    f"{key}:{item.recipient}",
                    origin,
                    item.recipient,
                    sender,
                    reason,
                    at or dt.datetime.now(dt.UTC),
                ),
            )
            for item in listed
        ]

    async def _status(
        self, doc_id: str, data: bytes, listed: Sequence[ReceivedItem]
    ) -> list[HopOutcome]:
        package = _read(data)
        if not isinstance(package, StatusPackage):
            raise ValidationError(f"national item {doc_id} is a document listed as a status")
        values = status_values(package)
        try:
            code = StatusCode(values.status_code)
        except ValueError:
            raise ValidationError(f"status code {values.status_code!r}") from None
        _check_sender(f"status:{doc_id}", listed, values.reporter)
        now = dt.datetime.now(dt.UTC)
        if code is StatusCode.RECALL_REQUESTED:
            # 13 is the sender's retrieve request ("lấy lại"): applied as its revoke package
            # would be; the recipients' 15 or 16 go back to the sender as status packages.
            return await self._recall(
                f"status:{doc_id}",
                values.document_id,
                values.reporter,
                values.description.strip() or RETRIEVE_REASON,
                package.timestamp,
                listed,
            )
        origin = await self._original(values.document_id)
        report = StatusReport(
            status_id=origin_of(self._hub_code, f"status:{doc_id}"),
            code=code,
            occurred_at=package.timestamp or now,
            description=values.description,
        )
        entry = StatusEntry(report, values.reporter, now)
        outcome = await self._federation.accept(
            self._hub_code, OutboundStatus(f"status:{doc_id}", origin, values.reporter, entry)
        )
        if code in RECALL_ANSWERS and outcome.error is not None and not outcome.retryable:
            # A DMS may answer a revoke, update or replacement package naming that package
            # (a revoke shares its original's DocumentId): the decision it settles is on the
            # version the package acts on.
            for acted in await self._acted_on(values.document_id):
                answer = await self._federation.accept(
                    self._hub_code,
                    OutboundStatus(f"status:{doc_id}", acted, values.reporter, entry),
                )
                if answer.error is None or answer.retryable:
                    return [answer]
        return [outcome]

    async def _acted_on(self, document_id: str) -> list[str]:
        """The origin uuids of the versions the revoke, update or replacement package known by
        `document_id` acts on, newest first (none for a new document)."""
        track = await self._documents.track(document_uuid=None, document_id=document_id)
        if track is None or track.header.business_type is BusinessType.NEW:
            return []
        answered, _later = await self._lifecycle.links(track.header.sender, track)
        versions = [
            link.document_uuid
            for link in reversed(answered)
            if link.business_type is not BusinessType.REVOKE
        ]
        origins = await self._store.hop_info(versions)
        return [origins[uuid_][0] for uuid_ in versions if uuid_ in origins]


def _check_sender(key: str, listed: Sequence[ReceivedItem], sender: str) -> None:
    """The axis names the agency whose system uploaded an item (`from`, checked against that
    system's credentials there); a status or recall whose package speaks for another agency is
    refused: no system reports or recalls in the name of another system's agency. (A list
    without `from` is taken at the package's word.)"""
    strangers = sorted({item.sender for item in listed if item.sender} - {sender})
    if strangers:
        raise PermissionDeniedError(
            f"national item {key} is from {', '.join(strangers)} but speaks for {sender}",
            meta={"from": ",".join(strangers), "sender": sender},
        )


def _read(data: bytes) -> DocumentPackage | StatusPackage:
    try:
        return read_edxml(data).raise_for_errors()
    except EdxmlError as exc:
        raise ValidationError(f"edXML not per standard: {exc}", reason=exc.reason) from None
