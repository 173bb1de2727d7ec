"""`docaxis pki …` (DEMO ONLY) and `docaxis crl ingest`, and how CLI commands connect.

`docaxis pki` runs a throwaway CA on disk for laptops and CI (docaxis_client.trust.demo_pki).
Production certificates come from the national CA; never issue them with this command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from docaxis_client.client import open_channel
from docaxis_client.credentials import TlsCredentials, pem_of
from docaxis_client.trust.chain import Role, expiring_certificates
from docaxis_client.trust.demo_pki import KeyType, PkiFolder
from services.common.config import ConfigError
from services.common.identity import Role as CallerRole
from services.common.identity import role_metadata
from services.directory.domain.hubs import hub_code_problem
from services.settings import ClientSettings

BUNDLE = "bundle.pem"
_WARNING = "docaxis pki: DEMO PKI, for development and tests only: never use it in production"


def add_client_options(parser: argparse.ArgumentParser, client: ClientSettings) -> None:
    """How an operator command reaches a running axis: mutual TLS with an administrator
    certificate (explicit files, or the demo PKI's), or plaintext against a development axis."""
    parser.add_argument("--address", default=client.address, help="the axis's gRPC address")
    parser.add_argument("--ca", type=Path, default=client.ca_file)
    parser.add_argument("--cert", type=Path, default=client.cert_file)
    parser.add_argument("--key", type=Path, default=client.key_file)
    parser.add_argument(
        "--pki",
        type=Path,
        default=client.pki_dir,
        help="demo PKI folder to take the admin certificate from when --cert is not given",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=client.insecure,
        help="plaintext, for an axis in development mode",
    )


def client_tls(args: argparse.Namespace, role: Role = Role.ADMIN) -> TlsCredentials | None:
    """The credentials the options name; None for a development-mode (plaintext) axis."""
    if args.insecure:
        return None
    if args.cert is not None or args.key is not None:
        if args.cert is None or args.key is None or args.ca is None:
            raise ConfigError("--cert, --key and --ca go together")
        return TlsCredentials.from_files(ca=args.ca, cert=args.cert, key=args.key)
    folder: Path = args.pki
    cert = folder / "roles" / role.value / f"{role.value}.pem"
    if not cert.is_file():
        raise ConfigError(
            f"no client certificate: pass --cert/--key/--ca, a demo --pki folder with {cert}, or "
            "--insecure for an axis in development mode"
        )
    return TlsCredentials.from_files(
        ca=args.ca or folder / BUNDLE, cert=cert, key=cert.with_name(f"{role.value}.key")
    )


def operator_channel(
    args: argparse.Namespace,
) -> tuple[grpc.aio.Channel, tuple[tuple[str, str], ...]]:
    """A channel as administrator, and the metadata to send (the role header in development)."""
    tls = client_tls(args)
    return open_channel(args.address, tls), (role_metadata(CallerRole.ADMIN) if tls is None else ())


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    pki = commands.add_parser(
        "pki", help="DEMO ONLY: a throwaway CA for development and tests (never production)"
    )
    pki_commands = pki.add_subparsers(dest="pki_command", required=True)
    key_types = [kind.value for kind in KeyType]

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = pki_commands.add_parser(name, help=help_text)
        parser.add_argument("--dir", type=Path, default=client.pki_dir, help="PKI folder")
        return parser

    init = sub("init", "create the demo CA (root and issuing CA) and the trust-anchor bundle")
    init.add_argument("--key-type", choices=["p256", "rsa2048", "rsa3072"], default="p256")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    agency = sub("issue-agency", "agency certificate: mTLS client and organisation signatures")
    agency.add_argument("code")
    agency.add_argument("name")
    person = sub("issue-person", "an official's document-signing certificate")
    person.add_argument("full_name")
    person.add_argument("agency_code")
    server = sub("issue-server", "a TLS server certificate")
    server.add_argument("name", nargs="?", default="localhost")
    server.add_argument("--dns", action="append", default=None)
    server.add_argument("--ip", action="append", default=None)
    role = sub("issue-role", "an operator (admin, monitor) or hub certificate")
    role.add_argument("role", choices=[r.value for r in Role])
    role.add_argument("name", nargs="?", default=None)
    peer = sub("issue-peer", "a hub's certificate towards its federation peers")
    peer.add_argument("hub_code")
    for parser in (agency, person, server, role, peer):
        parser.add_argument("--key-type", choices=key_types, default="p256")
        parser.add_argument("--force", action="store_true", help="re-issue over existing files")
    revoke = sub("revoke", "put a certificate on its CA's CRL (then: docaxis crl ingest)")
    revoke.add_argument("certificate", type=Path)
    expiring = sub("expiring", "certificates that expire within --days (all of --dir by default)")
    expiring.add_argument("--days", type=int, default=30)
    expiring.add_argument("files", type=Path, nargs="*")
    sub("dev-setup", "what `make run` and `make demo` need, created if missing (idempotent)")

    crl = commands.add_parser("crl", help="certificate revocation lists")
    crl_commands = crl.add_subparsers(dest="crl_command", required=True)
    ingest = crl_commands.add_parser(
        "ingest", help="send a CRL to a running axis (administrator): revoked certificates stop"
    )
    ingest.add_argument("file", type=Path)
    add_client_options(ingest, client)


async def dispatch(args: argparse.Namespace) -> int:
    if args.command == "crl":
        return await _ingest(args)
    print(_WARNING, file=sys.stderr)
    try:
        return _pki(args)
    except FileExistsError as exc:
        raise ConfigError(f"{exc} (--force replaces it)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _pki(args: argparse.Namespace) -> int:
    folder = PkiFolder(args.dir)
    command = args.pki_command
    if command == "init":
        folder.init(key_type=KeyType(args.key_type), force=args.force)
        bundle = write_bundle(args.dir)
        print(f"created the demo CA in {args.dir}; trust anchors: {bundle}")
        return 0
    if command == "dev-setup":
        from services.demo import ensure_demo_pki  # the demo's own layout

        for line in ensure_demo_pki(args.dir):
            print(line)
        write_bundle(args.dir)
        return 0
    if command == "revoke":
        for path in folder.revoke(args.certificate):
            print(f"wrote {path}")
        print("now run: docaxis crl ingest <crl file> (as administrator)")
        return 0
    if command == "expiring":
        return _expiring(args.files or sorted(args.dir.rglob("*.pem")), args.days)
    _require_ca(args.dir)
    key_type = KeyType(args.key_type)
    if command == "issue-agency":
        files = folder.issue_agency(args.code, args.name, key_type=key_type, force=args.force)
    elif command == "issue-person":
        files = folder.issue_person(
            args.full_name, args.agency_code, key_type=key_type, force=args.force
        )
    elif command == "issue-server":
        files = folder.issue_server(
            args.name,
            dns_names=args.dns or ("localhost",),
            ip_addresses=args.ip or ("127.0.0.1",),
            key_type=key_type,
            force=args.force,
        )
    elif command == "issue-peer":
        if (why := hub_code_problem(args.hub_code)) is not None:
            print(f"docaxis pki issue-peer: {why}", file=sys.stderr)
            return 2
        files = folder.issue_peer(args.hub_code, force=args.force)
    else:
        files = folder.issue_role(
            Role(args.role), args.name or args.role, key_type=key_type, force=args.force
        )
    print(f"issued {files.certificate} (key {files.key}, serial {files.serial:x})")
    return 0


def write_bundle(folder: Path) -> Path:
    """bundle.pem: the root and the issuing CA, what DOCAXIS_TLS_CLIENT_CA_FILE points at (the
    issuing CA is needed to check the CRLs it signs)."""
    _require_ca(folder)
    certificates = x509.load_pem_x509_certificates((folder / "ca.pem").read_bytes())
    intermediate = folder / "intermediate.pem"
    if intermediate.exists():
        certificates += x509.load_pem_x509_certificates(intermediate.read_bytes())
    bundle = folder / BUNDLE
    bundle.write_bytes(pem_of(certificates))
    readme = folder / "README.txt"
    if not readme.exists():
        from services.demo import DEMO_PKI_README

        readme.write_text(DEMO_PKI_README, encoding="utf-8")
    return bundle


def _require_ca(folder: Path) -> None:
    if not (folder / "ca.pem").is_file():
        raise ConfigError(f"no demo CA in {folder}: run `docaxis pki init --dir {folder}` first")


def _expiring(paths: Sequence[Path], days: int) -> int:
    certificates: dict[bytes, tuple[Path, x509.Certificate]] = {}
    for path in paths:
        try:
            loaded = x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError:
            continue  # CRLs and keys live in the same folders
        for cert in loaded:
            certificates.setdefault(cert.fingerprint(hashes.SHA256()), (path, cert))
    by_serial = {cert.serial_number: path for path, cert in certificates.values()}
    warnings = expiring_certificates(
        [cert for _, cert in certificates.values()],
        within=dt.timedelta(days=days),
        at=dt.datetime.now(dt.UTC),
    )
    for warning in warnings:
        state = "EXPIRED" if warning.expired else f"expires in {warning.remaining.days} days"
        print(
            f"{state}: {warning.subject} (serial {warning.serial:x}, not after "
            f"{warning.not_after:%Y-%m-%d %H:%M}Z) in {by_serial[warning.serial]}"
        )
    if not warnings:
        print(f"no certificate expires within {days} days ({len(certificates)} checked)")
    # Non-zero so that a cron job or CI step can alert on it.
    return 1 if warnings else 0


async def _ingest(args: argparse.Namespace) -> int:
    data = args.file.read_bytes()
    channel, metadata = operator_channel(args)
    async with channel:
        response = await dpb_grpc.DirectoryServiceStub(channel).IngestCrl(
            dpb.IngestCrlRequest(crl=data), metadata=metadata, timeout=30
        )
    verb = "ingested" if response.changed else "already current:"
    print(
        f"{verb} CRL {response.crl_number} of {response.issuer}: "
        f"{response.revoked_count} revoked certificate(s)"
    )
    return 0
