"""`docaxis report overdue|stats`: deadlines and monthly statistics from a running axis."""

from __future__ import annotations

import argparse
import datetime as dt
import os

from docaxis.exchange.v1 import report_service_pb2 as pb
from docaxis.exchange.v1 import report_service_pb2_grpc as pb_grpc
from google.protobuf import timestamp_pb2

from services import pki_cli
from services.exchange.domain.model import VIETNAM

TIMEOUT_S = 60.0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from services.settings import DEFAULT_GRPC_ADDRESS

    report = commands.add_parser("report", help="overdue documents and monthly statistics")
    report_commands = report.add_subparsers(dest="report_command", required=True)

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = report_commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--address", default=os.environ.get("DOCAXIS_ADDRESS", DEFAULT_GRPC_ADDRESS)
        )
        pki_cli.add_client_options(parser)
        return parser

    overdue = sub("overdue", "copies an agency sent or received that are past their due date")
    overdue.add_argument("--agency", required=True)
    overdue.add_argument(
        "--as-of", type=dt.date.fromisoformat, help="at the end of this day (Vietnam); default now"
    )
    overdue.add_argument("--limit", type=int, default=0)
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
            request = pb.ListOverdueRequest(agency=args.agency, limit=args.limit)
            if args.as_of is not None:
                end = dt.datetime.combine(args.as_of + dt.timedelta(days=1), dt.time(), VIETNAM)
                stamp = timestamp_pb2.Timestamp()
                stamp.FromDatetime(end.astimezone(dt.UTC))
                request.as_of.CopyFrom(stamp)
            response = await stub.ListOverdue(request, metadata=admin, timeout=TIMEOUT_S)
            lines = format_overdue(response)
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
