"""AdminService over gRPC: the administrators' console's view of the exchange."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import admin_service_pb2 as pb
from docaxis.exchange.v1 import admin_service_pb2_grpc as pb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as xpb

from docaxis_client.trust.receipts import TransportReceipt
from services.common.errors import FieldViolation
from services.common.grpc_errors import domain_errors
from services.common.identity import CallerResolver
from services.exchange.domain.delivery import HandoverFailure
from services.exchange.domain.peering import CircuitState
from services.exchange.entrypoints.convert import (
    business_type_to_pb,
    state_from_pb,
    state_to_pb,
    timestamp,
    track_to_pb,
    verification_to_pb,
)
from services.exchange.entrypoints.lifecycle_convert import (
    add_lifecycles,
    link_to_pb,
    status_code_from_pb,
    status_code_to_pb,
)
from services.exchange.service_layer.admin import AdminHandlers, SearchFilters
from services.exchange.service_layer.admin_ports import (
    CopySummary,
    DeadLetterCopy,
    DocumentHops,
    DocumentSummary,
    FoundDocument,
    HandOver,
    Resend,
    StatusBack,
)
from services.exchange.service_layer.peers import PeerState, PeerView

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["AdminService"].full_name


def search_from_pb(
    request: pb.SearchDocumentsRequest,
) -> tuple[SearchFilters, list[FieldViolation]]:
    """The filters, and the enum values that are not known (unspecified means "any")."""
    problems: list[FieldViolation] = []
    latest_status = status_code_from_pb(request.latest_status)
    if latest_status is None and request.latest_status != xpb.STATUS_CODE_UNSPECIFIED:
        problems.append(FieldViolation("latest_status", "unknown status code"))
    state = state_from_pb(request.state)
    if state is None and request.state != xpb.DELIVERY_STATE_UNSPECIFIED:
        problems.append(FieldViolation("state", "unknown delivery state"))
    filters = SearchFilters(
        document_id=request.document_id,
        code=request.code,
        sender=request.sender,
        recipient=request.recipient,
        submitted_from=request.submitted_from,
        submitted_to=request.submitted_to,
        latest_status=latest_status,
        state=state,
    )
    return filters, problems


def summary_to_pb(summary: DocumentSummary) -> pb.DocumentSummary:
    return pb.DocumentSummary(
        document_uuid=summary.document_uuid,
        document_id=summary.document_id,
        code=common_pb2.DocumentCode(number=summary.code_number, notation=summary.code_notation),
        subject=summary.subject,
        sender=summary.sender,
        submitted_at=timestamp(summary.submitted_at),
        business_type=business_type_to_pb(summary.business_type),
    )


def copy_to_pb(copy: CopySummary) -> pb.CopySummary:
    message = pb.CopySummary(
        delivery_id=copy.delivery_id,
        requested_recipient=copy.requested_recipient,
        effective_recipient=copy.effective_recipient,
        state=state_to_pb(copy.state),
    )
    if copy.latest_status is not None:
        message.latest_status = status_code_to_pb(copy.latest_status)
    return message


def found_to_pb(found: FoundDocument) -> pb.DocumentSearchResult:
    return pb.DocumentSearchResult(
        document=summary_to_pb(found.document), recipients=[copy_to_pb(c) for c in found.copies]
    )


def dead_letter_to_pb(copy: DeadLetterCopy) -> pb.DeadLetter:
    return pb.DeadLetter(
        delivery_id=copy.delivery_id,
        document=summary_to_pb(copy.document),
        requested_recipient=copy.requested_recipient,
        effective_recipient=copy.effective_recipient,
        reason=copy.reason,
        dead_lettered_at=timestamp(copy.dead_lettered_at),
        push_count=copy.push_count,
        cause=_failure_to_pb(copy.cause),
    )


def _failure_to_pb(failure: HandoverFailure | None) -> pb.HandoverFailure | None:
    return (
        None
        if failure is None
        else pb.HandoverFailure(reason=failure.reason, detail=failure.detail)
    )


def resend_to_pb(resend: Resend) -> pb.DeadLetterResend:
    return pb.DeadLetterResend(
        delivery_id=resend.delivery_id,
        resent_at=timestamp(resend.resent_at),
        administrator_subject=resend.administrator.subject,
        administrator_serial=resend.administrator.serial,
        reason=resend.reason,
        dead_lettered_at=timestamp(resend.dead_lettered_at),
        dead_letter_reason=resend.dead_letter_reason,
        push_count=resend.push_count,
    )


def _status_back_to_pb(back: StatusBack) -> pb.StatusBack:
    return pb.StatusBack(
        code=status_code_to_pb(back.code),
        occurred_at=timestamp(back.occurred_at),
        at=timestamp(back.at),
        recipient=back.recipient,
    )


def _hand_over_to_pb(hand_over: HandOver) -> pb.HandOver:
    message = pb.HandOver(
        delivery_id=hand_over.delivery_id,
        recipient=hand_over.recipient,
        next_hub=hand_over.next_hub,
        state=state_to_pb(hand_over.state),
        handed_over_at=timestamp(hand_over.handed_over_at),
        receipt=hand_over.receipt,
        statuses_back=[_status_back_to_pb(b) for b in hand_over.statuses_back],
        last_failure=_failure_to_pb(hand_over.last_failure),
    )
    if hand_over.receipt:
        message.receipt_sha256 = hashlib.sha256(hand_over.receipt).hexdigest()
        try:
            receipt = TransportReceipt.from_json(hand_over.receipt)
        except ValueError:
            return message  # another kind of peer's receipt: kept and hashed, not read
        message.MergeFrom(
            pb.HandOver(
                receipt_key_id=receipt.hub_key_id,
                receipt_signed_at=timestamp(receipt.acknowledged_at),
            )
        )
    return message


def hops_to_pb(hops: DocumentHops | None) -> pb.DocumentHops | None:
    if hops is None:
        return None
    return pb.DocumentHops(
        origin_document_uuid=hops.origin_document_uuid,
        trace=[pb.HubHop(hub=h.hub, at=timestamp(h.at)) for h in hops.trace],
        arrivals=[
            pb.Arrival(
                delivery_id=a.delivery_id,
                recipient=a.recipient,
                from_hub=a.from_hub,
                accepted_at=timestamp(a.accepted_at),
                receipt_sha256=hashlib.sha256(a.receipt).hexdigest(),
                statuses_back=[_status_back_to_pb(b) for b in a.statuses_back],
            )
            for a in hops.arrivals
        ],
        hand_overs=[_hand_over_to_pb(h) for h in hops.hand_overs],
    )


_CIRCUITS = {
    CircuitState.CLOSED: pb.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: pb.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN,
}
_PEER_STATES = {
    PeerState.UP: pb.PEER_STATE_UP,
    PeerState.RETRYING: pb.PEER_STATE_RETRYING,
    PeerState.DOWN: pb.PEER_STATE_DOWN,
    PeerState.NOT_CONTACTED: pb.PEER_STATE_NOT_CONTACTED,
    PeerState.NOT_CONFIGURED: pb.PEER_STATE_NOT_CONFIGURED,
}


def peer_to_pb(view: PeerView) -> pb.Peer:
    queue, report = view.queue, view.report
    message = pb.Peer(
        hub=view.hub,
        state=_PEER_STATES[view.state],
        queue_depth=queue.depth,
        oldest_queued_at=timestamp(queue.oldest_queued_at),
        oldest_age_s=view.oldest_age_s,
        dead_letters=queue.dead_letters,
        received_per_minute=view.received_per_minute,
    )
    if report is not None:
        message.MergeFrom(
            pb.Peer(
                kind=report.kind,
                address=report.address,
                circuit=_CIRCUITS[report.circuit],
                last_contact=timestamp(report.last_contact),
                consecutive_failures=report.consecutive_failures,
                last_failure_at=timestamp(report.last_failure_at),
                last_error=report.last_error,
                forwarded=report.forwarded,
                refused=report.refused,
                failures=report.failures,
                forwarded_per_minute=report.forwarded_per_minute,
                reported_at=timestamp(report.reported_at),
            )
        )
    return message


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, handlers: AdminHandlers, callers: CallerResolver) -> None:
        self._handlers = handlers
        self._callers = callers

    async def SearchDocuments(
        self, request: pb.SearchDocumentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SearchDocumentsResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            filters, problems = search_from_pb(request)
            found, token = await self._handlers.search(
                caller, filters, request.page_size, request.page_token, wire_problems=problems
            )
            return pb.SearchDocumentsResponse(
                documents=[found_to_pb(f) for f in found], next_page_token=token
            )

    async def GetDocumentTimeline(
        self, request: pb.GetDocumentTimelineRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetDocumentTimelineResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            timeline = await self._handlers.timeline(caller, request.document_uuid)
            # Track's answer for the sender, which already holds the header and every copy's
            # states, timestamps, statuses and recall.
            track = track_to_pb(timeline.track)
            add_lifecycles(track, timeline.lifecycles)
            header = timeline.track.header
            return pb.GetDocumentTimelineResponse(
                document=summary_to_pb(
                    DocumentSummary(
                        document_uuid=timeline.track.document_uuid,
                        document_id=header.document_id,
                        code_number=header.code_number,
                        code_notation=header.code_notation,
                        subject=header.subject,
                        sender=header.sender,
                        submitted_at=timeline.track.submitted_at,
                        business_type=header.business_type,
                    )
                ),
                header=track.header,
                recipients=track.recipients,
                in_reply_to=[link_to_pb(link) for link in timeline.in_reply_to],
                replies=[link_to_pb(link) for link in timeline.replies],
                resends=[resend_to_pb(r) for r in timeline.resends],
                trace_id=timeline.trace_id,
                verification=verification_to_pb(timeline.track.verification),
                hops=hops_to_pb(timeline.hops),
            )

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListDeadLettersResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            copies, token = await self._handlers.dead_letters(
                caller, request.agency, request.page_size, request.page_token, peer=request.peer
            )
            return pb.ListDeadLettersResponse(
                dead_letters=[dead_letter_to_pb(c) for c in copies], next_page_token=token
            )

    async def ResendDeadLetter(
        self, request: pb.ResendDeadLetterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResendDeadLetterResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            resend = await self._handlers.resend(caller, request.delivery_id, request.reason)
            return pb.ResendDeadLetterResponse(
                resend=resend_to_pb(resend), state=xpb.DELIVERY_STATE_QUEUED
            )

    async def ListPeers(
        self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPeersResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            views = await self._handlers.peers(caller)
            return pb.ListPeersResponse(peers=[peer_to_pb(v) for v in views])

    async def ResendPeerDeadLetters(
        self,
        request: pb.ResendPeerDeadLettersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.ResendPeerDeadLettersResponse:
        async with domain_errors(context):
            caller = await self._callers.authenticate(context)
            resends, remaining = await self._handlers.resend_peer_dead_letters(
                caller, request.hub, request.reason, request.limit
            )
            return pb.ResendPeerDeadLettersResponse(
                resends=[resend_to_pb(r) for r in resends], remaining=remaining
            )
