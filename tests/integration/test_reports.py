"""Deadlines and monthly statistics over a generated month (October 2026, Vietnam time) with
answers known by construction, through the gRPC ReportService and the `docaxis report` CLI.

The month: one sender S sends a document every day at 09:00 to R1 and R2, due five days later
for days 1–20, with no due date after. R1 acknowledges at 10:00 the same day, registers (03) at
11:00 and completes (06) three days later on even days, two days after the due date on odd days.
R2 acknowledges at 23:30 the same day on odd days, at 08:00 the next day on even days; it rejects
(02) days 1–4, completes days 5–20 at 23:00 on the due date except days 5 and 15 (at 00:30 the
day after: just late) and days 10 and 20 (never). S recalls day 25 from R2 before R2 receives
it. R1 also gets four documents without a due date, acknowledged ten minutes later: at 23:30 on
30 September, 23:30 on 31 October and 00:30 on 1 November (only the second is in October,
Vietnam time), and at 06:00 on 15 October, acknowledged at 08:00 (the same day in Vietnam, not
in UTC).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as xpb
from docaxis.exchange.v1 import report_service_pb2 as rpb
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc
from google.protobuf import timestamp_pb2

from docaxis_client.client import AgencyClient
from services import report_cli
from services.common import postgres
from services.common.grpc_errors import error_details
from services.exchange.adapters.postgres import PostgresDocumentStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.domain.model import VIETNAM, Header, Receipt, Route, Submission
from services.exchange.domain.statuses import StatusCode, StatusEntry, StatusReport
from services.exchange.service_layer.ports import NewSubmission
from services.settings import ClientSettings
from tests.conftest import Register, make_header
from tests.pki import SuitePki

pytestmark = pytest.mark.integration


def vn(day: int, hour: int, minute: int = 0, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=VIETNAM)


@dataclass(frozen=True, slots=True)
class Month:
    sender: str
    r1: str
    r2: str
    # Delivery ids by (recipient, day of October).
    copies: dict[tuple[str, int], str]


class Generator:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.documents = PostgresDocumentStore(pool)
        self.statuses = PostgresLifecycleStore(pool)

    async def send(
        self, sender: str, recipients: list[str], at: dt.datetime, due: dt.date | None, tag: str
    ) -> tuple[str, dict[str, str]]:
        header = Header(
            sender=sender,
            recipients=tuple(recipients),
            code_number=str(uuid.uuid4().int % 10**9),
            code_notation="UBND-VP",
            promulgation_date=at.astimezone(VIETNAM).date(),
            subject=f"Công văn {tag}",
            due_date=due,
        )
        submission = Submission(f"c-{uuid.uuid4()}", header, ())
        receipt = Receipt(
            document_uuid=str(uuid.uuid4()),
            document_id=header.document_id,
            consignment_id=submission.consignment_id,
            accepted_at=at,
            routes=tuple(Route(r, r, str(uuid.uuid4())) for r in recipients),
        )
        fingerprint = hashlib.sha256(repr(submission).encode()).hexdigest()
        assert await self.documents.store_submissions(
            [NewSubmission(submission, receipt, fingerprint, ())]
        ) == [None]
        return receipt.document_uuid, {r.effective_recipient: r.delivery_id for r in receipt.routes}

    async def status(
        self, delivery_id: str, recipient: str, code: StatusCode, at: dt.datetime
    ) -> None:
        entry = StatusEntry(
            StatusReport(
                f"gen-{uuid.uuid4()}",
                code,
                at,
                "Sai thể thức" if code is StatusCode.REJECTED else "",
            ),
            reported_by=recipient,
            recorded_at=at,
        )
        assert await self.statuses.record_status(delivery_id, entry) is not None

    async def receive(self, delivery_id: str, recipient: str, at: dt.datetime) -> None:
        assert await self.documents.acknowledge(delivery_id, recipient, at) is not None
        await self.status(delivery_id, recipient, StatusCode.ARRIVED, at)


async def generate(pool: asyncpg.Pool, sender: str, r1: str, r2: str) -> Month:
    gen = Generator(pool)
    copies: dict[tuple[str, int], str] = {}
    for day in range(1, 31):
        sent = vn(day, 9)
        due = (sent + dt.timedelta(days=5)).date() if day <= 20 else None
        document_uuid, ids = await gen.send(sender, [r1, r2], sent, due, f"ngày {day}")
        copies[(r1, day)], copies[(r2, day)] = ids[r1], ids[r2]
        # R1: same day; 06 on time on even days, two days late on odd days.
        await gen.receive(ids[r1], r1, vn(day, 10))
        await gen.status(ids[r1], r1, StatusCode.ACCEPTED, vn(day, 11))
        if due is not None:
            done = sent + dt.timedelta(days=3) if day % 2 == 0 else sent + dt.timedelta(days=7)
            await gen.status(ids[r1], r1, StatusCode.COMPLETED, done.replace(hour=15))
        # R2.
        if day == 25:
            outcomes = await gen.statuses.request_recall(
                document_uuid, sender, "Thu hồi văn bản điện tử", [r2], vn(25, 12)
            )
            assert outcomes is not None
            continue
        arrived = vn(day, 23, 30) if day % 2 == 1 else vn(day, 9) + dt.timedelta(days=1, hours=-1)
        await gen.receive(ids[r2], r2, arrived)
        if day <= 4:
            await gen.status(ids[r2], r2, StatusCode.REJECTED, arrived + dt.timedelta(hours=1))
            continue
        if due is None or day in (10, 20):
            continue
        await gen.status(ids[r2], r2, StatusCode.ACCEPTED, arrived + dt.timedelta(hours=1))
        done = (
            vn(due.day, 0, 30, month=due.month) + dt.timedelta(days=1)
            if day in (5, 15)
            else vn(due.day, 23, month=due.month)
        )
        await gen.status(ids[r2], r2, StatusCode.COMPLETED, done)
    for at, later in (
        (vn(30, 23, 30, month=9), 10),
        (vn(31, 23, 30), 10),
        (vn(1, 0, 30, month=11), 10),
        (vn(15, 6), 120),
    ):
        _, ids = await gen.send(sender, [r1], at, None, f"lúc {at.isoformat()}")
        await gen.receive(ids[r1], r1, at + dt.timedelta(minutes=later))
    return Month(sender, r1, r2, copies)


@pytest.fixture
async def month(database_url: str, register_agencies: Register) -> AsyncIterator[Month]:
    sender, r1, r2 = await register_agencies(3)
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield await generate(pool, sender, r1, r2)
    finally:
        await pool.close()


def end_of(day: dt.date) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), VIETNAM))
    return stamp


async def test_monthly_statistics_have_the_known_answers(
    month: Month, axis: str, pki: SuitePki
) -> None:
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = rpb_grpc.ReportServiceStub(channel)
        response = await stub.GetAgencyStatistics(
            rpb.GetAgencyStatisticsRequest(
                month="2026-10", agencies=[month.sender, month.r1, month.r2]
            ),
            timeout=30,
        )
    figures = {f.agency: f for f in response.agencies}
    s, r1, r2 = figures[month.sender], figures[month.r1], figures[month.r2]
    assert (s.sent, s.recalled, s.received) == (32, 1, 0)
    assert not s.HasField("on_time_percent")
    assert (r1.received, r1.rejected, r1.completed, r1.sent) == (32, 0, 20, 0)
    assert (r1.with_due_date, r1.completed_on_time, r1.on_time_percent) == (20, 10, 50.0)
    assert (r1.arrived_same_day, r1.same_day_percent) == (32, 100.0)
    assert r1.registered_same_day == 30  # 03 at 11:00 after the 01 at 10:00; none for the edges
    assert (r2.received, r2.rejected, r2.completed) == (30, 4, 14)
    assert (r2.with_due_date, r2.completed_on_time, r2.on_time_percent) == (16, 12, 75.0)
    assert r2.arrived_same_day == 14
    assert r2.same_day_percent == pytest.approx(100 * 14 / 30)
    # 03 an hour after the 01: the next day after a 23:30 arrival (odd days), the same day after
    # an 08:00 one (even days); registered days are 5–20 but 10 and 20.
    assert r2.registered_same_day == 6
    # September and November see only the edge documents (and the late completions' months do
    # not matter: figures belong to the month a copy was accepted in).
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = rpb_grpc.ReportServiceStub(channel)
        september = await stub.GetAgencyStatistics(
            rpb.GetAgencyStatisticsRequest(month="2026-09", agencies=[month.sender, month.r1]),
            timeout=30,
        )
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetAgencyStatistics(
                rpb.GetAgencyStatisticsRequest(month="2026-13"), timeout=30
            )
    assert {(f.agency, f.sent, f.received) for f in september.agencies} == {
        (month.sender, 1, 0),
        (month.r1, 0, 1),
    }
    assert error_details(bad.value).reason == "VALIDATION"


async def test_each_copy_keeps_its_due_date_its_first_answer_and_its_registration(
    month: Month, database_url: str
) -> None:
    """What the overdue and stalled reports read the open copies by (migration 0038), as the
    copies and statuses are stored: the document's due date with the copy, the first 02 or 06's
    time (answered), the first 02 or 03's (registered); nothing for a 01 or a recall."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = {
            str(r["id"]): r
            for r in await conn.fetch(
                "SELECT id, due_date, answered_at, registered_at FROM exchange.delivery "
                "WHERE id = ANY($1::uuid[])",
                [uuid.UUID(d) for d in month.copies.values()],
            )
        }
    finally:
        await conn.close()
    kept = {
        key: (r["due_date"], r["answered_at"], r["registered_at"])
        for key, r in ((key, rows[d]) for key, d in month.copies.items())
    }
    r1, r2 = month.r1, month.r2
    for day in range(1, 31):
        due = dt.date(2026, 10, day + 5) if day <= 20 else None
        done = vn(day, 15) + dt.timedelta(days=3 if day % 2 == 0 else 7)
        assert kept[(r1, day)] == (due, done if due else None, vn(day, 11)), day
    arrived = {day: vn(day, 23, 30) if day % 2 else vn(day + 1, 8) for day in range(1, 31)}
    for day in range(1, 5):  # rejected: answered and registered by the 02
        at = arrived[day] + dt.timedelta(hours=1)
        assert kept[(r2, day)] == (dt.date(2026, 10, day + 5), at, at), day
    assert kept[(r2, 5)] == (
        dt.date(2026, 10, 10),
        vn(11, 0, 30),
        arrived[5] + dt.timedelta(hours=1),
    )
    assert kept[(r2, 10)] == (dt.date(2026, 10, 15), None, None)
    assert kept[(r2, 25)] == (None, None, None)  # withdrawn before its receipt


