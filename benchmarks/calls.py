"""`python -m benchmarks.calls` (`make bench-calls`): what one unary gRPC call costs the server
in CPU, through docaxis's call stack against a bare grpc.aio server, both over mutual TLS.

"docaxis" is the production stack: `build_server` (CallInterceptor: the `rpc_finished` line with
its span, the per-agency limits with the caller resolved from the client certificate, the
control-character check, UNAVAILABLE for unreachable backends), JSON logs to a file, and a
handler that authenticates its caller as every servicer does (`TlsCallerResolver`). "bare" is
`grpc.aio.server()` with the same credentials and a handler that only answers. Each server is a
process of its own (on uvloop, as docaxis runs); this process makes the calls, a few at a time,
round by round, each server in turn, and reads each server's CPU from /proc around its rounds:
microseconds of server CPU per call, the median of the rounds. About 30 s with the defaults.

`--against DIR` adds the docaxis stack of another checkout (a `git archive` of main, with this
file copied into its benchmarks/) to the same rounds: an A/B whose two sides share whatever the
machine's neighbours do meanwhile. Nothing else runs: no Postgres, no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from docaxis.directory.v1 import directory_service_pb2 as pb

from benchmarks.stack import BenchPki
from services.common import event_loop

VARIANTS = ("bare", "docaxis")
SERVICE = "bench.Calls"
METHOD = f"/{SERVICE}/Call"
AGENCY = "000.00.13.H45"
# A request with a text field, so that the control-character check has something to walk.
REQUEST = pb.GetAgencyRequest(code=AGENCY)


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the server (a child process) ---


async def _serve(variant: str, pki: Path) -> None:
    from grpc_health.v1 import health

    from services.common.grpc_limits import AgencyCallLimits
    from services.common.grpc_server import build_server
    from services.common.identity import TlsCallerResolver
    from services.common.limits import AgencyLimits, LimitSettings, Rate
    from services.common.metrics import AxisMetrics
    from services.common.trust import ServerTls, TrustRegistry

    trust = TrustRegistry.from_files(str(pki / "bundle.pem"))
    tls = ServerTls.from_files(str(pki / "server.pem"), str(pki / "server.key"))
    credentials = tls.credentials(trust.roots_pem())
    callers = TlsCallerResolver(trust)

    async def answer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return request

    async def servicer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        (await callers.authenticate(context)).require_agency()
        return request

    def add(handler: Any) -> Any:
        method = grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=pb.GetAgencyRequest.FromString,
            response_serializer=pb.GetAgencyRequest.SerializeToString,
        )
        return lambda server: server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Call": method}),)
        )

    if variant == "bare":
        server = grpc.aio.server()
        add(answer)(server)
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        metrics = AxisMetrics()
        # Limits on, as in production, but high enough never to refuse the bench's calls.
        unlimited = LimitSettings(other_rate=Rate(per_s=1e9, burst=1e9), max_calls_in_flight=0)
        server, port = build_server(
            "127.0.0.1:0",
            [add(servicer)],
            [SERVICE],
            health.aio.HealthServicer(),
            credentials=credentials,
            refusals=metrics.rejected,
            agency_limits=AgencyCallLimits(
                AgencyLimits(unlimited),
                lambda context: callers.resolve(context).agency_code,
                metrics.limit_refused,
            ),
        )
    await server.start()
    import services

    # The port, and whose code this is (a checkout's own, not the venv's editable install).
    print(port, Path(services.__file__).resolve().parent.parent, flush=True)
    await asyncio.Event().wait()


def _server_main(variant: str, pki: Path, log: Path) -> None:
    from services.common.logs import configure_logging

    # The call's log lines go where a service's go (stderr, JSON off a TTY): here a file.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    configure_logging("INFO", json=True)
    event_loop.run(_serve(variant, pki))


# --- the client (this process) ---


@dataclass
class _Server:
    """A server process and the client's channel to it."""

    label: str
    process: subprocess.Popen[str]
    log: Path
    channel: grpc.aio.Channel | None = None
    per_call: list[float] = field(default_factory=list)

    async def connect(self, pki: BenchPki, port: int) -> None:
        keys = pki.keys(AGENCY).agency
        credentials = grpc.ssl_channel_credentials(pki.bundle_pem, _key_pem(keys), keys.chain_pem())
        self.channel = grpc.aio.secure_channel(f"localhost:{port}", credentials)

    async def calls(self, total: int, concurrency: int) -> int:
        """Makes about `total` calls, `concurrency` at a time; how many it made."""
        assert self.channel is not None
        call = self.channel.unary_unary(
            METHOD,
            request_serializer=pb.GetAgencyRequest.SerializeToString,
            response_deserializer=pb.GetAgencyRequest.FromString,
        )

        async def one_after_another(count: int) -> None:
            for _ in range(count):
                await call(REQUEST, timeout=10)

        each = total // concurrency
        await asyncio.gather(*(one_after_another(each) for _ in range(concurrency)))
        return each * concurrency

    async def round(self, args: argparse.Namespace) -> str:
        before, started = _cpu_s(self.process.pid), time.monotonic()
        made = await self.calls(args.calls, args.concurrency)
        cpu, wall = _cpu_s(self.process.pid) - before, time.monotonic() - started
        self.per_call.append(cpu * 1e6 / made)
        return f"{self.label} {self.per_call[-1]:.0f} us ({made / wall:,.0f}/s)"


