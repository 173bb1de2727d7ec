"""`python -m services.national_emulator --port N --state FILE [--seed FILE]`: the national
axis emulator on loopback (plain HTTP, or HTTPS with --cert-file/--key-file)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from services.national_emulator.app import Emulator, create_app
from services.national_emulator.state import load


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.national_emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="JSON file of the mailboxes")
    parser.add_argument("--seed", type=Path, help="systems and agencies for a fresh state")
    parser.add_argument("--page-limit", type=int, default=50)
    parser.add_argument("--date-format", choices=("ymd", "dmy"), default="ymd")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    args = parser.parse_args()
    # The fault switch's token comes from the environment, never from the command line.
    token = os.environ.get("NATIONAL_EMULATOR_ADMIN_TOKEN", "")
    if not token:
        parser.error("set NATIONAL_EMULATOR_ADMIN_TOKEN (the fault switch's token)")
    emulator = Emulator(
        load(args.state, args.seed),
        args.state,
        token,
        page_limit=args.page_limit,
        date_format=args.date_format,
    )
    emulator.persist()
    uvicorn.run(
        create_app(emulator),
        host=args.host,
        port=args.port,
        log_level="warning",
        ssl_certfile=args.cert_file,
        ssl_keyfile=args.key_file,
    )


if __name__ == "__main__":
    main()
