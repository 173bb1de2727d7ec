"""`docaxis cert bind|unbind|list`: which agency a national-CA certificate signs for.

The national CA's certificates carry no docaxis identity; an administrator binds each one's key
to its agency and role in the directory (audited in the ledger), and signature verification
then accepts it for that agency only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from services import pki_cli
from services.settings import ClientSettings

TIMEOUT_S = 10.0
_ROLES = {
    "person": dpb.CERTIFICATE_ROLE_PERSON,
    "organization": dpb.CERTIFICATE_ROLE_ORGANIZATION,
}
_ROLE_NAMES = {value: name for name, value in _ROLES.items()}


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    cert = commands.add_parser(
        "cert", help="bind national-CA certificates to agencies (administrator, audited)"
    )
    cert_commands = cert.add_subparsers(dest="cert_command", required=True)
    bind = cert_commands.add_parser(
        "bind", help="this certificate's key signs for AGENCY as an official or as the agency"
    )
    bind.add_argument("certificate", type=Path, help="PEM or DER (the first of a PEM chain)")
    bind.add_argument("--agency", required=True)
    bind.add_argument("--role", choices=sorted(_ROLES), required=True)
    unbind = cert_commands.add_parser("unbind", help="remove a key's binding")
    unbind.add_argument("spki_sha256", help="the key's SPKI SHA-256, as `cert list` shows it")
    listing = cert_commands.add_parser("list", help="bindings, of one agency or all")
    listing.add_argument("--agency", default="")
    for parser in (bind, unbind, listing):
        pki_cli.add_client_options(parser, client)


def _line(binding: dpb.CertificateBinding) -> str:
    role = _ROLE_NAMES.get(binding.role, "?")
    return f"{binding.spki_sha256} {binding.agency_code} {role}: {binding.subject}"


async def dispatch(args: argparse.Namespace) -> int:
    channel, admin = pki_cli.operator_channel(args)
    async with channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        if args.cert_command == "bind":
            bound = await stub.BindCertificate(
                dpb.BindCertificateRequest(
                    certificate=args.certificate.read_bytes(),
                    agency_code=args.agency,
                    role=_ROLES[args.role],
                ),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
            verb = "bound" if bound.changed else "already bound:"
            print(f"{verb} {_line(bound.binding)}")
            return 0
        if args.cert_command == "unbind":
            removed = await stub.UnbindCertificate(
                dpb.UnbindCertificateRequest(spki_sha256=args.spki_sha256),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
            print(f"unbound {_line(removed.binding)}")
            return 0
        listed = await stub.ListCertificateBindings(
            dpb.ListCertificateBindingsRequest(agency_code=args.agency),
            metadata=admin,
            timeout=TIMEOUT_S,
        )
        for binding in listed.bindings:
            print(_line(binding))
        if not listed.bindings:
            print("no certificate bindings")
        return 0