def _key_pem(issued: Any) -> bytes:
    from docaxis_client.trust.demo_pki import key_pem

    return key_pem(issued.key)


async def _profiled(server: _Server, args: argparse.Namespace) -> None:
    """py-spy's raw stacks of the server while it takes calls (not counted)."""
    spy = Path(sys.executable).parent / "py-spy"
    duration = 6
    recorder = await asyncio.create_subprocess_exec(
        *(str(spy), "record", "-r", "400", "-d", str(duration), "-f", "raw"),
        *("-o", str(args.profile), "-p", str(server.process.pid)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        await server.calls(args.calls // 4, args.concurrency)
    await recorder.wait()


def _start(
    label: str, variant: str, checkout: Path, pki: BenchPki, folder: Path
) -> tuple[_Server, int]:
    """A server of `variant` running `checkout`'s code, and its port."""
    log = folder / f"{len(list(folder.glob('*.log')))}.log"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = ["-m", "benchmarks.calls", "--serve", variant, "--pki", str(pki.folder)]
    process = subprocess.Popen(
        [sys.executable, *command, "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=checkout,
        env=env,
    )
    assert process.stdout is not None
    started = process.stdout.readline()
    if not started:
        process.kill()
        raise SystemExit(f"the {label} server did not start:\n{log.read_text()[-3000:]}")
    port, code = started.split(maxsplit=1)
    print(f"{label}: code {code.strip()}", flush=True)
    return _Server(label, process, log), int(port)


async def _run(servers: list[tuple[_Server, int]], pki: BenchPki, args: argparse.Namespace) -> None:
    for server, port in servers:
        await server.connect(pki, port)
        await server.calls(args.warm_up, args.concurrency)
    profiled = next((s for s, _ in servers if s.label == "docaxis"), None)
    if args.profile and profiled is not None:
        await _profiled(profiled, args)
    # Round by round, each server in turn: what the machine's neighbours do meanwhile falls on
    # every server alike.
    for number in range(1, args.rounds + 1):
        line = [await server.round(args) for server, _ in servers]
        print(f"round {number}: " + ", ".join(line), flush=True)
    for server, _ in servers:
        assert server.channel is not None
        await server.channel.close()


def _report(servers: list[_Server]) -> None:
    medians = {server.label: statistics.median(server.per_call) for server in servers}
    print(
        "server CPU per unary call, medians: "
        + ", ".join(f"{label} {value:.0f} us" for label, value in medians.items())
    )
    if "bare" in medians and "docaxis" in medians:
        print(f"docaxis's stack: {medians['docaxis'] - medians['bare']:.0f} us over bare")
    ours = next((server for server in servers if server.label == "docaxis"), None)
    for other in servers:
        if ours is None or "@" not in other.label:
            continue
        paired = [b - a for a, b in zip(other.per_call, ours.per_call, strict=True)]
        print(
            f"docaxis against {other.label}: {statistics.median(paired):+.0f} us per call "
            f"(median of the rounds' differences), {medians['docaxis'] / medians[other.label]:.3f}"
            " of its median"
        )
    for server in servers:
        if server.label.startswith("docaxis"):  # the line each call writes is measured too
            lines = server.log.read_text().count('"event": "rpc_finished"')
            print(f"{server.label}: {lines:,} rpc_finished lines logged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per round and server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at once")
    parser.add_argument("--warm-up", type=int, default=400)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        help="another checkout (e.g. a git archive of main) whose docaxis stack is measured in "
        "the same rounds; it needs this file in its benchmarks/",
    )
    parser.add_argument("--profile", help="py-spy raw stacks of the docaxis server to this file")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _server_main(args.serve, args.pki, args.log)
        return
    import services

    here = Path(services.__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        folder = Path(tmp)
        pki = BenchPki(folder / "pki")
        wanted = [(variant, variant, here) for variant in args.variants.split(",")]
        wanted += [(f"docaxis@{other.name}", "docaxis", other.resolve()) for other in args.against]
        servers: list[tuple[_Server, int]] = []
        try:
            for label, variant, checkout in wanted:
                servers.append(_start(label, variant, checkout, pki, folder))
            event_loop.run(_run(servers, pki, args))
        finally:
            for server, _ in servers:
                server.process.kill()
                server.process.wait()
        _report([server for server, _ in servers])


if __name__ == "__main__":
    main()
