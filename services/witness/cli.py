"""`docaxis witness keygen` and `docaxis witness run`: one witness process."""

from __future__ import annotations

import argparse
from pathlib import Path

from docaxis_client.ledger.cosignature import Cosigner
from docaxis_client.ledger.note import NoteError, NoteVerifier
from services.common.config import ConfigError
from services.common.lifecycle import install_shutdown_handlers
from services.common.logs import configure_logging
from services.witness.domain import Witness
from services.witness.state import FileWitnessStore


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from services.settings import DEFAULT_LEDGER_ORIGIN

    witness = commands.add_parser(
        "witness", help="run a ledger witness (C2SP tlog-witness) with its own key"
    )
    witness_commands = witness.add_subparsers(dest="witness_command", required=True)
    keygen = witness_commands.add_parser("keygen", help="create a witness key file")
    keygen.add_argument("--name", required=True, help="e.g. witness.inspectorate.example/w1")
    keygen.add_argument("--out", type=Path, required=True, help="file to create (mode 0600)")
    vkey = witness_commands.add_parser("vkey", help="print the verifier key of a witness key file")
    vkey.add_argument("--key-file", type=Path, required=True)
    run = witness_commands.add_parser(
        "run", help="serve POST /add-checkpoint until Ctrl-C, cosigning consistent checkpoints"
    )
    run.add_argument("--key-file", type=Path, required=True, help="from `docaxis witness keygen`")
    run.add_argument("--origin", default=DEFAULT_LEDGER_ORIGIN, help="the log it witnesses")
    run.add_argument(
        "--log-vkey", action="append", required=True, help="the log's verifier key; repeatable"
    )
    run.add_argument("--state", type=Path, required=True, help="folder for its state and evidence")
    run.add_argument("--address", default="127.0.0.1:7380", help="host:port to listen on")


async def dispatch(args: argparse.Namespace) -> int:
    if args.witness_command == "keygen":
        cosigner = Cosigner.generate(args.name)
        if args.out.exists():
            raise ConfigError(f"{args.out} exists: refusing to overwrite a witness key")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.touch(mode=0o600)
        args.out.write_text(cosigner.skey + "\n", encoding="utf-8")
        print(f"wrote {args.out}; witness verifier key: {cosigner.verifier.vkey}")
        return 0
    cosigner = _read_key(args.key_file)
    if args.witness_command == "vkey":
        print(cosigner.verifier.vkey)
        return 0
    # The HTTP server (uvicorn, starlette) only for `witness run`: keygen and vkey start in a
    # fraction of its import time.
    from services.witness.server import serve_witness

    configure_logging("INFO")
    try:
        log_keys = [NoteVerifier.from_vkey(v) for v in args.log_vkey]
    except NoteError as exc:
        raise ConfigError(f"--log-vkey: {exc}") from None
    host, _, port = args.address.rpartition(":")
    witness = Witness(cosigner, {args.origin: log_keys}, FileWitnessStore(args.state))
    stop = install_shutdown_handlers()

    def ready(bound: int) -> None:
        print(
            f"witness {cosigner.name} cosigning {args.origin} on http://{host}:{bound}\n"
            f"  its verifier key (for trust policies): {cosigner.verifier.vkey}",
            flush=True,
        )

    await serve_witness(witness, host, int(port), stop, ready)
    return 0


def _read_key(path: Path) -> Cosigner:
    try:
        return Cosigner.from_skey(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except NoteError as exc:
        raise ConfigError(f"{path}: {exc}") from None
