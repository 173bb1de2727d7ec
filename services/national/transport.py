"""The national axis as a PeerTransport: what waits in its peer queue is written as edXML (the
gateway's strict writer) and uploaded with `sendEdoc`, one copy per recipient, in order.

The bytes of an item are a function of the item alone (the trace time is when the document was
accepted, not when it is sent), so an upload sent again after a lost answer is the same file,
which the national axis answers with the first DocId. The forwarder keeps the per-peer queue,
back-off with jitter, breaker and dead letters exactly as for hub-to-hub peers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence

import structlog

from gateway.edxml import Attachment, EdxmlError, Organisation, Package, edxml_bytes
from gateway.edxml.mapping import document_package, status_package
from services.common.errors import (
    DomainError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from services.exchange.domain.model import BusinessType
from services.exchange.entrypoints.convert import header_to_pb
from services.exchange.service_layer.federation_ports import (
    FederationStore,
    HopOutcome,
    OutboundDocument,
    OutboundItem,
    OutboundRecall,
    OutboundStatus,
)
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.ports import DocumentStore
from services.national.client import NationalAxisClient
from services.national.stats import AxisStats

log = structlog.get_logger(__name__)


class NationalAxisTransport:
    def __init__(
        self,
        hub_code: str,
        client: NationalAxisClient,
        documents: DocumentStore,
        store: FederationStore,
        lifecycle: LifecycleHandlers,
        stats: AxisStats | None = None,
    ) -> None:
        """`stats`: where failed uploads are counted (shared with the poller of the axis)."""
        self._hub_code = hub_code
        self._client = client
        self._documents = documents
        self._store = store
        self._lifecycle = lifecycle
        self.stats = stats or AxisStats(hub_code)

    @property
    def hub_code(self) -> str:
        return self._hub_code

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        """Each item's upload in order. The axis unreachable (or refusing our credentials) at the
        first item: UnavailableError (the breaker counts it); later in the batch: the items
        sent so far are settled and the rest handed over again."""
        outcomes: list[HopOutcome] = []
        for index, item in enumerate(items):
            try:
                receipt = await self._send(item)
            except DomainError as exc:
                self.stats.errors[("forward", exc.reason)] += 1
                if exc.retryable:
                    if index == 0:
                        raise UnavailableError(str(exc), retry_after_s=1.0) from exc
                    outcomes += [
                        HopOutcome(rest.item_id, error=exc, retryable=True)
                        for rest in items[index:]
                    ]
                    return outcomes
                outcomes.append(HopOutcome(item.item_id, error=exc))
                continue
            outcomes.append(HopOutcome(item.item_id, receipt=receipt))
        return outcomes

    async def probe(self) -> bool:
        try:
            await self._client.received("status", page=1, page_size=1)
        except DomainError:
            return False
        return True

    async def _send(self, item: OutboundItem) -> bytes:
        if isinstance(item, OutboundDocument):
            data, to, kind = await self._document(item), item.recipient, "edoc"
            sender = item.submission.header.sender
        elif isinstance(item, OutboundStatus):
            data, sender, to = await self._status(item)
            kind = "status"
        else:
            carrier = await self._carried_by(item)
            if carrier is not None:
                log.info(
                    "national_axis_recall_carried",
                    hub=self._hub_code,
                    item_id=item.item_id,
                    by=carrier,
                )
                return json.dumps(
                    {"nationalAxis": self._hub_code, "carriedBy": carrier}, sort_keys=True
                ).encode()
            data, sender, to, kind = await self._recall(item), item.sender, item.recipient, "edoc"
        doc_id = await self._client.send_edoc(data, sender=sender, messagetype=kind, to=[to])
        log.info(
            "national_axis_sent", hub=self._hub_code, kind=kind, item_id=item.item_id, doc_id=doc_id
        )
        # What the sending side keeps as the hand-over's proof: the axis's mailbox id.
        return json.dumps(
            {"nationalAxis": self._hub_code, "docId": doc_id, "messagetype": kind},
            sort_keys=True,
        ).encode()

    async def _document(self, item: OutboundDocument) -> bytes:
        submission = item.submission
        attachments = [
            Attachment(
                content_id=f"cid:{index}",
                name=ref.name,
                data=await self._blob(item.source_document_uuid, ref.sha256),
                description=ref.description,
            )
            for index, ref in enumerate(submission.attachments, start=1)
        ]
        sent_at = item.trace[0].at if item.trace else dt.datetime.now(dt.UTC)
        # One TraceHeader per hub that handed it on, this hub last (outgoing_trace).
        package = document_package(
            header_to_pb(submission.header),
            attachments,
            sent_at=sent_at,
            hops=[(hop.hub, hop.at) for hop in item.trace],
        )
        return _written(package, sent_at)

    async def _blob(self, document_uuid: str, sha256: str) -> bytes:
        data = bytearray()
        async for _offset, chunk in self._documents.attachment_chunks(document_uuid, sha256, 0):
            data += chunk
        return bytes(data)

    async def _original(self, origin: str, recipient: str) -> tuple[str, str]:
        """(DocumentId, original sender) of the origin document's copy for `recipient`."""
        local = await self._store.local_copy(origin, recipient)
        track = (
            await self._documents.track(document_uuid=local[0], document_id=None) if local else None
        )
        if track is None:
            raise NotFoundError(f"no copy of {origin} for {recipient} here")
        return track.header.document_id, track.header.sender

    async def _status(self, item: OutboundStatus) -> tuple[bytes, str, str]:
        document_id, original_sender = await self._original(
            item.origin_document_uuid, item.recipient
        )
        report = item.entry.report
        package = status_package(
            reporter=Organisation(organ_id=item.recipient),
            document_id=document_id,
            status_code=report.code.value,
            description=report.description,
            at=report.occurred_at,
        )
        return _written(package, report.occurred_at), item.recipient, original_sender

    async def _carried_by(self, item: OutboundRecall) -> str | None:
        """The DocumentId of the revoke, update or replacement package that asked this recall
        of its recipient, when it goes to the recipient too (LifecycleHandlers.supersede asks
        it): on the national axis that package is the request the recipient answers, so a
        revoke package besides would ask twice. None for a recall of its own (Recall, or a
        recipient an update dropped): that one leaves as a revoke package."""
        track = await self._documents.track(
            document_uuid=item.origin_document_uuid, document_id=None
        )
        if track is None:
            return None
        _answered, later = await self._lifecycle.links(item.sender, track)
        for link in later:
            if link.sender != item.sender or link.business_type is BusinessType.NEW:
                continue
            acting = await self._documents.track(document_uuid=link.document_uuid, document_id=None)
            if acting is not None and any(
                r.effective_recipient == item.recipient for r in acting.recipients
            ):
                return link.document_id
        return None

    async def _recall(self, item: OutboundRecall) -> bytes:
        """A revoke package (BussinessDocType 1) naming the original, with the reason."""
        local = await self._documents.track(
            document_uuid=item.origin_document_uuid, document_id=None
        )
        if local is None:
            raise NotFoundError(f"no document {item.origin_document_uuid} here")
        revoke = dataclasses.replace(
            local.header,
            recipients=(item.recipient,),
            business_type=BusinessType.REVOKE,
            response_for=(local.header.document_id,),
        )
        header = header_to_pb(revoke)
        package = document_package(header, [], sent_at=item.requested_at, reason=item.reason)
        return _written(package, item.requested_at)


def _written(package: Package, at: dt.datetime) -> bytes:
    """Strict edXML; a document the standard cannot express is refused for good."""
    try:
        return edxml_bytes(package, now=max(at, dt.datetime.now(dt.UTC)))
    except EdxmlError as exc:
        raise ValidationError(f"not expressible as edXML: {exc}") from None