async def test_overdue_copies_as_of_a_day_have_the_known_answers(
    month: Month, axis: str, pki: SuitePki
) -> None:
    async def overdue(agency: str, day: dt.date) -> list[tuple[str, str]]:
        async with pki.channel(axis, pki.admin_certificate) as channel:
            response = await rpb_grpc.ReportServiceStub(channel).ListOverdue(
                rpb.ListOverdueRequest(agency=agency, as_of=end_of(day)), timeout=30
            )
        return [(c.delivery_id, c.due_date) for c in response.copies]

    copies = month.copies
    november = dt.date(2026, 11, 5)
    assert await overdue(month.r2, november) == [
        (copies[(month.r2, 10)], "2026-10-15"),
        (copies[(month.r2, 20)], "2026-10-25"),
    ]
    assert await overdue(month.r1, november) == []
    # An administrator without an agency sees every agency's overdue copies.
    assert set(await overdue("", november)) >= set(await overdue(month.r2, november))
    assert await overdue(month.sender, november) == await overdue(month.r2, november)
    # On 19 October R1's day-13 copy (due the 18th, completed the 20th) was overdue too.
    october_19 = dt.date(2026, 10, 19)
    assert await overdue(month.r1, october_19) == [(copies[(month.r1, 13)], "2026-10-18")]
    assert await overdue(month.r2, october_19) == [(copies[(month.r2, 10)], "2026-10-15")]
    assert await overdue(month.sender, october_19) == [
        (copies[(month.r2, 10)], "2026-10-15"),
        (copies[(month.r1, 13)], "2026-10-18"),
    ]


