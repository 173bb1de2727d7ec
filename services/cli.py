"""The `docaxis` command: run the axis, migrate, manage agencies, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from docaxis_client.ledger.cosignature import CosignerVerifier
from docaxis_client.ledger.note import NoteError, NoteSigner
from docaxis_client.ledger.policy import LogKey, PolicyError, TrustPolicy, WitnessKey
from services import binding_cli, health_cli, peers_cli, pki_cli, report_cli, sign_cli
from services.bootstrap.plan import ALL_COMPONENTS, Component, plan, read_signer_keys
from services.common import event_loop
from services.common.config import ConfigError
from services.common.errors import ConflictError
from services.common.grpc_errors import error_details
from services.common.progress import Progress
from services.directory.agency_csv import (
    DEMO_DIRECTORY_CSV,
    kind_from_name,
    read_agency_csv,
    register_all,
)
from services.directory.reorganisation_cli import record_reorganisation, sync_agencies
from services.settings import (
    DEFAULT_LEDGER_ORIGIN,
    WORKER_INDEX_ENV,
    ClientSettings,
    LedgerExportSettings,
    Settings,
)
from services.witness import cli as witness_cli

# The serving side (bootstrap, adapters, the ledger's export, logging and tracing setup) is
# imported inside the commands that use it: at the top, every `docaxis` command paid its import
# (~1.5 s of CPU of the ~1.8 s a `docaxis ledger vkey` took), and `make run`, `make demo`,
# `make audit` and the suite run short commands by the dozen.


def main(argv: Sequence[str] | None = None) -> None:
    client = ClientSettings.from_env()
    parser = argparse.ArgumentParser(prog="docaxis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the axis until Ctrl-C (all services by default)")
    run.add_argument(
        "--components",
        default=",".join(sorted(ALL_COMPONENTS)),
        help="comma-separated: directory, exchange",
    )
    run.add_argument("--seed-demo", action="store_true", help="register the demo agencies first")
    run.add_argument("--demo-agencies", type=Path, default=None, help="CSV of demo agencies")

    commands.add_parser("migrate", help="apply database migrations")

    agencies = commands.add_parser("agencies", help="manage the agency directory")
    agency_commands = agencies.add_subparsers(dest="agencies_command", required=True)
    add = agency_commands.add_parser("add", help="register one agency")
    add.add_argument("--code", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, help="ministry, province, department, ward, …")
    add.add_argument("--parent", default="")
    add.add_argument("--valid-from", required=True, help="YYYY-MM-DD")
    add.add_argument("--valid-to", default="")
    add.add_argument("--successor", action="append", default=[])
    add.add_argument("--email", default="")
    imp = agency_commands.add_parser("import", help="register every agency in a CSV file")
    imp.add_argument("file", type=Path)
    lst = agency_commands.add_parser("list", help="list agencies")
    lst.add_argument("--parent", default="")
    lst.add_argument("--all", action="store_true", help="include closed agencies")
    get = agency_commands.add_parser("get", help="show one agency")
    get.add_argument("code")
    sync = agency_commands.add_parser(
        "sync", help="agencies changed since a version (the delta feed), closed ones included"
    )
    sync.add_argument("--since", type=int, default=0, help="a version from an earlier sync")
    reorganise = agency_commands.add_parser(
        "reorganise", help="record a merge, rename, closure or split (closes the old codes)"
    )
    reorganise.add_argument("--kind", required=True, choices=["merge", "rename", "close", "split"])
    reorganise.add_argument("--effective", required=True, help="first day, YYYY-MM-DD")
    reorganise.add_argument("--old", action="append", required=True, help="a code that closes")
    reorganise.add_argument("--new", action="append", default=[], help="a successor code")
    reorganise.add_argument("--note", default="")
    for sub in (add, imp, lst, get, sync, reorganise):
        pki_cli.add_client_options(sub, client)

    pki_cli.add_commands(commands, client)
    report_cli.add_commands(commands, client)
    health_cli.add_commands(commands, client)
    peers_cli.add_commands(commands, client)
    witness_cli.add_commands(commands)
    sign_cli.add_commands(commands, client)
    binding_cli.add_commands(commands, client)

    ledger = commands.add_parser("ledger", help="ledger keys")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    keygen = ledger_commands.add_parser("keygen", help="create a checkpoint signing key file")
    keygen.add_argument("--name", default=DEFAULT_LEDGER_ORIGIN, help="key name (the log origin)")
    keygen.add_argument("--out", type=Path, required=True, help="file to create (mode 0600)")
    vkey = ledger_commands.add_parser("vkey", help="print the verifier key(s) of a key file")
    vkey.add_argument("--key-file", type=Path, required=True)
    policy = ledger_commands.add_parser(
        "trust-policy",
        help="write an auditor's trust-policy.json from the log's key file and witness keys "
        "(to hand out out of band: `docaxis audit verify --trust-policy`)",
    )
    policy.add_argument("--origin", default=DEFAULT_LEDGER_ORIGIN, help="the log origin")
    policy.add_argument(
        "--key-file", type=Path, required=True, help="the log's signer key file (public halves)"
    )
    policy.add_argument(
        "--witness-vkey", action="append", default=[], help="a witness's verifier key; repeatable"
    )
    policy.add_argument("--quorum", type=int, default=None, help="default: every witness")
    policy.add_argument("--out", type=Path, required=True)

    audit = commands.add_parser("audit", help="export and verify the ledger")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="write an export folder from the database")
    export.add_argument("folder", type=Path)
    audit_commands.add_parser(
        "verify",
        help="verify offline (no database, no network); see `docaxis audit verify --help`",
        add_help=False,
    )

    demo = commands.add_parser("demo", help="send a document through a running axis")
    demo.add_argument("--address", default=client.address, help="the axis's gRPC address")
    demo.add_argument("--pki", type=Path, default=client.pki_dir, help="demo PKI folder")
    demo.add_argument("--insecure", action="store_true", help="plaintext, unsigned (dev axis)")
    federation = commands.add_parser(
        "demo-federation",
        help="a cross-hub send between the two hubs of `make run HUBS=2` (their demo PKIs)",
    )
    federation.add_argument("--address", default=client.address, help="hub A's gRPC address")
    federation.add_argument("--pki", type=Path, default=client.pki_dir, help="hub A's demo PKI")
    federation.add_argument("--hub-b-address", required=True, help="hub B's gRPC address")
    federation.add_argument("--hub-b-pki", type=Path, required=True, help="hub B's demo PKI")

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["audit", "verify"]:
        # The offline verifier owns its arguments and output (it must run with no services).
        from services.ledger.audit.cli import main as verify_main

        sys.exit(verify_main(argv[2:]))
    args = parser.parse_args(argv)
    try:
        code = event_loop.run(_dispatch(args))
    except ConfigError as exc:
        print(f"docaxis: configuration error: {exc}", file=sys.stderr)
        code = 2
    except grpc.aio.AioRpcError as exc:
        details = error_details(exc)
        print(f"docaxis: {details.code.name} {details.reason}: {details.message}", file=sys.stderr)
        for violation in details.violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        code = 1
    sys.exit(code)


async def _dispatch(args: argparse.Namespace) -> int:
    return await _COMMANDS[args.command](args)


async def _migrate(_args: argparse.Namespace) -> int:
    from services.bootstrap.migrations import migrate
    from services.common.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    for name in await migrate(settings.database_url):
        print(f"applied {name}")
    return 0


async def _ledger(args: argparse.Namespace) -> int:
    if args.ledger_command == "trust-policy":
        return _write_trust_policy(args)
    if args.ledger_command == "vkey":
        for signer in read_signer_keys(args.key_file, "--key-file"):
            print(signer.verifier.vkey)
        return 0
    return _write_ledger_key(args)


def _write_ledger_key(args: argparse.Namespace) -> int:
    signer = NoteSigner.generate(args.name)
    if args.out.exists():
        raise ConfigError(f"{args.out} exists: refusing to overwrite a signing key")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.touch(mode=0o600)
    args.out.write_text(signer.skey + "\n", encoding="utf-8")
    print(f"wrote {args.out}; verifier key: {signer.verifier.vkey}")
    return 0


async def _audit_export(args: argparse.Namespace) -> int:
    from services.common import postgres
    from services.ledger.adapters.postgres import READER_ROLE, PostgresLedgerReader
    from services.ledger.audit.export import ExportError
    from services.ledger.export import export_ledger

    # An export needs only the database (as the read-only ledger role), not a server's TLS and
    # broker settings.
    exporting = LedgerExportSettings.from_env()
    pool = await postgres.create_pool(
        exporting.database_url,
        min_size=1,
        max_size=1,
        role=READER_ROLE if exporting.database_roles else None,
    )
    try:
        reader = PostgresLedgerReader(pool)
        with Progress("exporting ledger entries", await reader.tree_size()) as progress:
            entries, checkpoints = await export_ledger(
                reader, exporting.ledger_origin, args.folder, progress.advance
            )
    except ExportError as exc:
        print(f"docaxis: {exc.reason}: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    print(f"exported {entries} entries and {checkpoints} checkpoints to {args.folder}")
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo  # client side only: not loaded to serve

    return await run_demo(args.address, None if args.insecure else args.pki)


async def _demo_federation(args: argparse.Namespace) -> int:
    from services.demo_federation import run_federation_demo  # client side only

    return await run_federation_demo(args.address, args.pki, args.hub_b_address, args.hub_b_pki)


def _write_trust_policy(args: argparse.Namespace) -> int:
    """Only public keys go into the policy; the signer file is read for its public halves."""
    signers = read_signer_keys(args.key_file, "--key-file")
    try:
        witnesses = tuple(WitnessKey(CosignerVerifier.from_vkey(v)) for v in args.witness_vkey)
    except NoteError as exc:
        raise ConfigError(f"--witness-vkey: {exc}") from None
    quorum = len(witnesses) if args.quorum is None else args.quorum
    try:
        policy = TrustPolicy(
            args.origin, tuple(LogKey(s.verifier) for s in signers), witnesses, quorum
        )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    args.out.write_text(policy.to_json(), encoding="utf-8")
    print(f"wrote {args.out}: {len(signers)} log key(s), {quorum} of {len(witnesses)} witnesses")
    return 0


async def _run(args: argparse.Namespace) -> int:
    from services.bootstrap.migrations import migrate
    from services.bootstrap.serve import serve_plan
    from services.common.lifecycle import install_shutdown_handlers
    from services.common.logs import configure_logging
    from services.common.tracing import configure_tracing

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    configure_tracing("docaxis")  # OTLP export only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    try:
        components = {
            Component(name.strip()) for name in args.components.split(",") if name.strip()
        }
    except ValueError as exc:
        raise ConfigError(f"--components: {exc}") from None
    checked = plan(settings, components)  # before anything opens, the migrations' pool included
    stop = install_shutdown_handlers()
    if settings.worker_index > 0:  # started by the first worker, which prepared everything
        await serve_plan(checked, stop)
        return 0
    await migrate(settings.database_url)
    if args.seed_demo:
        await _seed(settings, args.demo_agencies or DEMO_DIRECTORY_CSV)
    workers = [await _start_worker(index, args.components) for index in range(1, settings.workers)]
    watchers = [asyncio.create_task(_watch_worker(worker, stop)) for worker in workers]

    def ready(port: int) -> None:
        host = settings.grpc_address.rsplit(":", 1)[0]
        if settings.tls:
            mode = "gRPC over mutual TLS"
            grpcurl = (
                f"grpcurl -cacert {settings.tls_client_ca_file} -cert <admin .pem> "
                f"-key <admin .key> {host}:{port} list"
            )
        else:
            mode = "gRPC, plaintext development mode"
            grpcurl = f"grpcurl -plaintext {host}:{port} list"
        print(
            f"\ndocaxis is serving {', '.join(sorted(components))} on {host}:{port} "
            f"({mode}; health and reflection enabled)\n"
            f"  try: {grpcurl}\n"
            "  demo: make demo    stop: Ctrl-C, then make down\n",
            flush=True,
        )

    try:
        await serve_plan(checked, stop, on_ready=ready)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()  # SIGTERM: each drains and stops as this one did
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_grace_s + 5):
                await asyncio.gather(*(worker.wait() for worker in workers))
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
        for watcher in watchers:
            watcher.cancel()
    failed = [w.returncode for w in workers if w.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


async def _start_worker(index: int, components: str) -> asyncio.subprocess.Process:
    """Another process serving the same address (DOCAXIS_WORKERS), started like this one."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.cli import main; main()",
        "run",
        "--components",
        components,
        env={**os.environ, WORKER_INDEX_ENV: str(index)},
    )


