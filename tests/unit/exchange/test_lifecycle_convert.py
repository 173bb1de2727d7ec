"""The lifecycle's wire conversions: every problem reported at once, items in the right oneof."""

from __future__ import annotations

import datetime as dt

from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.exchange.domain.model import DeliveryState
from services.exchange.domain.statuses import (
    RecallState,
    StaffInfo,
    StatusCode,
    StatusEntry,
    StatusReport,
    report_problems,
)
from services.exchange.entrypoints.convert import state_from_pb, state_to_pb
from services.exchange.entrypoints.lifecycle_convert import (
    add_lifecycles,
    fetched_notice,
    notice_response,
    pending_to_pb,
    report_from_pb,
    status_code_from_pb,
    status_code_to_pb,
    status_to_pb,
)
from services.exchange.service_layer.lifecycle_ports import (
    DeliveryLifecycle,
    ItemKind,
    PendingEntry,
    RecallNoticeItem,
    StatusNoticeItem,
)
from tests.unit.exchange.builders import HEALTH, NOW, SENDER

ENTRY = StatusEntry(
    StatusReport("s-1", StatusCode.ACCEPTED, NOW, "Đã vào sổ", StaffInfo("Văn thư", "A")),
    reported_by=HEALTH,
    recorded_at=NOW + dt.timedelta(seconds=1),
)


def test_a_report_without_code_time_or_key_lists_every_problem() -> None:
    report, problems = report_from_pb(pb.ReportStatusRequest(delivery_id="d"))
    assert [p.field for p in problems] == ["code"]
    assert {p.field for p in report_problems(report, now=NOW)} == {"status_id", "occurred_at"}


def test_a_report_round_trips_with_its_own_timestamp_and_staff() -> None:
    record = status_to_pb(ENTRY)
    request = pb.ReportStatusRequest(
        delivery_id="d",
        code=record.code,
        description=record.description,
        staff=record.staff,
        occurred_at=record.occurred_at,
        status_id=record.status_id,
    )
    report, problems = report_from_pb(request)
    assert (report, problems) == (ENTRY.report, [])
    assert record.code == pb.STATUS_CODE_ACCEPTED == 3
    assert record.recorded_at.ToDatetime(dt.UTC) == ENTRY.recorded_at


def test_notices_go_into_their_own_oneof_member() -> None:
    status = StatusNoticeItem("n-1", "u", "id", "d", HEALTH, ENTRY)
    recall = RecallNoticeItem("n-2", "u", "id", "d", SENDER, "Thu hồi", NOW, withdrawn=True)
    assert notice_response(status).WhichOneof("item") == "status"
    assert notice_response(recall).recall.withdrawn
    assert fetched_notice(status).status.status.status_id == "s-1"
    assert fetched_notice(recall).recall.reason == "Thu hồi"
    delivery = pending_to_pb(PendingEntry(ItemKind.DELIVERY, "d-1", "u", NOW, "000.00.00.G22"))
    notice = pending_to_pb(PendingEntry(ItemKind.RECALL, "n-2", "u", NOW, "000.00.00.G22"))
    assert delivery.sender == notice.sender == "000.00.00.G22"
    assert (delivery.WhichOneof("id"), delivery.kind) == ("delivery_id", pb.ITEM_KIND_DELIVERY)
    assert (notice.WhichOneof("id"), notice.kind) == ("notice_id", pb.ITEM_KIND_RECALL)


def test_track_gets_each_copys_statuses_and_recall() -> None:
    response = pb.TrackResponse(
        recipients=[pb.RecipientState(delivery_id="d-1"), pb.RecipientState(delivery_id="d-2")]
    )
    add_lifecycles(
        response,
        {
            "d-1": DeliveryLifecycle(
                "d-1", (ENTRY,), RecallState.REFUSED, "Thu hồi", NOW, NOW + dt.timedelta(hours=1)
            ),
            "d-2": DeliveryLifecycle("d-2", ()),
        },
    )
    first, second = response.recipients
    assert [s.status_id for s in first.statuses] == ["s-1"]
    assert (first.recall_state, first.recall_reason) == (pb.RECALL_STATE_REFUSED, "Thu hồi")
    assert first.recall_answered_at.ToDatetime(dt.UTC) == NOW + dt.timedelta(hours=1)
    assert (list(second.statuses), second.recall_state) == ([], pb.RECALL_STATE_UNSPECIFIED)
    assert not second.HasField("recall_requested_at")


def test_every_status_code_and_delivery_state_has_its_wire_value_both_ways() -> None:
    """Admin filters read these back: a code or state added to the domain without its wire
    value fails here, not on a live search."""
    for code in StatusCode:
        assert status_code_from_pb(status_code_to_pb(code)) is code
    for state in DeliveryState:
        assert state_from_pb(state_to_pb(state)) is state
    assert status_code_from_pb(pb.STATUS_CODE_UNSPECIFIED) is None
    assert state_from_pb(pb.DELIVERY_STATE_UNSPECIFIED) is None
