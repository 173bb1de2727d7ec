"""Conversions between the lifecycle protos (statuses, notices, recalls, pull mode) and the
domain."""

from __future__ import annotations

import datetime as dt

from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.common.errors import FieldViolation
from services.exchange.domain.model import nfc
from services.exchange.domain.statuses import (
    RecallState,
    StaffInfo,
    StatusCode,
    StatusEntry,
    StatusReport,
)
from services.exchange.entrypoints.convert import business_type_to_pb, timestamp
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    DocumentLink,
    ItemKind,
    NoticeItem,
    PendingEntry,
    RecallNoticeItem,
    RecallOutcome,
)

_CODE_FROM_PB: dict[int, StatusCode] = {
    pb.STATUS_CODE_ARRIVED: StatusCode.ARRIVED,
    pb.STATUS_CODE_REJECTED: StatusCode.REJECTED,
    pb.STATUS_CODE_ACCEPTED: StatusCode.ACCEPTED,
    pb.STATUS_CODE_ASSIGNED: StatusCode.ASSIGNED,
    pb.STATUS_CODE_PROCESSING: StatusCode.PROCESSING,
    pb.STATUS_CODE_COMPLETED: StatusCode.COMPLETED,
    pb.STATUS_CODE_RECALL_REQUESTED: StatusCode.RECALL_REQUESTED,
    pb.STATUS_CODE_RECALL_AGREED: StatusCode.RECALL_AGREED,
    pb.STATUS_CODE_RECALL_REFUSED: StatusCode.RECALL_REFUSED,
}
_CODE_TO_PB = {value: key for key, value in _CODE_FROM_PB.items()}


def status_code_from_pb(value: int) -> StatusCode | None:
    """None for STATUS_CODE_UNSPECIFIED and unknown values."""
    return _CODE_FROM_PB.get(value)


def status_code_to_pb(code: StatusCode) -> pb.StatusCode.ValueType:
    return _CODE_TO_PB[code]  # type: ignore[return-value]  # an enum value


_RECALL_TO_PB = {
    RecallState.PENDING: pb.RECALL_STATE_PENDING,
    RecallState.AGREED: pb.RECALL_STATE_AGREED,
    RecallState.REFUSED: pb.RECALL_STATE_REFUSED,
    RecallState.WITHDRAWN_BEFORE_RECEIPT: pb.RECALL_STATE_WITHDRAWN_BEFORE_RECEIPT,
}
_KIND_TO_PB = {
    ItemKind.DELIVERY: pb.ITEM_KIND_DELIVERY,
    ItemKind.STATUS: pb.ITEM_KIND_STATUS,
    ItemKind.RECALL: pb.ITEM_KIND_RECALL,
}
# Stands in for a missing timestamp so that the domain's checks still run (and report it).
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def report_from_pb(request: pb.ReportStatusRequest) -> tuple[StatusReport, list[FieldViolation]]:
    problems: list[FieldViolation] = []
    code = status_code_from_pb(request.code)
    if code is None:
        problems.append(FieldViolation("code", "required: one of the edXML status codes"))
    occurred = (
        request.occurred_at.ToDatetime(dt.UTC) if request.HasField("occurred_at") else _NAIVE_EPOCH
    )
    staff = request.staff
    report = StatusReport(
        status_id=request.status_id,
        code=code or StatusCode.ARRIVED,
        occurred_at=occurred,
        description=nfc(request.description),
        staff=StaffInfo(
            department=nfc(staff.department),
            staff=nfc(staff.staff),
            email=staff.email.strip(),
            mobile=staff.mobile.strip(),
        ),
    )
    return report, problems


def status_to_pb(entry: StatusEntry) -> pb.StatusRecord:
    report = entry.report
    return pb.StatusRecord(
        status_id=report.status_id,
        code=status_code_to_pb(report.code),
        description=report.description,
        staff=pb.StaffInfo(
            department=report.staff.department,
            staff=report.staff.staff,
            email=report.staff.email,
            mobile=report.staff.mobile,
        ),
        occurred_at=timestamp(report.occurred_at),
        recorded_at=timestamp(entry.recorded_at),
        reported_by=entry.reported_by,
    )


def notice_to_pb(item: NoticeItem) -> pb.StatusNotice | pb.RecallNotice:
    if isinstance(item, RecallNoticeItem):
        return pb.RecallNotice(
            notice_id=item.notice_id,
            document_uuid=item.document_uuid,
            document_id=item.document_id,
            delivery_id=item.delivery_id,
            sender=item.sender,
            reason=item.reason,
            requested_at=timestamp(item.requested_at),
            withdrawn=item.withdrawn,
        )
    return pb.StatusNotice(
        notice_id=item.notice_id,
        document_uuid=item.document_uuid,
        document_id=item.document_id,
        delivery_id=item.delivery_id,
        recipient=item.recipient,
        status=status_to_pb(item.entry),
    )


def notice_response(item: NoticeItem) -> pb.ReceiveResponse:
    notice = notice_to_pb(item)
    if isinstance(notice, pb.RecallNotice):
        return pb.ReceiveResponse(recall=notice)
    return pb.ReceiveResponse(status=notice)


def fetched_notice(item: NoticeItem) -> pb.FetchResponse:
    notice = notice_to_pb(item)
    if isinstance(notice, pb.RecallNotice):
        return pb.FetchResponse(recall=notice)
    return pb.FetchResponse(status=notice)


def recall_outcome_to_pb(outcome: RecallOutcome) -> pb.RecallOutcome:
    return pb.RecallOutcome(
        recipient=outcome.recipient,
        delivery_id=outcome.delivery_id,
        state=_RECALL_TO_PB[outcome.state],
        already_requested=outcome.already_requested,
    )


def pending_to_pb(entry: PendingEntry) -> pb.PendingItem:
    item = pb.PendingItem(
        kind=_KIND_TO_PB[entry.kind],
        document_uuid=entry.document_uuid,
        created_at=timestamp(entry.created_at),
        sender=entry.sender,
    )
    if entry.kind is ItemKind.DELIVERY:
        item.delivery_id = entry.item_id
    else:
        item.notice_id = entry.item_id
    return item


def add_lifecycles(response: pb.TrackResponse, lifecycles: dict[str, DeliveryLifecycle]) -> None:
    """Fills each recipient's statuses and recall into a Track answer."""
    for recipient in response.recipients:
        lifecycle = lifecycles.get(recipient.delivery_id)
        if lifecycle is None:
            continue
        recipient.statuses.extend(status_to_pb(entry) for entry in lifecycle.statuses)
        if lifecycle.recall is not None:
            recipient.recall_state = _RECALL_TO_PB[lifecycle.recall]
            recipient.recall_reason = lifecycle.recall_reason
        if lifecycle.recall_requested_at is not None:
            recipient.recall_requested_at.FromDatetime(lifecycle.recall_requested_at)
        if lifecycle.recall_answered_at is not None:
            recipient.recall_answered_at.FromDatetime(lifecycle.recall_answered_at)


def link_to_pb(link: DocumentLink) -> pb.DocumentLink:
    return pb.DocumentLink(
        document_uuid=link.document_uuid,
        document_id=link.document_id,
        sender=link.sender,
        business_type=business_type_to_pb(link.business_type),
        submitted_at=timestamp(link.submitted_at),
    )
