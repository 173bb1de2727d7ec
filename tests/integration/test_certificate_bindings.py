"""National-CA certificates bound to agencies in the directory (administrators, audited), and a
document signed with them accepted only once bound, through the real axis and Postgres."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

from docaxis_client.client import AgencyClient
from docaxis_client.errors import DocaxisError, error_details
from docaxis_client.trust.demo_pki import IssuedCertificate
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.pdf import demo_pdf, sign_pdf
from services.cli import main
from tests.conftest import Register, make_header
from tests.pki import SIGNER, SuitePki

pytestmark = pytest.mark.integration


def _der(issued: IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


async def _bind(
    stub: dpb_grpc.DirectoryServiceAsyncStub, issued: IssuedCertificate, agency: str, role: int
) -> dpb.BindCertificateResponse:
    response: dpb.BindCertificateResponse = await stub.BindCertificate(
        dpb.BindCertificateRequest(
            certificate=_der(issued),
            agency_code=agency,
            role=role,  # type: ignore[arg-type]
        ),
        timeout=10,
    )
    return response


def _signed_pdf(person: IssuedCertificate, seal: IssuedCertificate) -> bytes:
    pdf = sign_pdf(demo_pdf(["Cong van 12/UBND"]), person.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(pdf, seal.identity(), field_name="ChuKyCoQuan")


async def _submit_pdf(client: AgencyClient, sender: str, recipient: str, pdf: bytes) -> str:
    upload = await client.upload_stream(pdf)
    response = await client.submit(
        str(uuid.uuid4()),
        make_header(sender, [recipient]),
        [upload.ref("cong-van.pdf", "application/pdf")],
        signatures=[],
    )
    return str(response.receipt.document_uuid)


async def test_only_administrators_bind_and_agencies_cannot_read_bindings(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    seal = pki.ca.issue_agency(code, "Sở thử nghiệm", docaxis_identity=False)
    async with pki.channel(axis, pki.agency(code).agency) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bind:
            await _bind(stub, seal, code, dpb.CERTIFICATE_ROLE_ORGANIZATION)
        with pytest.raises(grpc.aio.AioRpcError) as listing:
            await stub.ListCertificateBindings(
                dpb.ListCertificateBindingsRequest(agency_code=code), timeout=10
            )
    assert bind.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_binding_that_cannot_hold_is_refused_with_typed_reasons(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    """A certificate naming its own docaxis identity, a missing role, an unknown agency."""
    (code,) = await register_agencies(1)
    seal = pki.ca.issue_agency(code, "Sở thử nghiệm", docaxis_identity=False)
    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as own:
            await _bind(stub, pki.agency(code).agency, code, dpb.CERTIFICATE_ROLE_ORGANIZATION)
        with pytest.raises(grpc.aio.AioRpcError) as roleless:
            await _bind(stub, seal, code, dpb.CERTIFICATE_ROLE_UNSPECIFIED)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await _bind(stub, seal, "999.99.99.H99", dpb.CERTIFICATE_ROLE_ORGANIZATION)
    assert own.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error_details(own.value).violations] == ["certificate"]
    assert [v.field for v in error_details(roleless.value).violations] == ["role"]
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_pdf_signed_with_national_certificates_passes_once_bound_and_is_audited(
    axis: str,
    pki: SuitePki,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    database_url: str,
) -> None:
    """Unbound: CERTIFICATE_UNBOUND naming the key. Bound to the sender (person and
    organisation): accepted, the recipient sees both checks for the sender. Each binding is a
    ledger fact; unbinding refuses the next document again."""
    sender, recipient, other = await register_agencies(3)
    person = pki.ca.issue_person(SIGNER, sender, docaxis_identity=False)
    seal = pki.ca.issue_agency(sender, "Sở thử nghiệm", docaxis_identity=False)
    pdf = await asyncio.to_thread(_signed_pdf, person, seal)
    client = clients[sender]

    with pytest.raises(DocaxisError) as unbound:
        await _submit_pdf(client, sender, recipient, pdf)
    assert unbound.value.reason == "CERTIFICATE_UNBOUND"
    assert unbound.value.metadata["spki_sha256"] == key_id(person.certificate)

    async with pki.channel(axis, pki.admin_certificate) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        # The official bound to another agency first: a signer of the wrong agency.
        await _bind(stub, person, other, dpb.CERTIFICATE_ROLE_PERSON)
        await _bind(stub, seal, sender, dpb.CERTIFICATE_ROLE_ORGANIZATION)
        with pytest.raises(DocaxisError) as elsewhere:
            await _submit_pdf(client, sender, recipient, pdf)
        assert elsewhere.value.reason == "SIGNER_MISMATCH"

        rebound = await _bind(stub, person, sender, dpb.CERTIFICATE_ROLE_PERSON)
        assert rebound.changed
        again = await _bind(stub, person, sender, dpb.CERTIFICATE_ROLE_PERSON)
        assert not again.changed
        document_uuid = await _submit_pdf(client, sender, recipient, pdf)

        listed = await stub.ListCertificateBindings(
            dpb.ListCertificateBindingsRequest(agency_code=sender), timeout=10
        )
        assert sorted((b.spki_sha256, b.role) for b in listed.bindings) == sorted(
            [
                (key_id(person.certificate), dpb.CERTIFICATE_ROLE_PERSON),
                (key_id(seal.certificate), dpb.CERTIFICATE_ROLE_ORGANIZATION),
            ]
        )
        assert all(b.bound_by for b in listed.bindings)
        # The listing's other forms: an agency's keys (the official's is the sender's now), all.
        of_agency = {
            agency: await stub.ListCertificateBindings(
                dpb.ListCertificateBindingsRequest(
                    agency_code=agency, spki_sha256=[key_id(person.certificate)]
                ),
                timeout=10,
            )
            for agency in (sender, other)
        }
        assert [b.spki_sha256 for b in of_agency[sender].bindings] == [key_id(person.certificate)]
        assert not of_agency[other].bindings
        listed_all = await stub.ListCertificateBindings(
            dpb.ListCertificateBindingsRequest(), timeout=10
        )
        assert {key_id(person.certificate), key_id(seal.certificate)} <= {
            b.spki_sha256 for b in listed_all.bindings
        }

        tracked = await clients[recipient].list_pending()
        (item,) = [i for i in tracked.items if i.document_uuid == document_uuid]
        delivery = (await clients[recipient].fetch(item)).delivery
        checks = [(c.role, c.agency_code, c.full_name) for c in delivery.verification.checks]
        assert checks == [
            (common_pb2.SIGNATURE_ROLE_PERSON, sender, SIGNER),
            (common_pb2.SIGNATURE_ROLE_ORGANIZATION, sender, ""),
        ]

        await stub.UnbindCertificate(
            dpb.UnbindCertificateRequest(spki_sha256=key_id(seal.certificate)), timeout=10
        )
        with pytest.raises(DocaxisError) as unbound_again:
            await _submit_pdf(client, sender, recipient, pdf)
        assert unbound_again.value.reason == "CERTIFICATE_UNBOUND"

    # Staged or already sequenced: one statement, one snapshot, so none is seen twice or missed.
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT data::text AS fact FROM ledger.pending WHERE entry_type = 'directory' "
            "UNION ALL SELECT convert_from(body, 'UTF8') FROM ledger.entry "
            "WHERE entry_type = 'directory'"
        )
    finally:
        await connection.close()
    keys = (key_id(person.certificate), key_id(seal.certificate))
    facts = [row["fact"] for row in rows if any(key in row["fact"] for key in keys)]
    events = sorted(
        (
            "certificate_unbound" if '"certificate_unbound"' in fact else "certificate_bound",
            other if other in fact else sender,
        )
        for fact in facts
    )
    assert events == sorted(
        [
            ("certificate_bound", other),
            ("certificate_bound", sender),
            ("certificate_bound", sender),
            ("certificate_unbound", sender),
        ]
    )


def _docaxis(*argv: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 0


async def test_the_cli_binds_lists_and_unbinds_a_certificate(
    axis: str,
    pki: SuitePki,
    register_agencies: Register,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`docaxis cert bind|list|unbind` as an administrator (mutual TLS with its certificate)."""
    (code,) = await register_agencies(1)
    person = pki.ca.issue_person(SIGNER, code, docaxis_identity=False)
    certificate = tmp_path / "official.pem"
    certificate.write_bytes(person.chain_pem())
    admin = pki.write_pair("cli-admin", pki.admin_certificate)
    tls = ["--address", axis, "--ca", str(pki.bundle)]
    tls += ["--cert", str(admin.certificate), "--key", str(admin.key)]
    key = key_id(person.certificate)

    await asyncio.to_thread(
        _docaxis, "cert", "bind", str(certificate), "--agency", code, "--role", "person", *tls
    )
    await asyncio.to_thread(_docaxis, "cert", "list", "--agency", code, *tls)
    await asyncio.to_thread(_docaxis, "cert", "unbind", key, *tls)
    await asyncio.to_thread(_docaxis, "cert", "list", "--agency", code, *tls)

    # The axis serves in this process: leave its log lines out of what the CLI printed.
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line)]
    assert lines[0].startswith(f"bound {key} {code} person: ")
    assert lines[1].startswith(f"{key} {code} person: CN={SIGNER}")
    assert lines[2].startswith(f"unbound {key} {code} person")
    assert lines[3] == "no certificate bindings"
