"""Federation, the receiving side: what a peer hub hands over is checked and stored like a
submission, once per (origin document, recipient); statuses and recalls it carries back are
applied here as the recipient or the sender would, so they travel on along the same hops."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import structlog

from services.common.clock import Clock, utc_now
from services.common.errors import (
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    UnavailableError,
    require_uuid,
)
from services.exchange.domain.delivery import LedgerEvent
from services.exchange.domain.model import Receipt, Route, today_in_vietnam
from services.exchange.domain.peering import received_trace
from services.exchange.domain.statuses import NotReceivedError
from services.exchange.service_layer.federation_ports import (
    BlobSource,
    FederationStore,
    ForwardedIn,
    HopOutcome,
    OutboundDocument,
    OutboundItem,
    OutboundRecall,
    OutboundStatus,
)
from services.exchange.service_layer.handlers import ExchangeHandlers, submission_fingerprint
from services.exchange.service_layer.hop_receipts import HopReceipts
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import DirectoryLookup, DocumentStore
from services.exchange.service_layer.routing import invalid_addressee

log = structlog.get_logger(__name__)


class FederationHandlers:
    def __init__(
        self,
        own_hub: str,
        peers: frozenset[str],
        exchange: ExchangeHandlers,
        lifecycle: LifecycleHandlers,
        documents: DocumentStore,
        store: FederationStore,
        directory: DirectoryLookup,
        blobs: BlobSource,
        clock: Clock = utc_now,
        *,
        national_axes: frozenset[str] = frozenset(),
        receipts: HopReceipts | None = None,
    ) -> None:
        """`national_axes`: the peers that are national axes (their documents come unsigned or
        with dummy envelope signatures: transport-attested by that peer, SignatureVerifier).
        `receipts` signs what this hub answers for each copy handed over (empty without)."""
        self._own_hub = own_hub
        self._peers = peers
        self._exchange = exchange
        self._lifecycle = lifecycle
        self._documents = documents
        self._store = store
        self._directory = directory
        self._blobs = blobs
        self._clock = clock
        self._national_axes = national_axes
        self._receipts = receipts or HopReceipts(None, None)

    def require_peer(self, hub_code: str) -> None:
        if hub_code not in self._peers:
            raise PermissionDeniedError(
                f"hub {hub_code} is not a peer of this hub", meta={"hub": hub_code}
            )

    async def blob(
        self, peer: str, document_uuid: str, sha256: str
    ) -> AsyncIterator[tuple[int, bytes]]:
        """An attachment of a document forwarded to `peer`, for that peer only."""
        require_uuid("source_document_uuid", document_uuid)
        missing = NotFoundError(f"no attachment {sha256} of a document forwarded to {peer}")
        if not await self._store.forwards_to(document_uuid, peer):
            raise missing
        track = await self._documents.track(document_uuid=document_uuid, document_id=None)
        if track is None:
            raise missing
        files = [*track.attachments, *filter(None, [track.envelope])]
        if not any(f.sha256 == sha256 for f in files):
            raise missing
        return self._documents.attachment_chunks(document_uuid, sha256, 0)

    async def accept(
        self, peer: str, item: OutboundItem, held: set[tuple[str, str]] | None = None
    ) -> HopOutcome:
        """One item a peer hands over, answered on its own (errors included).

        `held`: the copies, (origin document, recipient), of which an earlier item on the same
        stream was not stored for now (retryable). Their later items are not applied either but
        answered retryable too, so that the peer hands them over again in their order: a copy's
        statuses and recall never overtake one another across hops."""
        key = (item.origin_document_uuid, item.recipient)
        if held is not None and key in held:
            return HopOutcome(
                item.item_id,
                error=UnavailableError(
                    "held back: an earlier item of the same copy is to be handed over first",
                    retry_after_s=1.0,
                ),
                retryable=True,
            )
        outcome = await self._accept(peer, item)
        if held is not None and outcome.retryable:
            held.add(key)
        return outcome

    async def _accept(self, peer: str, item: OutboundItem) -> HopOutcome:
        try:
            if isinstance(item, OutboundDocument):
                return HopOutcome(item.item_id, receipt=await self._document(peer, item))
            if isinstance(item, OutboundStatus):
                await self._status(item)
            else:
                await self._recall(item)
            return HopOutcome(item.item_id)
        except UnavailableError as exc:
            return HopOutcome(item.item_id, error=exc, retryable=True)
        except DomainError as exc:
            log.warning("forwarded_item_refused", hub=peer, item_id=item.item_id, reason=exc.reason)
            return HopOutcome(item.item_id, error=exc, retryable=False)

    async def _document(self, peer: str, item: OutboundDocument) -> bytes:
        first = await self._store.accepted_receipt(item.origin_document_uuid, item.recipient)
        if first is not None:
            return first  # a retry, or the same copy forwarded twice
        now = self._clock()
        submission = dataclasses.replace(
            item.submission, consignment_id=f"hub:{item.origin_document_uuid}"
        )
        header = submission.header
        resolved = (await self._directory.resolve([item.recipient], today_in_vietnam(now)))[
            item.recipient
        ]
        if resolved.effective is None:
            raise invalid_addressee([resolved])
        if resolved.hub == peer:
            raise RejectedError(
                f"{item.recipient} is served by {peer}, which forwarded it here",
                reason="INVALID_ADDRESSEE",
                meta={"recipient": item.recipient, "loop": peer},
            )
        await self._fetch_blobs(peer, item)
        verification = await self._exchange.verify_signatures(
            submission, now, attested_by=peer if peer in self._national_axes else None
        )
        route = Route(item.requested_recipient, resolved.effective, str(uuid.uuid4()), resolved.hub)
        receipt = Receipt(
            document_uuid=str(uuid.uuid4()),
            document_id=header.document_id,
            consignment_id=submission.consignment_id,
            accepted_at=now,
            routes=(route,),
        )
        hop_receipt = self._receipts.sign(
            item.origin_document_uuid, submission, item.recipient, now
        )
        events = [
            LedgerEvent(
                entry_type="routing",
                doc_uuid=receipt.document_uuid,
                document_id=receipt.document_id,
                occurred_at=now,
                from_agency=header.sender,
                to_agency=route.effective_recipient,
                data={
                    "delivery": route.delivery_id,
                    "requested": route.requested_recipient,
                    "event": "forwarded_in",
                    "from_hub": peer,
                    "origin": item.origin_document_uuid,
                    "trace": [h.hub for h in item.trace],
                    **({"hub": route.hub} if route.hub else {}),
                },
            )
        ]
        answered = await self._store.accept_forwarded(
            submission,
            receipt,
            submission_fingerprint(submission),
            events,
            verification,
            ForwardedIn(
                item.origin_document_uuid,
                item.recipient,
                peer,
                tuple(received_trace(item.trace, self._own_hub, now)),
                hop_receipt,
            ),
        )
        log.info(
            "document_forwarded_in",
            hub=peer,
            origin=item.origin_document_uuid,
            recipient=item.recipient,
            next_hub=route.hub or "",
        )
        return answered

    async def _fetch_blobs(self, peer: str, item: OutboundDocument) -> None:
        """The attachments this hub does not hold yet, from the peer, verified as uploads are."""
        submission = item.submission
        sender = submission.header.sender
        files = [*submission.attachments, *filter(None, [submission.envelope])]
        for index in await self._documents.unowned_attachments(sender, files):
            ref = files[index]
            await self._exchange.upload_attachment(
                sender,
                ref.sha256,
                ref.size,
                self._blobs.chunks(peer, item.source_document_uuid, ref.sha256),
            )

    async def _status(self, item: OutboundStatus) -> None:
        local = await self._store.local_copy(item.origin_document_uuid, item.recipient)
        if local is None:
            raise NotFoundError(
                f"no copy of {item.origin_document_uuid} for {item.recipient} here",
                meta={"origin": item.origin_document_uuid, "recipient": item.recipient},
            )
        _document, delivery_id = local
        try:
            await self._lifecycle.report_status(
                item.recipient, delivery_id, item.entry.report, relayed=True
            )
        except NotReceivedError as exc:
            # The next hub already stored the copy (its recipient reports on it) but this hub
            # had not recorded the hand-over (its forwarder records the answer after the batch,
            # or crashed before): the status waits for it rather than being lost.
            if await self._store.in_transit(delivery_id):
                raise UnavailableError(
                    f"the copy {delivery_id} is still being handed over: its status waits",
                    retry_after_s=1.0,
                ) from exc
            raise

    async def _recall(self, item: OutboundRecall) -> None:
        local = await self._store.local_copy(item.origin_document_uuid, item.recipient)
        if local is None:
            raise NotFoundError(
                f"no copy of {item.origin_document_uuid} for {item.recipient} here",
                meta={"origin": item.origin_document_uuid, "recipient": item.recipient},
            )
        document_uuid, _delivery = local
        await self._lifecycle.recall(item.sender, document_uuid, item.reason, [item.recipient])