async def _watch_worker(worker: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
    """A worker that dies stops the whole axis (non-zero exit) rather than serve on short."""
    code = await worker.wait()
    if not stop.is_set():
        print(f"docaxis: worker {worker.pid} exited with {code}; stopping", file=sys.stderr)
        stop.set()


async def _seed(settings: Settings, path: Path) -> None:
    from services.common import postgres
    from services.directory.adapters.postgres import PostgresAgencies
    from services.directory.entrypoints.grpc_api import agency_from_pb
    from services.directory.service_layer.handlers import DirectoryHandlers

    if not path.is_file():
        raise ConfigError(f"demo agencies file not found: {path}")
    pool = await postgres.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        handlers = DirectoryHandlers(PostgresAgencies(pool), settings.code_forms)

        async def register(agency: dpb.Agency) -> bool:
            try:
                return (await handlers.register(agency_from_pb(agency))).created
            except ConflictError:
                # Changed since it was seeded (a recorded reorganisation closed it): the
                # directory's version wins over the demo file's.
                return False

        created, present = await register_all(read_agency_csv(path), register)
    finally:
        await pool.close()
    print(f"demo agencies from {path}: {created} registered, {present} already present")


async def _agencies(args: argparse.Namespace) -> int:
    channel, admin = pki_cli.operator_channel(args)
    async with channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)

        async def register(agency: dpb.Agency) -> bool:
            response = await stub.RegisterAgency(
                dpb.RegisterAgencyRequest(agency=agency), metadata=admin, timeout=10
            )
            return response.created

        if args.agencies_command == "add":
            agency = dpb.Agency(
                code=args.code,
                name=args.name,
                parent_code=args.parent,
                kind=kind_from_name(args.kind),
                valid_from=args.valid_from,
                valid_to=args.valid_to,
                successor_codes=args.successor,
                email=args.email,
            )
            print("registered" if await register(agency) else "already registered", agency.code)
            return 0
        if args.agencies_command == "import":
            agencies = read_agency_csv(args.file)
            with Progress("registering agencies", len(agencies)) as progress:
                created, present = await register_all(agencies, register, progress.advance)
            print(f"{created} registered, {present} already present")
            return 0
        if args.agencies_command == "sync":
            return await sync_agencies(stub, admin, args.since)
        if args.agencies_command == "reorganise":
            return await record_reorganisation(stub, admin, args)
        if args.agencies_command == "get":
            response = await stub.GetAgency(
                dpb.GetAgencyRequest(code=args.code), metadata=admin, timeout=10
            )
            _print_agencies([response.agency])
            return 0
        token = ""
        while True:
            page = await stub.ListAgencies(
                dpb.ListAgenciesRequest(
                    parent_code=args.parent, include_closed=args.all, page_token=token
                ),
                metadata=admin,
                timeout=10,
            )
            _print_agencies(list(page.agencies))
            token = page.next_page_token
            if not token:
                return 0


def _print_agencies(agencies: list[dpb.Agency]) -> None:
    for a in agencies:
        status = dpb.AgencyStatus.Name(a.status).removeprefix("AGENCY_STATUS_").lower()
        line = f"{a.code}  {status:<6}  {a.name}"
        if a.successor_codes:
            line += f"  -> {', '.join(a.successor_codes)}"
        print(line)


# Each top-level command's handler (the parser in _parser() names the same commands).
_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "run": _run,
    "migrate": _migrate,
    "agencies": _agencies,
    "ledger": _ledger,
    "audit": _audit_export,
    "demo": _demo,
    "demo-federation": _demo_federation,
    "pki": pki_cli.dispatch,
    "crl": pki_cli.dispatch,
    "report": report_cli.dispatch,
    "health": health_cli.dispatch,
    "peers": peers_cli.dispatch,
    "witness": witness_cli.dispatch,
    "sign": sign_cli.dispatch,
    "signature-policy": sign_cli.dispatch,
    "cert": binding_cli.dispatch,
}