async def test_an_agency_reports_on_itself_only(
    month: Month, clients: dict[str, AgencyClient]
) -> None:
    own = await clients[month.r2].reports.GetAgencyStatistics(
        rpb.GetAgencyStatisticsRequest(month="2026-10"), timeout=30
    )
    assert [(f.agency, f.received) for f in own.agencies] == [(month.r2, 30)]
    mine = await clients[month.r2].reports.ListOverdue(rpb.ListOverdueRequest(), timeout=30)
    assert len(mine.copies) == 2
    for call in (
        clients[month.r2].reports.GetAgencyStatistics(
            rpb.GetAgencyStatisticsRequest(month="2026-10", agencies=[month.r1]), timeout=30
        ),
        clients[month.r2].reports.ListOverdue(
            rpb.ListOverdueRequest(agency=month.sender), timeout=30
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert error_details(refused.value).code is grpc.StatusCode.PERMISSION_DENIED


async def test_the_report_commands_print_the_figures(
    month: Month, axis: str, pki: SuitePki, capsys: pytest.CaptureFixture[str]
) -> None:
    env = pki.client_env(pki.admin_certificate, "report-admin")
    parser = argparse.ArgumentParser()
    # The administrator's certificate and the address come from the client settings' variables.
    client = ClientSettings.from_env({**env, "DOCAXIS_ADDRESS": axis})
    report_cli.add_commands(parser.add_subparsers(dest="command"), client)
    stats = ["report", "stats", "--month", "2026-10", "--agency", month.r2]
    assert await report_cli.dispatch(parser.parse_args(stats)) == 0
    out = capsys.readouterr().out.splitlines()  # (with the in-process server's log lines)
    assert "month 2026-10 (Vietnam time)" in out
    (row,) = [line for line in out if line.startswith(month.r2)]
    assert row.split() == [
        *(month.r2, "0", "30", "4", "0", "14"),
        *("75.0%", "12/16", "46.7%", "14/30", "6"),
    ]
    overdue = ["report", "overdue", "--agency", month.r2, "--as-of", "2026-11-05"]
    assert await report_cli.dispatch(parser.parse_args(overdue)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 overdue" in lines
    rows = [line.split()[:4] for line in lines if " -> " in line]
    assert rows == [
        ["2026-10-15", month.sender, "->", month.r2],
        ["2026-10-25", month.sender, "->", month.r2],
    ]
    # r2's copy of 10 October (a Saturday) arrived on Sunday the 11th and was never registered:
    # due by the end of Monday the 12th.
    stalled = ["report", "stalled", "--agency", month.r2, "--as-of", "2026-10-12"]
    assert await report_cli.dispatch(parser.parse_args(stalled)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "1 stalled" in lines
    rows = [line.split()[:8] for line in lines if " -> " in line]
    assert rows == [
        ["no", "03", "late", "since", "2026-10-13", "00:00", month.sender, "->"],
    ]


def _stamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(dt.UTC))
    return stamp


def working_day_end(arrived: dt.datetime) -> dt.datetime:
    """The test's own statement of the rule: the end of the Vietnam day of the 01, or of the
    next Monday when that day is a Saturday or a Sunday."""
    day = arrived.astimezone(VIETNAM).date()
    while day.isoweekday() > 5:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), VIETNAM)


async def test_stalled_steps_name_copies_without_01_and_without_03_in_time(
    register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, silent, arrived, registered = await register_agencies(4)
    receipt = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}", make_header(sender, [silent, arrived, registered])
        )
    ).receipt
    for code in (arrived, registered):
        (item,) = (await clients[code].list_pending()).items
        await clients[code].fetch(item)
        await clients[code].acknowledge_item(item)
    track = await clients[sender].track(receipt.document_uuid)
    copy = {c.effective_recipient: c for c in track.recipients}
    await clients[registered].report_status(
        copy[registered].delivery_id, xpb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
    )
    accepted = receipt.accepted_at.ToDatetime(dt.UTC)
    first = copy[arrived].statuses[0]
    assert first.code == xpb.STATUS_CODE_ARRIVED
    deadline = working_day_end(first.occurred_at.ToDatetime(dt.UTC))

    async def stalled(as_of: dt.datetime, grace: int = 0) -> set[tuple[str, int]]:
        response = await clients[sender].reports.ListStalledSteps(
            rpb.ListStalledStepsRequest(as_of=_stamp(as_of), arrival_grace_minutes=grace),
            timeout=30,
        )
        overdue = [c.overdue_from.ToDatetime(dt.UTC) for c in response.copies]
        assert overdue == sorted(overdue)  # most overdue first
        return {
            (c.recipient, c.step)
            for c in response.copies
            if c.document_uuid == receipt.document_uuid
        }

    not_arrived = (silent, rpb.STALLED_STEP_NOT_ARRIVED)
    not_registered = (arrived, rpb.STALLED_STEP_NOT_REGISTERED)
    # The silent recipient's copy waits for its 01 for the grace (60 minutes by default).
    an_hour_later = accepted + dt.timedelta(minutes=61)
    assert not_arrived not in await stalled(accepted + dt.timedelta(minutes=59))
    assert not_arrived in await stalled(an_hour_later)
    assert not_arrived in await stalled(accepted + dt.timedelta(minutes=6), grace=5)
    # The arrived copy is overdue for its 03 once its working day is over; the registered one
    # never is. With a grace of one minute (0 is the default hour) for the silent copy: the
    # working day can end within the hour after the Submit (a suite run between 23:00 and
    # midnight, Vietnam time, found the silent copy not yet overdue at the deadline).
    assert not_registered not in await stalled(deadline - dt.timedelta(minutes=1))
    after_deadline = await stalled(deadline + dt.timedelta(minutes=1), grace=1)
    assert after_deadline == {not_arrived, not_registered}


