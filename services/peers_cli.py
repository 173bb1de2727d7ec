"""`docaxis peers`: the federation peers of a running hub (AdminService.ListPeers, as
administrator): state, queue depth, oldest waiting item, circuit, last contact, throughput; the
copies dead-lettered on their way to a peer, and their audited resend; the hub routes that send
mail for codes this hub does not serve to a peer (DirectoryService.SetHubRoute, ledgered)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import admin_service_pb2 as pb
from docaxis.exchange.v1 import admin_service_pb2_grpc as pb_grpc
from google.protobuf import json_format, timestamp_pb2

from services import pki_cli
from services.settings import ClientSettings

TIMEOUT_S = 30.0


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    peers = commands.add_parser(
        "peers", help="federation peers: state, queue, circuit, last contact, throughput"
    )
    peer_commands = peers.add_subparsers(dest="peers_command")

    def sub(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        pki_cli.add_client_options(parser, client)
        parser.add_argument("--json", action="store_true", help="the answer as JSON")
        return parser

    sub(peers)  # `docaxis peers` alone lists them
    sub(peer_commands.add_parser("list", help="every peer with its figures (the default)"))
    dead = sub(
        peer_commands.add_parser("dead-letters", help="copies dead-lettered on the way to a peer")
    )
    dead.add_argument("hub", help="the peer's hub code")
    resend = sub(
        peer_commands.add_parser(
            "resend-dead-letters",
            help="put a peer's dead-lettered copies back on the way (audited in the ledger)",
        )
    )
    resend.add_argument("hub", help="the peer's hub code")
    resend.add_argument("--reason", required=True, help="why (kept with every copy)")
    resend.add_argument("--limit", type=int, default=0, help="at most this many (default 1000)")
    sub(peer_commands.add_parser("routes", help="the hub routes (pattern -> peer)"))
    route = sub(
        peer_commands.add_parser(
            "route",
            help="send mail for these codes to a peer (--to): whole codes (override even what the "
            "hub serves), level-1 parts (H29), group letters (G) or *; --remove drops them",
        )
    )
    route.add_argument("patterns", nargs="+", metavar="pattern")
    route.add_argument("--to", default="", metavar="HUB", help="the peer's hub code")
    route.add_argument("--remove", action="store_true", help="remove the routes of the patterns")


async def dispatch(args: argparse.Namespace) -> int:
    channel, admin = pki_cli.operator_channel(args)
    async with channel:
        stub = pb_grpc.AdminServiceStub(channel)
        command = args.peers_command or "list"
        if command in ("route", "routes"):
            return await _routes(args, dpb_grpc.DirectoryServiceStub(channel), admin)
        if command == "list":
            listed = await stub.ListPeers(pb.ListPeersRequest(), metadata=admin, timeout=TIMEOUT_S)
            _print(args, listed, format_peers(listed, dt.datetime.now(dt.UTC)))
            return 0
        if command == "dead-letters":
            token, pages = "", pb.ListDeadLettersResponse()
            while True:
                page = await stub.ListDeadLetters(
                    pb.ListDeadLettersRequest(peer=args.hub, page_size=200, page_token=token),
                    metadata=admin,
                    timeout=TIMEOUT_S,
                )
                pages.dead_letters.extend(page.dead_letters)
                token = page.next_page_token
                if not token:
                    break
            _print(args, pages, format_dead_letters(pages))
            return 0
        resent = await stub.ResendPeerDeadLetters(
            pb.ResendPeerDeadLettersRequest(hub=args.hub, reason=args.reason, limit=args.limit),
            metadata=admin,
            timeout=TIMEOUT_S * 10,
        )
        lines = [f"{len(resent.resends)} resent to {args.hub}, {resent.remaining} left over"]
        _print(args, resent, lines)
        return 0


async def _routes(
    args: argparse.Namespace,
    directory: dpb_grpc.DirectoryServiceAsyncStub,
    admin: tuple[tuple[str, str], ...],
) -> int:
    if args.peers_command == "route":
        if args.remove == bool(args.to):
            print("docaxis peers route: give --to HUB or --remove")
            return 2
        for pattern in args.patterns:
            await directory.SetHubRoute(
                dpb.SetHubRouteRequest(route=dpb.HubRoute(pattern=pattern, hub_code=args.to)),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
    listed = await directory.ListHubRoutes(
        dpb.ListHubRoutesRequest(), metadata=admin, timeout=TIMEOUT_S
    )
    _print(args, listed, [f"{r.pattern} -> {r.hub_code}" for r in listed.routes] or ["(none)"])
    return 0


def _print(args: argparse.Namespace, message: object, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(json_format.MessageToDict(message), ensure_ascii=False, indent=2))  # type: ignore[arg-type]
    else:
        print("\n".join(lines))


_STATES = {
    pb.PEER_STATE_UP: "up",
    pb.PEER_STATE_RETRYING: "retrying",
    pb.PEER_STATE_DOWN: "DOWN",
    pb.PEER_STATE_NOT_CONTACTED: "not contacted",
    pb.PEER_STATE_NOT_CONFIGURED: "not configured",
}
_CIRCUITS = {
    pb.CIRCUIT_STATE_CLOSED: "closed",
    pb.CIRCUIT_STATE_OPEN: "open",
    pb.CIRCUIT_STATE_HALF_OPEN: "half-open",
}


def duration(seconds: float) -> str:
    """A short human duration: 42s, 7m05s, 3h12m, 2d04h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _ago(stamp: timestamp_pb2.Timestamp, now: dt.datetime, present: bool) -> str:
    if not present:
        return "never"
    return duration(max(0.0, (now - stamp.ToDatetime(dt.UTC)).total_seconds())) + " ago"


def format_peers(response: pb.ListPeersResponse, now: dt.datetime) -> list[str]:
    header = (
        f"{'peer':<16} {'kind':<14} {'state':<14} {'circuit':<9} {'queue':>6} {'oldest':>8} "
        f"{'dead':>5} {'last contact':>14} {'out/min':>8} {'in/min':>7}"
    )
    lines = [header]
    for p in response.peers:
        oldest = duration(p.oldest_age_s) if p.queue_depth else "-"
        contact = _ago(p.last_contact, now, p.HasField("last_contact"))
        lines.append(
            f"{p.hub:<16} {p.kind or '-':<14} {_STATES.get(p.state, '?'):<14} "
            f"{_CIRCUITS.get(p.circuit, '-'):<9} {p.queue_depth:>6} {oldest:>8} "
            f"{p.dead_letters:>5} {contact:>14} {p.forwarded_per_minute:>8.1f} "
            f"{p.received_per_minute:>7.1f}"
        )
        if p.last_error and p.state != pb.PEER_STATE_UP:
            lines.append(f"  last error ({_ago(p.last_failure_at, now, True)}): {p.last_error}")
    if not response.peers:
        lines.append("(no peers: DOCAXIS_HUB_CODE and DOCAXIS_PEERS configure federation)")
    return lines


def format_dead_letters(response: pb.ListDeadLettersResponse) -> list[str]:
    lines = [
        f"{x.dead_lettered_at.ToDatetime(dt.UTC):%Y-%m-%d %H:%M:%S}Z  {x.delivery_id}  "
        f"{x.document.sender} -> {x.effective_recipient or x.requested_recipient}  "
        f"{x.document.document_id}  {x.reason}"
        for x in response.dead_letters
    ]
    lines.append(f"{len(response.dead_letters)} dead-lettered")
    return lines
