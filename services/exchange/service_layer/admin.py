"""Administrator use cases: document search, a document's timeline, dead letters and resends,
federation peers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from services.common.clock import Clock, utc_now
from services.common.errors import (
    FieldViolation,
    NotFoundError,
    UnavailableError,
    ValidationError,
    check_uuid,
    parse_iso_date,
    require_uuid,
)
from services.common.identity import Caller
from services.exchange.domain.deadlines import deadline
from services.exchange.domain.delivery import NotDeadLetteredError
from services.exchange.domain.model import (
    MAX_CODE_NOTATION,
    MAX_CODE_NUMBER,
    VIETNAM,
    DeliveryState,
    nfc,
)
from services.exchange.domain.statuses import MAX_DESCRIPTION, StatusCode
from services.exchange.service_layer.admin_ports import (
    Administrator,
    AdminStore,
    DeadLetterCopy,
    DocumentHops,
    DocumentQuery,
    FoundDocument,
    Resend,
)
from services.exchange.service_layer.lifecycle import (
    decode_page_token,
    encode_page_token,
)
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    DocumentLink,
    LifecycleStore,
    PageCursor,
)
from services.exchange.service_layer.peers import (
    THROUGHPUT_WINDOW,
    PeerStates,
    PeerView,
    peer_views,
)
from services.exchange.service_layer.ports import DocumentStore, DocumentTrack

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# The most dead letters one ResendPeerDeadLetters call puts back (each is its own transaction).
MAX_PEER_RESENDS = 1000


class PeerUnknownError(NotFoundError):
    """An administrator named a peer hub this hub neither exchanges with nor holds anything
    for."""

    reason = "PEER_UNKNOWN"


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """A search as asked on the wire: empty strings and None mean "any"."""

    document_id: str = ""
    # "number/notation", or a number alone.
    code: str = ""
    sender: str = ""
    recipient: str = ""
    # Vietnam calendar days, YYYY-MM-DD, both inclusive.
    submitted_from: str = ""
    submitted_to: str = ""
    latest_status: StatusCode | None = None
    state: DeliveryState | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    track: DocumentTrack
    lifecycles: dict[str, DeliveryLifecycle]
    in_reply_to: list[DocumentLink]
    replies: list[DocumentLink]
    resends: list[Resend]
    trace_id: str = ""
    hops: DocumentHops | None = None


def parse_code(raw: str, problems: list[FieldViolation]) -> tuple[str | None, str | None]:
    """(number, notation) of "number/notation" (split at the first slash: notations hold
    slashes), or of a number alone (notation None); (None, None) when empty."""
    text = nfc(raw).strip()
    if not text:
        return None, None
    number, slash, notation = text.partition("/")
    number, notation = number.strip(), notation.strip()
    if not number or (slash and not notation):
        problems.append(FieldViolation("code", "number/notation, e.g. 123/UBND-VP, or a number"))
        return None, None
    if len(number) > MAX_CODE_NUMBER or len(notation) > MAX_CODE_NOTATION:
        problems.append(
            FieldViolation(
                "code",
                f"a number of at most {MAX_CODE_NUMBER} and a notation of at most "
                f"{MAX_CODE_NOTATION} characters",
            )
        )
        return None, None
    return number, notation if slash else None


def document_query(filters: SearchFilters, problems: list[FieldViolation]) -> DocumentQuery:
    """The storage query of `filters`; what does not parse is added to `problems`."""
    number, notation = parse_code(filters.code, problems)
    first = parse_iso_date(problems, "submitted_from", filters.submitted_from)
    last = parse_iso_date(problems, "submitted_to", filters.submitted_to)
    if first is not None and last is not None and first > last:
        problems.append(FieldViolation("submitted_to", "before submitted_from"))
    return DocumentQuery(
        document_id=nfc(filters.document_id).strip() or None,
        code_number=number,
        code_notation=notation,
        sender=filters.sender.strip() or None,
        recipient=filters.recipient.strip() or None,
        # Vietnam calendar days, as the reports count them.
        submitted_from=dt.datetime.combine(first, dt.time(), VIETNAM) if first else None,
        submitted_before=deadline(last) if last else None,
        latest_status=filters.latest_status,
        state=filters.state,
    )


def _page_limit(page_size: int, problems: list[FieldViolation]) -> int:
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        problems.append(
            FieldViolation("page_size", f"0 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})")
        )
    return page_size or DEFAULT_PAGE_SIZE


def _cursor(token: str, rpc: str, problems: list[FieldViolation]) -> PageCursor | None:
    if not token:
        return None
    try:
        return decode_page_token(token, rpc)
    except ValidationError as exc:
        problems.extend(exc.violations)
        return None


class AdminHandlers:
    """Every use case is for administrators only (PERMISSION_DENIED otherwise), checked before
    the request itself so that nobody else learns anything from the answers."""

    def __init__(
        self,
        store: AdminStore,
        documents: DocumentStore,
        lifecycle: LifecycleStore,
        clock: Clock = utc_now,
        *,
        peers: PeerStates | None = None,
    ) -> None:
        self._store = store
        self._documents = documents
        self._lifecycle = lifecycle
        self._clock = clock
        self._peers = peers

    async def search(
        self,
        caller: Caller,
        filters: SearchFilters,
        page_size: int,
        page_token: str,
        *,
        wire_problems: Sequence[FieldViolation] = (),
    ) -> tuple[list[FoundDocument], str]:
        """A page of matching documents, newest first, and the next page's token ("" if none).
        `wire_problems` are what the transport could not parse (reported with the rest)."""
        caller.require_admin()
        problems = list(wire_problems)
        query = document_query(filters, problems)
        limit = _page_limit(page_size, problems)
        after = _cursor(page_token, "SearchDocuments", problems)
        if problems:
            raise ValidationError("invalid document search", problems)
        found = await self._store.search(query, after, limit + 1)
        if len(found) <= limit:
            return found, ""
        last = found[limit - 1].document
        return found[:limit], encode_page_token(PageCursor(last.submitted_at, last.document_uuid))

    async def timeline(self, caller: Caller, document_uuid: str) -> Timeline:
        caller.require_admin()
        require_uuid("document_uuid", document_uuid)
        track = await self._documents.track(document_uuid=document_uuid, document_id=None)
        if track is None:
            raise NotFoundError(
                f"no document {document_uuid}", meta={"document_uuid": document_uuid}
            )
        lifecycles = await self._lifecycle.lifecycles(document_uuid)
        # An administrator sees every linked document, not only one agency's.
        in_reply_to, replies = await self._lifecycle.links(document_uuid, None)
        resends = await self._store.resends([r.delivery_id for r in track.recipients])
        trace_id = await self._store.trace_id(document_uuid)
        hops = await self._store.hops(document_uuid)
        return Timeline(track, lifecycles, in_reply_to, replies, resends, trace_id, hops)

    async def dead_letters(
        self, caller: Caller, agency: str, page_size: int, page_token: str, *, peer: str = ""
    ) -> tuple[list[DeadLetterCopy], str]:
        caller.require_admin()
        problems: list[FieldViolation] = []
        limit = _page_limit(page_size, problems)
        after = _cursor(page_token, "ListDeadLetters", problems)
        if problems:
            raise ValidationError("invalid dead-letter listing", problems)
        copies = await self._store.dead_letters(
            agency.strip() or None, after, limit + 1, peer=peer.strip() or None
        )
        if len(copies) <= limit:
            return copies, ""
        last = copies[limit - 1]
        return copies[:limit], encode_page_token(
            PageCursor(last.dead_lettered_at, last.delivery_id)
        )

    async def resend(self, caller: Caller, delivery_id: str, reason: str) -> Resend:
        """Puts a dead-lettered copy back on the delivery path, audited (see AdminStore)."""
        caller.require_admin()
        problems: list[FieldViolation] = []
        check_uuid(problems, "delivery_id", delivery_id)
        reason = _resend_reason(reason, problems)
        if problems:
            raise ValidationError("invalid resend", problems)
        administrator = Administrator(caller.subject, caller.serial)
        resend = await self._store.resend(delivery_id, administrator, reason, self._clock())
        if resend is None:
            raise NotFoundError(f"no delivery {delivery_id}", meta={"delivery_id": delivery_id})
        log.info(
            "dead_letter_resent",
            delivery_id=delivery_id,
            administrator_serial=caller.serial,
            push_count=resend.push_count,
        )
        return resend

    async def peers(self, caller: Caller) -> list[PeerView]:
        """Every peer with its figures (see services/exchange/service_layer/peers.py)."""
        caller.require_admin()
        peers = self._require_peers()
        now = self._clock()
        reports = await peers.reports()
        queues = await peers.queues(now - THROUGHPUT_WINDOW)
        return peer_views(reports, queues, now)

    async def resend_peer_dead_letters(
        self, caller: Caller, hub: str, reason: str, limit: int
    ) -> tuple[list[Resend], int]:
        """Every copy dead-lettered on its way to `hub` (up to `limit`, oldest first) put back on
        the delivery path, each audited as `resend` does; and how many are left over."""
        caller.require_admin()
        problems: list[FieldViolation] = []
        hub = hub.strip()
        if not hub:
            problems.append(FieldViolation("hub", "the peer's hub code"))
        reason = _resend_reason(reason, problems)
        if not 0 <= limit <= MAX_PEER_RESENDS:
            problems.append(
                FieldViolation("limit", f"0 to {MAX_PEER_RESENDS} (0 means {MAX_PEER_RESENDS})")
            )
        if problems:
            raise ValidationError("invalid peer resend", problems)
        peers = self._require_peers()
        known = {view.hub for view in await self.peers(caller)}
        if hub not in known:
            raise PeerUnknownError(f"no peer hub {hub!r} here", meta={"hub": hub})
        delivery_ids, total = await peers.dead_lettered(hub, limit or MAX_PEER_RESENDS)
        administrator = Administrator(caller.subject, caller.serial)
        resends: list[Resend] = []
        for delivery_id in delivery_ids:
            try:
                resend = await self._store.resend(delivery_id, administrator, reason, self._clock())
            except NotDeadLetteredError:
                continue  # resent meanwhile (another administrator, the same call twice)
            if resend is not None:
                resends.append(resend)
        log.info(
            "peer_dead_letters_resent",
            hub=hub,
            resent=len(resends),
            administrator_serial=caller.serial,
        )
        return resends, total - len(delivery_ids)

    def _require_peers(self) -> PeerStates:
        if self._peers is None:
            raise UnavailableError("this process keeps no federation peers' figures")
        return self._peers


def _resend_reason(reason: str, problems: list[FieldViolation]) -> str:
    reason = nfc(reason).strip()
    if not reason:
        problems.append(FieldViolation("reason", "a resend states its reason"))
    elif len(reason) > MAX_DESCRIPTION:
        problems.append(FieldViolation("reason", f"at most {MAX_DESCRIPTION} characters"))
    return reason