async def test_a_01_on_a_saturday_is_due_for_registration_by_the_end_of_monday(
    database_url: str, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """Known answers with controlled times: 01 on Wednesday 7 October 2026 at 16:00, due by
    midnight; 01 on Saturday 10 October, due by the end of Monday 12 October; a copy with its 03
    the same day, never."""
    sender, weekday, weekend, diligent = await register_agencies(4)
    pool = await postgres.create_pool(database_url, min_size=1, max_size=2)
    try:
        gen = Generator(pool)
        _, ids = await gen.send(sender, [weekday, weekend, diligent], vn(7, 9), None, "hạn 03")
        await gen.receive(ids[weekday], weekday, vn(7, 16))
        await gen.receive(ids[weekend], weekend, vn(10, 10, 30))
        await gen.receive(ids[diligent], diligent, vn(7, 16))
        await gen.status(ids[diligent], diligent, StatusCode.ACCEPTED, vn(7, 17))
    finally:
        await pool.close()

    async def not_registered(as_of: dt.datetime) -> set[str]:
        response = await clients[sender].reports.ListStalledSteps(
            rpb.ListStalledStepsRequest(as_of=_stamp(as_of)), timeout=30
        )
        return {
            c.recipient
            for c in response.copies
            if c.step == rpb.STALLED_STEP_NOT_REGISTERED and c.sender == sender
        }

    assert await not_registered(vn(7, 23, 59)) == set()
    assert await not_registered(vn(8, 0, 1)) == {weekday}
    assert await not_registered(vn(12, 23, 59)) == {weekday}
    assert await not_registered(vn(13, 0, 1)) == {weekday, weekend}
