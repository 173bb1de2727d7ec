"""FederationService's messages in the exchange's own terms, both ways (the servicer here reads
them; the client transport to a peer, wired in the composition root, writes them)."""

from __future__ import annotations

import datetime as dt

from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import federation_service_pb2 as fpb
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import DomainError, FieldViolation, UnavailableError, ValidationError
from services.common.grpc_errors import status_details
from services.exchange.domain.peering import Hop
from services.exchange.domain.statuses import StatusEntry
from services.exchange.entrypoints.convert import (
    submission_from_pb,
    submission_to_pb,
    timestamp,
    trace_to_pb,
)
from services.exchange.entrypoints.lifecycle_convert import report_from_pb, status_to_pb
from services.exchange.service_layer.federation_ports import (
    HopOutcome,
    OutboundDocument,
    OutboundItem,
    OutboundRecall,
    OutboundStatus,
)


def item_to_pb(item: OutboundItem) -> fpb.ForwardRequest:
    if isinstance(item, OutboundDocument):
        return fpb.ForwardRequest(
            item_id=item.item_id,
            document=fpb.ForwardedDocument(
                origin_document_uuid=item.origin_document_uuid,
                recipient=item.recipient,
                requested_recipient=item.requested_recipient,
                submission=submission_to_pb(item.submission),
                source_document_uuid=item.source_document_uuid,
                trace=trace_to_pb(item.trace),
            ),
        )
    if isinstance(item, OutboundStatus):
        return fpb.ForwardRequest(
            item_id=item.item_id,
            status=fpb.ForwardedStatus(
                origin_document_uuid=item.origin_document_uuid,
                recipient=item.recipient,
                status=status_to_pb(item.entry),
            ),
        )
    return fpb.ForwardRequest(
        item_id=item.item_id,
        recall=fpb.ForwardedRecall(
            origin_document_uuid=item.origin_document_uuid,
            recipient=item.recipient,
            sender=item.sender,
            reason=item.reason,
            requested_at=timestamp(item.requested_at),
        ),
    )


def _invalid(problems: list[FieldViolation]) -> ValidationError:
    fields = "; ".join(f"{p.field}: {p.description}" for p in problems)
    return ValidationError(f"invalid forwarded item ({fields})", problems)


def item_from_pb(request: fpb.ForwardRequest) -> OutboundItem:
    """The item a peer handed over; ValidationError when it does not parse."""
    kind = request.WhichOneof("item")
    if kind == "document":
        d = request.document
        submission, problems = submission_from_pb(d.submission)
        if problems:
            raise _invalid(problems)
        return OutboundDocument(
            item_id=request.item_id,
            origin_document_uuid=d.origin_document_uuid,
            source_document_uuid=d.source_document_uuid,
            recipient=d.recipient,
            requested_recipient=d.requested_recipient or d.recipient,
            submission=submission,
            trace=tuple(Hop(h.hub_code, h.at.ToDatetime(dt.UTC)) for h in d.trace),
        )
    if kind == "status":
        s = request.status
        report, problems = report_from_pb(
            pb.ReportStatusRequest(
                code=s.status.code,
                description=s.status.description,
                staff=s.status.staff,
                occurred_at=s.status.occurred_at,
                status_id=s.status.status_id,
            )
        )
        if problems:
            raise _invalid(problems)
        entry = StatusEntry(
            report,
            reported_by=s.status.reported_by,
            recorded_at=s.status.recorded_at.ToDatetime(dt.UTC),
        )
        return OutboundStatus(request.item_id, s.origin_document_uuid, s.recipient, entry)
    if kind == "recall":
        r = request.recall
        return OutboundRecall(
            request.item_id,
            r.origin_document_uuid,
            r.recipient,
            r.sender,
            r.reason,
            r.requested_at.ToDatetime(dt.UTC),
        )
    raise _invalid([FieldViolation("item", "a document, a status or a recall")])


def outcome_to_pb(outcome: HopOutcome) -> fpb.ForwardResponse:
    return fpb.ForwardResponse(
        item_id=outcome.item_id,
        hop_receipt=outcome.receipt,
        error=status_details(outcome.error) if outcome.error is not None else b"",
        retryable=outcome.retryable,
    )


def outcome_from_pb(response: fpb.ForwardResponse) -> HopOutcome:
    if not response.error:
        return HopOutcome(response.item_id, receipt=response.hop_receipt)
    status = status_pb2.Status.FromString(response.error)
    reason = "UNSPECIFIED"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    error: DomainError = (
        UnavailableError(status.message) if response.retryable else DomainError(status.message)
    )
    error.reason = reason
    return HopOutcome(response.item_id, error=error, retryable=response.retryable)
