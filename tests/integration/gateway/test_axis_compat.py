"""The national-axis-compatible endpoints: a DMS that only speaks edXML and the axis's REST
style sends to and receives from a gRPC DMS, statuses included, through the running gateway."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format

from docaxis_client.client import AgencyClient
from docaxis_client.documents import sign_submission
from gateway.axis import submission_header
from gateway.edxml import (
    Attachment,
    DocumentPackage,
    Organisation,
    StatusPackage,
    edxml_bytes,
    read_document,
    read_edxml,
)
from gateway.edxml.mapping import (
    attachment_ref,
    document_package,
    status_package,
)
from tests.conftest import make_header
from tests.integration.gateway.conftest import RunningGateway

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]


def _signed_edxml(gateway: RunningGateway, sender: str, recipient: str) -> tuple[bytes, str]:
    """What an edXML DMS sends: the package, and (made with docaxis_client) the two signatures
    over the manifest of the header and attachments docaxis maps the package to."""
    attachment = Attachment("cid:1", "cong-van.pdf", b"%PDF-1.7 noi dung " * 500)
    now = dt.datetime.now(dt.UTC)
    data = edxml_bytes(
        document_package(make_header(sender, [recipient]), [attachment], sent_at=now)
    )
    package = read_document(data).raise_for_errors()
    credentials = gateway.pki.agency(sender)
    signatures = sign_submission(
        submission_header(package),
        [attachment_ref(a) for a in package.attachments],
        person=credentials.person.identity(),
        organization=credentials.agency.identity(),
    )
    return data, json.dumps([json_format.MessageToDict(s) for s in signatures])


async def _send(
    http: httpx.AsyncClient, data: bytes, messagetype: str, signatures: str = ""
) -> dict[str, Any]:
    fields = {"messagetype": messagetype, "servicetype": "eDoc"}
    if signatures:
        fields["signatures"] = signatures
    response = await http.post(
        "/axis/sendEdoc", data=fields, files={"file_doc": ("doc.edxml", data, "text/xml")}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _received(http: httpx.AsyncClient, messagetype: str) -> list[dict[str, Any]]:
    body = (await http.get("/axis/getReceivedEdocList", params={"messagetype": messagetype})).json()
    assert body["status"] == "OK", body
    items: list[dict[str, Any]] = body["data"]
    return items


async def _get(http: httpx.AsyncClient, doc_id: str) -> tuple[Any, dict[str, Any]]:
    body = (await http.get("/axis/getEdoc", params={"docId": doc_id})).json()
    assert body["status"] == "OK", body
    package = read_edxml(base64.b64decode(body["data"]["content"])).raise_for_errors()
    return package, body["data"]


async def test_an_edxml_dms_and_a_grpc_dms_exchange_documents_and_statuses(
    gateway: RunningGateway, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    legacy, modern = await register_agencies(2)
    grpc_dms = clients[modern]
    async with gateway.client(gateway.agency_pair(legacy)) as http:
        # edXML -> gRPC.
        data, signatures = _signed_edxml(gateway, legacy, modern)
        sent = await _send(http, data, "edoc", signatures)
        assert (sent["status"], sent["ErrorCode"]) == ("OK", "0"), json.dumps(sent)
        document_uuid = sent["DocId"]
        assert (await _send(http, data, "edoc", signatures))["DocId"] == document_uuid

        pending = await grpc_dms.list_pending()
        (item,) = [i for i in pending.items if i.document_uuid == document_uuid]
        delivery = (await grpc_dms.fetch(item)).delivery
        assert delivery.header.sender == legacy
        assert delivery.attachments[0].name == "cong-van.pdf"
        grpc_dms.verify(delivery, gateway.pki.trust())  # the DMS's signatures travel intact
        await grpc_dms.acknowledge_item(item)
        await grpc_dms.report_status(
            item.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
        )

        # The statuses come back as status packages.
        codes = []
        for listed in await _received(http, "status"):
            if listed["documentUuid"] != document_uuid:
                continue
            assert listed["from"] == modern  # the status's reporter
            package, _ = await _get(http, listed["docId"])
            assert isinstance(package, StatusPackage)
            codes.append(package.status_code)
            done = await http.post(
                "/axis/updateStatus", data={"docId": listed["docId"], "status": "done"}
            )
            assert done.json()["status"] == "OK"
        assert "03" in codes, codes
        sent_list = (
            await http.get("/axis/getSentEdocList", params={"docId": document_uuid})
        ).json()
        (row,) = sent_list["data"]
        assert (row["to"], row["sendStatus"]) == (modern, "done")
        assert row["statuses"][-1]["code"] == "03"

        # gRPC -> edXML.
        upload = await grpc_dms.upload_stream(b"phu luc " * 300)
        reply = await grpc_dms.submit(
            str(uuid.uuid4()),
            make_header(modern, [legacy]),
            [upload.ref("phu-luc.pdf", "application/pdf")],
        )
        back_uuid = reply.receipt.document_uuid
        (listed,) = [i for i in await _received(http, "edoc") if i["documentUuid"] == back_uuid]
        assert (listed["from"], listed["to"]) == (modern, legacy)
        package, extra = await _get(http, listed["docId"])
        assert isinstance(package, DocumentPackage)
        assert package.header.sender.organ_id == modern
        assert package.attachments[0].data == b"phu luc " * 300
        assert len(extra["signatures"]) == 2
        done = await http.post(
            "/axis/updateStatus", data={"docId": listed["docId"], "status": "done"}
        )
        assert done.json()["status"] == "OK"
        assert not [i for i in await _received(http, "edoc") if i["documentUuid"] == back_uuid]
        status = status_package(
            reporter=Organisation(organ_id=legacy),
            document_id=reply.receipt.document_id,
            status_code="03",
            description="Đã tiếp nhận",
            at=dt.datetime.now(dt.UTC),
        )
        answered = await _send(http, edxml_bytes(status), "status")
        assert answered["status"] == "OK", answered
        tracked = await grpc_dms.track(back_uuid)
        assert tracked.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED
        # (edXML times have whole seconds: the 03 may sort before the automatic 01)
        assert pb.STATUS_CODE_ACCEPTED in [s.code for s in tracked.recipients[0].statuses]

        # Directory.
        agencies = (await http.get("/axis/getAgenciesList")).json()
        assert agencies["status"] == "OK"
        sync = (await http.get("/axis/getSynchronizeUnit", params={"version": 0})).json()
        assert sync["status"] == "OK"
        assert sync["data"]["latestVersion"]


async def test_axis_errors_use_the_envelope(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    legacy, other = await register_agencies(2)
    async with gateway.client(gateway.agency_pair(legacy)) as http:
        body = await _send(http, b"<not-edxml", "edoc")
        assert (body["status"], body["ErrorCode"], body["reason"]) == ("FAIL", "10", "VALIDATION")
        foreign, _ = _signed_edxml(gateway, other, legacy)
        body = await _send(http, foreign, "edoc")
        assert (body["ErrorCode"], body["reason"]) == ("19", "SENDER_MISMATCH")
        unknown, signatures = _signed_edxml(gateway, legacy, "999.99.98.H99")
        body = await _send(http, unknown, "edoc", signatures)
        assert (body["status"], body["reason"]) == ("FAIL", "INVALID_ADDRESSEE"), body
        assert body["ErrorCode"] == "18"
        body = (await http.get("/axis/getEdoc", params={"docId": "edoc:nope"})).json()
        assert body["status"] == "FAIL"
    async with gateway.client(None) as anonymous:
        response = await anonymous.get("/axis/getReceivedEdocList")
        assert response.status_code == 401
        assert response.json()["ErrorCode"] == "15"
