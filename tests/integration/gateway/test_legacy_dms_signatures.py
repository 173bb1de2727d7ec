"""A legacy DMS that speaks plain HTTP and edXML and signs as ND30 prescribes (a signed PDF, an
XML-DSig envelope made by xmlsec1), with no docaxis_client: what it sends is verified at the hub,
reaches a gRPC DMS with its signatures reported, and comes back to edXML recipients byte for byte.
Agencies whose DMS cannot sign are accepted only where an administrator enabled it, and marked."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.trust.demo_pki import certificates_pem, key_pem
from docaxis_client.trust.pdf import demo_pdf, sign_pdf
from gateway.edxml import Attachment, DocumentPackage, edxml_bytes, read_edxml
from gateway.edxml.mapping import document_package
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.conftest import Register, make_header, unique_code
from tests.integration.gateway.conftest import RunningGateway
from tests.pki import SuitePki
from tests.testdata import corpus_files

pytestmark = pytest.mark.integration

# QCVN 102 agency codes as they appear in the samples' bytes.
_CODE = re.compile(rb"\b\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}\b")
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
_TEMPLATE = f"""<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="{ECDSA_SHA256}"/>
<ds:Reference URI="">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue/>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
</ds:Signature>"""


def _xmlsec1() -> str:
    found = shutil.which("xmlsec1")
    assert found is not None, "xmlsec1 missing: run 'bash deploy/local/install.sh'"
    return found


def _sign_envelope_with_xmlsec1(folder: Path, pki: SuitePki, code: str, package: bytes) -> bytes:
    """What a Java/.NET DMS does: an enveloped signature template in edXMLHeader, signed."""
    agency = pki.agency(code).agency
    template = package.replace(
        b"</edXML:edXMLHeader>", _TEMPLATE.encode() + b"</edXML:edXMLHeader>", 1
    )
    (folder / "template.edxml").write_bytes(template)
    (folder / "key.pem").write_bytes(key_pem(agency.key))
    (folder / "chain.pem").write_bytes(certificates_pem(agency.chain))
    subprocess.run(
        [
            _xmlsec1(),
            "--sign",
            "--privkey-pem",
            f"{folder / 'key.pem'},{folder / 'chain.pem'}",
            "--output",
            str(folder / "signed.edxml"),
            str(folder / "template.edxml"),
        ],
        check=True,
        capture_output=True,
    )
    return (folder / "signed.edxml").read_bytes()


def _xmlsec1_verify(path: Path) -> subprocess.CompletedProcess[str]:
    """`xmlsec1 --verify` against the suite's CA (the issuing CA offered as untrusted)."""
    return subprocess.run(
        [
            _xmlsec1(),
            "--verify",
            "--trusted-pem",
            str(path.parent / "ca.pem"),
            "--untrusted-pem",
            str(path.parent / "issuing.pem"),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _signed_pdf(pki: SuitePki, code: str) -> bytes:
    """The official signs, then the clerk with the agency's certificate (pyHanko)."""
    credentials = pki.agency(code)
    pdf = demo_pdf(["Cong van thu nghiem", code])
    pdf = sign_pdf(pdf, credentials.person.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(pdf, credentials.agency.identity(), field_name="ChuKyCoQuan")


def _package(sender: str, recipients: list[str], pdf: bytes) -> bytes:
    attachment = Attachment("cid:1", "cong-van.pdf", pdf, description="Công văn đã ký số")
    header = make_header(sender, recipients)
    return edxml_bytes(document_package(header, [attachment], sent_at=dt.datetime.now(dt.UTC)))


async def _send(http: httpx.AsyncClient, data: bytes, messagetype: str = "edoc") -> dict[str, Any]:
    response = await http.post(
        "/axis/sendEdoc",
        data={"messagetype": messagetype, "servicetype": "eDoc"},
        files={"file_doc": ("doc.edxml", data, "text/xml")},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _set_policy(pki: SuitePki, axis: str, policy: common_pb2.SignaturePolicy) -> None:
    async with pki.channel(axis, pki.admin_certificate) as channel:
        await dpb_grpc.DirectoryServiceStub(channel).SetSignaturePolicy(
            dpb.SetSignaturePolicyRequest(policy=policy), timeout=10
        )


async def _delivery(client: AgencyClient, document_uuid: str) -> pb.Delivery:
    pending = await client.list_pending()
    (item,) = [i for i in pending.items if i.document_uuid == document_uuid]
    delivery: pb.Delivery = (await client.fetch(item)).delivery
    await client.acknowledge_item(item)
    return delivery


async def test_a_legacy_dms_sends_a_signed_pdf_in_an_xmlsec1_signed_edxml_and_gets_statuses(
    gateway: RunningGateway,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    tmp_path: Path,
) -> None:
    """PAdES (official, agency) and XML-DSig verified at the hub; the gRPC DMS sees all three;
    its statuses reach the legacy DMS through getReceivedEdocList / getEdoc."""
    legacy, modern = await register_agencies(2)
    pdf = await asyncio.to_thread(_signed_pdf, gateway.pki, legacy)
    package = _sign_envelope_with_xmlsec1(
        tmp_path, gateway.pki, legacy, _package(legacy, [modern], pdf)
    )
    async with gateway.client(gateway.agency_pair(legacy)) as http:
        sent = await _send(http, package)
        assert (sent["status"], sent["ErrorCode"]) == ("OK", "0"), json.dumps(sent)
        document_uuid = sent["DocId"]

        grpc_dms = clients[modern]
        delivery = await _delivery(grpc_dms, document_uuid)
        verification = delivery.verification
        assert verification.mode == common_pb2.SIGNATURE_MODE_SIGNED
        checks = [(c.form, c.role, c.agency_code) for c in verification.checks]
        assert checks == [
            (common_pb2.SIGNATURE_FORM_PADES, common_pb2.SIGNATURE_ROLE_PERSON, legacy),
            (common_pb2.SIGNATURE_FORM_PADES, common_pb2.SIGNATURE_ROLE_ORGANIZATION, legacy),
            (common_pb2.SIGNATURE_FORM_XMLDSIG, common_pb2.SIGNATURE_ROLE_ORGANIZATION, legacy),
        ]
        assert verification.checks[0].full_name  # the official, named for the recipient
        assert delivery.attachments[0].name == "cong-van.pdf"
        assert delivery.HasField("envelope")
        tracked = await grpc_dms.track(document_uuid)
        assert tracked.verification == verification

        await grpc_dms.report_status(
            delivery.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
        )
        codes = []
        listed = await http.get("/axis/getReceivedEdocList", params={"messagetype": "status"})
        for item in listed.json()["data"]:
            if item["documentUuid"] != document_uuid:
                continue
            body = (await http.get("/axis/getEdoc", params={"docId": item["docId"]})).json()
            status = read_edxml(base64.b64decode(body["data"]["content"])).raise_for_errors()
            codes.append(getattr(status, "status_code", ""))
        assert "03" in codes, codes
        row = (await http.get("/axis/getSentEdocList", params={"docId": document_uuid})).json()
        assert row["data"][0]["verification"]["signed"] is True


async def test_an_edxml_recipient_gets_the_senders_file_byte_for_byte_and_xmlsec1_verifies_it(
    gateway: RunningGateway, register_agencies: Register, tmp_path: Path
) -> None:
    """The envelope docaxis hands out is the one signed: `xmlsec1 --verify` accepts it."""
    sender, receiver = await register_agencies(2)
    pdf = await asyncio.to_thread(_signed_pdf, gateway.pki, sender)
    package = _sign_envelope_with_xmlsec1(
        tmp_path, gateway.pki, sender, _package(sender, [receiver], pdf)
    )
    async with gateway.client(gateway.agency_pair(sender)) as http:
        sent = await _send(http, package)
        assert sent["status"] == "OK", sent
    async with gateway.client(gateway.agency_pair(receiver)) as http:
        listed = (await http.get("/axis/getReceivedEdocList")).json()["data"]
        (item,) = [i for i in listed if i["documentUuid"] == sent["DocId"]]
        body = (await http.get("/axis/getEdoc", params={"docId": item["docId"]})).json()
    received = base64.b64decode(body["data"]["content"])
    assert received == package
    assert body["data"]["verification"]["signed"] is True
    (tmp_path / "received.edxml").write_bytes(received)
    (tmp_path / "ca.pem").write_bytes(gateway.pki.bundle.read_bytes())
    assert gateway.pki.ca.intermediate is not None
    (tmp_path / "issuing.pem").write_bytes(
        certificates_pem([gateway.pki.ca.intermediate.certificate])
    )
    verified = await asyncio.to_thread(_xmlsec1_verify, tmp_path / "received.edxml")
    assert verified.returncode == 0, verified.stderr


async def test_an_edited_or_foreign_envelope_signature_is_refused_with_its_reason(
    gateway: RunningGateway, register_agencies: Register, tmp_path: Path
) -> None:
    """A header field edited after signing, or the envelope signed by another agency."""
    sender, receiver, other = await register_agencies(3)
    pdf = await asyncio.to_thread(_signed_pdf, gateway.pki, sender)
    signed = _sign_envelope_with_xmlsec1(
        tmp_path, gateway.pki, sender, _package(sender, [receiver], pdf)
    )
    edited = signed.replace(
        "Thử nghiệm</edXML:Subject>".encode(), "Đã sửa</edXML:Subject>".encode(), 1
    )
    foreign = _sign_envelope_with_xmlsec1(
        tmp_path, gateway.pki, other, _package(sender, [receiver], pdf)
    )
    async with gateway.client(gateway.agency_pair(sender)) as http:
        assert edited != signed
        body = await _send(http, edited)
        assert (body["status"], body["reason"], body["ErrorCode"]) == (
            "FAIL",
            "SIGNATURE_INVALID",
            "22",
        ), body
        body = await _send(http, foreign)
        assert (body["status"], body["reason"]) == ("FAIL", "SENDER_MISMATCH"), body


async def test_unsigned_edxml_passes_only_for_transport_attested_agencies_and_is_marked(
    gateway: RunningGateway,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
) -> None:
    """The administrator enables one agency; another is still refused SIGNATURE_MISSING."""
    attested, refused, receiver = await register_agencies(3)
    await _set_policy(
        gateway.pki,
        gateway.axis,
        common_pb2.SignaturePolicy(agency_code=attested, transport_attested=True),
    )
    async with gateway.client(gateway.agency_pair(refused)) as http:
        body = await _send(http, _package(refused, [receiver], demo_pdf(["unsigned"])))
        assert (body["status"], body["reason"], body["ErrorCode"]) == (
            "FAIL",
            "SIGNATURE_MISSING",
            "22",
        ), body
    async with gateway.client(gateway.agency_pair(attested)) as http:
        body = await _send(http, _package(attested, [receiver], demo_pdf(["unsigned"])))
        assert body["status"] == "OK", body
        row = (await http.get("/axis/getSentEdocList", params={"docId": body["DocId"]})).json()
        assert row["data"][0]["verification"]["signed"] is False
        assert row["data"][0]["verification"]["mode"] == "TRANSPORT_ATTESTED"
    delivery = await _delivery(clients[receiver], body["DocId"])
    assert delivery.verification.mode == common_pb2.SIGNATURE_MODE_TRANSPORT_ATTESTED
    assert "UNSIGNED" in delivery.verification.warnings[0]


async def test_every_sample_the_reader_accepts_passes_send_edoc_under_a_fitting_policy(
    gateway: RunningGateway, directory: DirectoryHandlers
) -> None:
    """The edXML samples, the repository's and ../shared's (unsigned, as most hubs receive
    them), under transport-attested policies; a later sample repeating an earlier one's
    DocumentId is a DUPLICATE, not a signature refusal. The samples' agency codes are replaced
    by fresh ones, the same replacement in every sample, so the packages stay consistent and
    the suite's directory keeps its own meaning of the real codes."""
    fresh: dict[bytes, bytes] = {}
    seen: set[str] = set()
    sent = 0
    for sample in corpus_files("edxml", "*.edxml"):
        original = sample.path.read_bytes()
        for code in sorted(set(_CODE.findall(original))):
            fresh.setdefault(code, unique_code().encode())
        data = _CODE.sub(lambda found: fresh[found.group(0)], original)
        result = read_edxml(data)
        if not result.report.ok:
            continue  # refused by the reader with typed reasons: not this test's subject
        package = result.package
        if isinstance(package, DocumentPackage):
            messagetype, sender = "edoc", package.header.sender.organ_id
            document_id = package.header.document_id
            codes = [sender, *(r.organ_id for r in package.header.recipients)]
        else:
            messagetype, sender, document_id = "status", package.sender.organ_id, ""
            codes = [sender]
        for code in codes:
            await _register(directory, code)
            gateway.pki.agency(code)
        await _set_policy(
            gateway.pki,
            gateway.axis,
            common_pb2.SignaturePolicy(agency_code=sender, transport_attested=True),
        )
        async with gateway.client(gateway.agency_pair(sender)) as http:
            body = await _send(http, data, messagetype)
        name = sample.id
        if messagetype == "status":
            # A status carries no document signature: whatever the lifecycle answers (05 before
            # any 03 is an illegal transition), it is never a signature refusal.
            assert not body.get("reason", "").startswith("SIGNATURE"), (name, body)
        elif body["status"] == "FAIL" and body["reason"] == "DUPLICATE":
            assert document_id in seen, (name, body)
        else:
            assert body["status"] == "OK", (name, body)
            sent += 1
        seen.add(document_id)
    assert sent >= 2


async def _register(directory: DirectoryHandlers, code: str) -> None:
    await directory.register(
        agency_from_pb(
            dpb.Agency(
                code=code,
                name=f"Cơ quan mẫu {code}",
                kind=dpb.AGENCY_KIND_DEPARTMENT,
                valid_from="2019-01-01",
            )
        )
    )
