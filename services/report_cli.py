"""`docaxis report overdue|stalled|stats`: deadlines, stalled steps and monthly statistics from a
running axis."""

from __future__ import annotations

import argparse
import datetime as dt

from docaxis.exchange.v1 import report_service_pb2 as pb
from docaxis.exchange.v1 import report_service_pb2_grpc as pb_grpc
from google.protobuf import timestamp_pb2

from services import pki_cli
from services.exchange.domain.deadlines import deadline
from services.exchange.domain.model import VIETNAM
from services.settings import ClientSettings

TIMEOUT_S = 60.0


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    report = commands.add_parser("report", help="overdue documents and monthly statistics")
    report_commands = report.add_subparsers(dest="report_command", required=True)

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = report_commands.add_parser(name, help=help_text)
        pki_cli.add_client_options(parser, client)
        return parser

    overdue = sub("overdue", "copies an agency sent or received that are past their due date")
    stalled = sub(
        "stalled", "copies with no 01 within the grace, or no 03 by the working day's end"
    )
    for parser in (overdue, stalled):
        parser.add_argument("--agency", default="", help="default: every agency")
        parser.add_argument(
            "--as-of", type=dt.date.fromisoformat, help="at the end of this day (Vietnam)"
        )
        parser.add_argument("--limit", type=int, default=0)
    stalled.add_argument("--grace-minutes", type=int, default=0, help="for the 01; default 60")
    stats = sub("stats", "per-agency figures of one month (Vietnam calendar)")
    stats.add_argument("--month", required=True, help="YYYY-MM")
    stats.add_argument("--agency", action="append", default=[], help="repeatable; default all")


def _percent(figures: pb.AgencyStatistics, field: str) -> str:
    return f"{getattr(figures, field):.1f}%" if figures.HasField(field) else "-"  # type: ignore[arg-type]  # a field name


def format_statistics(response: pb.GetAgencyStatisticsResponse) -> list[str]:
    header = (
        f"{'agency':<15} {'sent':>7} {'received':>8} {'rejected':>8} {'recalled':>8} "
        f"{'completed':>9} {'on time':>15} {'same day':>15} {'registered same day':>19}"
    )
    lines = [f"month {response.month} (Vietnam time)", header]
    for f in response.agencies:
        on_time = f"{_percent(f, 'on_time_percent')} {f.completed_on_time}/{f.with_due_date}"
        same_day = f"{_percent(f, 'same_day_percent')} {f.arrived_same_day}/{f.received}"
        lines.append(
            f"{f.agency:<15} {f.sent:>7} {f.received:>8} {f.rejected:>8} {f.recalled:>8} "
            f"{f.completed:>9} {on_time:>15} {same_day:>15} {f.registered_same_day:>19}"
        )
    return lines


_STEPS = {pb.STALLED_STEP_NOT_ARRIVED: "no 01", pb.STALLED_STEP_NOT_REGISTERED: "no 03"}


def format_stalled(response: pb.ListStalledStepsResponse) -> list[str]:
    lines = [
        f"{_STEPS.get(c.step, '?')}  late since "
        f"{c.overdue_from.ToDatetime(dt.UTC).astimezone(VIETNAM):%Y-%m-%d %H:%M}  "
        f"{c.sender} -> {c.recipient}  {c.document_id}  {c.subject}"
        for c in response.copies
    ]
    lines.append(f"{len(response.copies)} stalled" + (" (truncated)" if response.truncated else ""))
    return lines


def _end_of(day: dt.date | None) -> timestamp_pb2.Timestamp | None:
    """The end of a Vietnam day, as the reports' `as_of`; None for now."""
    if day is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(deadline(day))
    return stamp


def format_overdue(response: pb.ListOverdueResponse) -> list[str]:
    lines = [
        f"{c.due_date}  {c.sender} -> {c.recipient}  {c.document_id}  {c.subject}"
        for c in response.copies
    ]
    lines.append(f"{len(response.copies)} overdue" + (" (truncated)" if response.truncated else ""))
    return lines


async def dispatch(args: argparse.Namespace) -> int:
    channel, admin = pki_cli.operator_channel(args)
    async with channel:
        stub = pb_grpc.ReportServiceStub(channel)
        if args.report_command == "overdue":
            request = pb.ListOverdueRequest(
                agency=args.agency, limit=args.limit, as_of=_end_of(args.as_of)
            )
            response = await stub.ListOverdue(request, metadata=admin, timeout=TIMEOUT_S)
            lines = format_overdue(response)
        elif args.report_command == "stalled":
            stalled = await stub.ListStalledSteps(
                pb.ListStalledStepsRequest(
                    agency=args.agency,
                    limit=args.limit,
                    as_of=_end_of(args.as_of),
                    arrival_grace_minutes=args.grace_minutes,
                ),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
            lines = format_stalled(stalled)
        else:
            statistics = await stub.GetAgencyStatistics(
                pb.GetAgencyStatisticsRequest(month=args.month, agencies=args.agency),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
            lines = format_statistics(statistics)
    for line in lines:
        print(line)  # noqa: T201 - a command's output
    return 0
