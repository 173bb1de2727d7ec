"""The lifecycle half of `make demo`: business statuses flow back to the sender over its push
stream, then the sender recalls the document from two recipients, one agrees and one refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence

from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.receive import ReceiveStream
from docaxis_client.vietnam import VIETNAM

STEP_TIMEOUT_S = 30.0

RECALL_REASON = "Thu hồi văn bản điện tử để chỉnh sửa nội dung"


class LifecycleDemoError(Exception):
    pass


Stream = ReceiveStream


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo narrates


def _code(code: pb.StatusCode.ValueType) -> str:
    return f"{int(code):02d} {pb.StatusCode.Name(code).removeprefix('STATUS_CODE_').lower()}"


async def next_notice(
    call: Stream, client: AgencyClient, document_uuid: str, kind: str
) -> pb.StatusNotice | pb.RecallNotice:
    """The next `kind` ("status" or "recall") notice about the document on `call`. Everything
    read is acknowledged, including leftovers of earlier demo runs, which are skipped."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        while True:
            item = await call.read()  # ReceiveStreamError when the stream ends
            which = item.WhichOneof("item")
            if which == "delivery":
                await client.acknowledge(item.delivery.delivery_id)
                continue
            notice: pb.StatusNotice | pb.RecallNotice = (
                item.status if which == "status" else item.recall
            )
            await client.acknowledge_notice(notice.notice_id)
            if which == kind and notice.document_uuid == document_uuid:
                return notice


async def run_lifecycle_demo(
    sender: AgencyClient,
    recipients: Sequence[AgencyClient],
    receipt: pb.SubmissionReceipt,
    first_step: int,
) -> None:
    """Needs the document acknowledged by every client of `recipients` (at least three)."""
    copies = {r.effective_recipient: r.delivery_id for r in receipt.routes}
    document_uuid = receipt.document_uuid
    inbox = sender.receive()
    try:
        step = first_step
        _say(f"{step}. the recipients report business statuses; each reaches the sender's stream")
        plan = [
            (recipients[0], [pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_COMPLETED]),
            (recipients[1], [pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_ASSIGNED]),
            (recipients[2], [pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_PROCESSING]),
        ]
        expected = len(recipients)  # the 01 (arrived) each acknowledgement recorded
        for client, codes in plan:
            for code in codes:
                await client.report_status(
                    copies[client.agency_code],
                    code,
                    status_id=f"demo-{uuid.uuid4()}",
                    description="Văn thư đã vào sổ" if code == pb.STATUS_CODE_ACCEPTED else "",
                    staff=pb.StaffInfo(department="Văn thư", staff="Trần Thị Bình"),
                )
                expected += 1
        for _ in range(expected):
            notice = await next_notice(inbox, sender, document_uuid, "status")
            assert isinstance(notice, pb.StatusNotice)
            when = notice.status.occurred_at.ToDatetime(dt.UTC).astimezone(VIETNAM)
            _say(f"   {notice.recipient}: {_code(notice.status.code)} at {when:%H:%M:%S}")

        step += 1
        agrees, refuses = recipients[1], recipients[2]
        _say(
            f"{step}. the sender recalls the document from {agrees.agency_code} and "
            f"{refuses.agency_code} (status 13)"
        )
        recalled = await sender.recall(
            document_uuid, RECALL_REASON, [agrees.agency_code, refuses.agency_code]
        )
        for outcome in recalled.recipients:
            state = pb.RecallState.Name(outcome.state).removeprefix("RECALL_STATE_").lower()
            _say(f"   {outcome.recipient}: recall {state}")
        for client, answer in (
            (agrees, pb.STATUS_CODE_RECALL_AGREED),
            (refuses, pb.STATUS_CODE_RECALL_REFUSED),
        ):
            stream = client.receive()
            try:
                notice = await next_notice(stream, client, document_uuid, "recall")
            finally:
                stream.cancel()
            assert isinstance(notice, pb.RecallNotice)
            _say(f"   {client.agency_code} is asked: {notice.reason!r}; answers {_code(answer)}")
            await client.report_status(
                copies[client.agency_code], answer, status_id=f"demo-{uuid.uuid4()}"
            )
        for _ in range(2):
            notice = await next_notice(inbox, sender, document_uuid, "status")
            assert isinstance(notice, pb.StatusNotice)
            _say(f"   the sender is told: {notice.recipient} {_code(notice.status.code)}")
    finally:
        inbox.cancel()

    step += 1
    _say(f"{step}. the sender tracks each copy's statuses and recall:")
    track = await sender.track(document_uuid)
    for r in track.recipients:
        state = pb.DeliveryState.Name(r.state).removeprefix("DELIVERY_STATE_").lower()
        recall = pb.RecallState.Name(r.recall_state).removeprefix("RECALL_STATE_").lower()
        recall = "none" if r.recall_state == pb.RECALL_STATE_UNSPECIFIED else recall
        history = ", ".join(f"{int(s.code):02d}" for s in r.statuses)
        _say(f"   {r.effective_recipient}: {state}; statuses {history}; recall {recall}")
    view = {r.effective_recipient: r for r in track.recipients}
    if (view[agrees.agency_code].state, view[refuses.agency_code].recall_state) != (
        pb.DELIVERY_STATE_WITHDRAWN,
        pb.RECALL_STATE_REFUSED,
    ):
        raise LifecycleDemoError("the recall answers are not what the recipients said")
