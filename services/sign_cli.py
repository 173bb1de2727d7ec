"""`docaxis sign pdf|edxml`: sign test documents the way agencies do (PAdES, XML-DSig), and
`docaxis signature-policy show|set`: an agency's signature policy in the directory."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from docaxis_client.trust.demo_pki import PkiFolder
from services import pki_cli
from services.directory.domain.signature_policy import SignatureForm
from services.directory.entrypoints.grpc_api import SIGNATURE_FORM_TO_PB, policy_from_pb
from services.settings import ClientSettings

TIMEOUT_S = 10.0


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: ClientSettings
) -> None:
    sign = commands.add_parser(
        "sign", help="sign a PDF (PAdES) or an edXML package (XML-DSig) with a certificate"
    )
    sign_commands = sign.add_subparsers(dest="sign_command", required=True)
    pdf = sign_commands.add_parser(
        "pdf",
        help="add one PAdES signature per --cert, in order (the official's, then the agency's)",
    )
    source = pdf.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="the PDF to sign")
    source.add_argument(
        "--demo-text", action="append", help="sign a new one-page PDF showing this line"
    )
    pdf.add_argument("--cert", type=Path, action="append", required=True, help="<name>.pem")
    pdf.add_argument(
        "--digest",
        choices=["sha256", "sha384", "sha512", "sha1"],
        help="default: sha256 (sha512 for Ed25519 keys)",
    )
    pdf.add_argument(
        "--tsa-url",
        help="an RFC 3161 time-stamping authority (e.g. the national CA's) to timestamp each "
        "signature; the hub then judges the certificates at the TSA's time",
    )
    pdf.add_argument("output", type=Path)
    edxml = sign_commands.add_parser(
        "edxml", help="sign an edXML package with the agency's certificate (enveloped XML-DSig)"
    )
    edxml.add_argument("input", type=Path)
    edxml.add_argument("output", type=Path)
    edxml.add_argument("--cert", type=Path, required=True, help="the agency's <code>.pem")
    edxml.add_argument("--c14n", default="exclusive", choices=["1.0", "1.1", "exclusive"])
    edxml.add_argument("--digest", default="sha256", choices=["sha256", "sha384", "sha512"])

    policy = commands.add_parser(
        "signature-policy", help="show or set an agency's signature policy (administrators)"
    )
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    for name in ("show", "set"):
        sub = policy_commands.add_parser(name)
        sub.add_argument("agency")
        sub.add_argument("--document-type", type=int, default=0, help="0: every type")
        pki_cli.add_client_options(sub, client)
        if name == "set":
            forms = ", ".join(form.value for form in SignatureForm)
            sub.add_argument("--person-forms", default="", help=f"comma-separated of {forms}")
            sub.add_argument("--organization-forms", default="", help=f"comma-separated: {forms}")
            sub.add_argument("--allow-legacy-algorithms", action="store_true")
            sub.add_argument(
                "--transport-attested",
                action="store_true",
                help="accept UNSIGNED documents on the agency's mutual-TLS identity (audited)",
            )


def _forms(raw: str) -> list[common_pb2.SignatureForm.ValueType]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [SIGNATURE_FORM_TO_PB[SignatureForm(name)] for name in names]


async def dispatch(args: argparse.Namespace) -> int:
    if args.command == "sign":
        # pyHanko's synchronous signing runs an event loop of its own: keep it off ours.
        return await asyncio.to_thread(_sign, args)
    return await _policy(args)


def _sign(args: argparse.Namespace) -> int:
    from docaxis_client.trust.pdf import demo_pdf, http_timestamper, sign_pdf
    from docaxis_client.trust.xmldsig import Canonicalization, sign_envelope

    if args.sign_command == "pdf":
        data = args.input.read_bytes() if args.input else demo_pdf(args.demo_text)
        stamper = None if args.tsa_url is None else http_timestamper(args.tsa_url)
        for index, certificate in enumerate(args.cert, start=1):
            identity = PkiFolder.load_identity(certificate)
            data = sign_pdf(
                data,
                identity,
                field_name=f"Signature{index}",
                digest=args.digest,
                timestamper=stamper,
            )
            print(f"signed by {identity.certificate.subject.rfc4514_string()}")
        args.output.write_bytes(data)
        print(f"wrote {args.output}")
        return 0
    c14n = {
        "1.0": Canonicalization.C14N_1_0,
        "1.1": Canonicalization.C14N_1_1,
        "exclusive": Canonicalization.EXCLUSIVE,
    }[args.c14n]
    identity = PkiFolder.load_identity(args.cert)
    signed = sign_envelope(
        args.input.read_bytes(), identity, canonicalization=c14n, digest=args.digest
    )
    args.output.write_bytes(signed)
    print(f"wrote {args.output}, signed by {identity.certificate.subject.rfc4514_string()}")
    return 0


async def _policy(args: argparse.Namespace) -> int:
    channel, admin = pki_cli.operator_channel(args)
    async with channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        if args.policy_command == "set":
            response = await stub.SetSignaturePolicy(
                dpb.SetSignaturePolicyRequest(
                    policy=common_pb2.SignaturePolicy(
                        agency_code=args.agency,
                        document_type=args.document_type,
                        person_forms=_forms(args.person_forms),
                        organization_forms=_forms(args.organization_forms),
                        allow_legacy_algorithms=args.allow_legacy_algorithms,
                        transport_attested=args.transport_attested,
                    )
                ),
                metadata=admin,
                timeout=TIMEOUT_S,
            )
            print(f"{args.agency}: {policy_from_pb(response.policy).describe()}")
            return 0
        got = await stub.GetSignaturePolicy(
            dpb.GetSignaturePolicyRequest(
                agency_code=args.agency, document_type=args.document_type
            ),
            metadata=admin,
            timeout=TIMEOUT_S,
        )
        origin = " (deployment default)" if got.default else f" (set by {got.policy.updated_by})"
        print(f"{args.agency}: {policy_from_pb(got.policy).describe()}{origin}")
        return 0
