"""The REST/JSON API against the running axis: a REST-only DMS and a gRPC DMS exchange documents
both ways, statuses included; refusals are problem+json with the gRPC reasons."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format

from docaxis_client.client import AgencyClient, open_channel
from docaxis_client.documents import sign_submission
from gateway.rest.openapi import openapi_document
from tests.conftest import make_header
from tests.integration.gateway.conftest import RunningGateway

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]
PROBLEM = "application/problem+json"
OPENAPI_FILE = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def _signed_submission(
    gateway: RunningGateway,
    sender: str,
    recipients: list[str],
    attachments: list[common_pb2.AttachmentRef],
) -> dict[str, Any]:
    credentials = gateway.pki.agency(sender)
    header = make_header(sender, recipients)
    signatures = sign_submission(
        header,
        attachments,
        person=credentials.person.identity(),
        organization=credentials.agency.identity(),
    )
    request = pb.SubmitRequest(
        consignment_id=str(uuid.uuid4()),
        header=header,
        attachments=attachments,
        signatures=signatures,
    )
    return json_format.MessageToDict(request)


async def _upload(http: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    response = await http.post(
        "/v1/attachments",
        params={"sha256": digest, "size": len(data)},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_rest_dms_and_a_grpc_dms_exchange_documents_and_statuses(
    gateway: RunningGateway,
    register_agencies: Register,
    clients: dict[str, AgencyClient],
) -> None:
    rest_code, grpc_code = await register_agencies(2)
    grpc_dms = clients[grpc_code]
    data = b"%PDF-1.7 " + bytes(range(256)) * 2000  # ~0.5 MB, several upload chunks
    async with gateway.client(gateway.agency_pair(rest_code)) as http:
        # REST -> gRPC: upload (streamed), submit (signed by the DMS), track.
        uploaded = await _upload(http, data)
        assert uploaded == {"sha256": hashlib.sha256(data).hexdigest(), "size": str(len(data))}
        ref = common_pb2.AttachmentRef(
            name="van-ban.pdf",
            media_type="application/pdf",
            size=len(data),
            sha256=uploaded["sha256"],
        )
        body = _signed_submission(gateway, rest_code, [grpc_code], [ref])
        response = await http.post("/v1/documents", json=body)
        assert response.status_code == 201, response.text
        receipt = response.json()["receipt"]
        replay = await http.post("/v1/documents", json=body)
        assert replay.status_code == 200
        assert replay.json()["replayed"] is True
        document_uuid = receipt["documentUuid"]

        pending = await grpc_dms.list_pending()
        (item,) = [i for i in pending.items if i.document_uuid == document_uuid]
        fetched = await grpc_dms.fetch(item)
        assert fetched.delivery.header.sender == rest_code
        await grpc_dms.acknowledge_item(item)
        await grpc_dms.report_status(
            item.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id=str(uuid.uuid4())
        )

        tracked = (await http.get(f"/v1/documents/{document_uuid}")).json()
        (recipient,) = tracked["recipients"]
        assert recipient["state"] == "DELIVERY_STATE_ACKNOWLEDGED"
        # 01 (arrived) is recorded by the fetch itself, then the clerk's 03.
        assert [s["code"] for s in recipient["statuses"]][-1] == "STATUS_CODE_ACCEPTED"

        # The status also reaches the REST sender's inbox as a notice.
        inbox = (await http.get("/v1/inbox")).json()
        notices = [
            i
            for i in inbox.get("items", [])
            if i["kind"] == "ITEM_KIND_STATUS" and i["documentUuid"] == document_uuid
        ]
        codes = []
        for listed in notices:
            notice = (await http.get(f"/v1/inbox/notices/{listed['noticeId']}")).json()
            codes.append(notice["status"]["status"]["code"])
            acked = await http.post(f"/v1/inbox/notices/{listed['noticeId']}/acknowledge")
            assert acked.status_code == 200
        assert "STATUS_CODE_ACCEPTED" in codes

        # gRPC -> REST: pull, fetch, download (streamed), acknowledge, report a status.
        upload = await grpc_dms.upload_stream(b"phu luc " * 1000)
        header = make_header(grpc_code, [rest_code])
        sent = await grpc_dms.submit(
            str(uuid.uuid4()), header, [upload.ref("phu-luc.pdf", "application/pdf")]
        )
        back_uuid = sent.receipt.document_uuid
        inbox = (await http.get("/v1/inbox", params={"page_size": 50})).json()
        (delivery_item,) = [i for i in inbox["items"] if i.get("documentUuid") == back_uuid]
        delivery_id = delivery_item["deliveryId"]
        delivery = (await http.get(f"/v1/inbox/deliveries/{delivery_id}")).json()["delivery"]
        assert delivery["header"]["sender"] == grpc_code
        assert len(delivery["signatures"]) == 2
        sha = delivery["attachments"][0]["sha256"]
        downloaded = await http.get(f"/v1/documents/{back_uuid}/attachments/{sha}")
        assert downloaded.content == b"phu luc " * 1000
        partial = await http.get(
            f"/v1/documents/{back_uuid}/attachments/{sha}", params={"offset": 8}
        )
        assert partial.content == (b"phu luc " * 1000)[8:]
        ack = await http.post(f"/v1/inbox/deliveries/{delivery_id}/acknowledge")
        assert ack.status_code == 200
        status = await http.post(
            f"/v1/deliveries/{delivery_id}/statuses",
            json={
                "code": "STATUS_CODE_ACCEPTED",
                "statusId": str(uuid.uuid4()),
                "occurredAt": dt.datetime.now(dt.UTC).isoformat(),
            },
        )
        assert status.status_code == 200, status.text
        receipt_response = await http.get(f"/v1/deliveries/{delivery_id}/receipt")
        assert receipt_response.status_code == 200
        back = await grpc_dms.track(back_uuid)
        assert back.recipients[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED
        assert back.recipients[0].statuses[-1].code == pb.STATUS_CODE_ACCEPTED

        # Recall through REST.
        recalled = await http.post(
            f"/v1/documents/{document_uuid}/recall", json={"reason": "Thu hồi văn bản"}
        )
        assert recalled.status_code == 200, recalled.text
        assert recalled.json()["recipients"][0]["recipient"] == grpc_code

        # Directory lookup and the delta feed.
        agency = (await http.get(f"/v1/agencies/{grpc_code}")).json()["agency"]
        assert agency["code"] == grpc_code
        changes = (await http.get("/v1/agency-changes", params={"since_version": 0})).json()
        assert "latestVersion" in changes

    async with httpx.AsyncClient(base_url=gateway.metrics_url) as probes:
        metrics = (await probes.get("/metrics")).text
    assert 'docaxis_gateway_submissions_total{api="rest"}' in metrics
    assert 'docaxis_gateway_deliveries_total{api="rest"}' in metrics
    assert 'docaxis_gateway_acknowledgements_total{api="rest"}' in metrics


async def test_refusals_are_problems_with_the_grpc_reasons(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    sender, recipient = await register_agencies(2)
    async with gateway.client(None) as anonymous:
        response = await anonymous.get("/v1/inbox")
        assert (response.status_code, response.headers["content-type"]) == (401, PROBLEM)
        assert response.json()["reason"] == "UNAUTHENTICATED"
    admin = gateway.pki.write_pair("gw-admin", gateway.pki.admin_certificate)
    async with gateway.client(admin) as operator:
        response = await operator.get("/v1/inbox")
        assert (response.status_code, response.json()["reason"]) == (403, "PERMISSION_DENIED")
    async with gateway.client(gateway.agency_pair(sender)) as http:
        for bad in (b"not json", b"[1]", b'{"header": {"unknownField": 1}}'):
            response = await http.post(
                "/v1/documents", content=bad, headers={"content-type": "application/json"}
            )
            assert (response.status_code, response.json()["reason"]) == (400, "VALIDATION")
        # A header the services refuse: every bad field is listed, as over gRPC.
        response = await http.post(
            "/v1/documents",
            json={"consignmentId": str(uuid.uuid4()), "header": {"sender": sender}},
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["reason"] == "VALIDATION"
        assert len(response.json()["violations"]) > 1
        # Submitting as another agency.
        body = _signed_submission(gateway, recipient, [sender], [])
        response = await http.post("/v1/documents", json=body)
        assert (response.status_code, response.json()["reason"]) == (403, "SENDER_MISMATCH")
        response = await http.get(f"/v1/documents/{uuid.uuid4()}")
        assert (response.status_code, response.json()["reason"]) == (404, "NOT_FOUND")
        # Found by schemathesis: a NUL reached Postgres through the directory (now refused here).
        response = await http.get("/v1/agencies", params={"parent_code": "\x00"})
        assert (response.status_code, response.json()["reason"]) == (400, "VALIDATION")
        response = await http.get("/v1/agencies/not-a-code")
        assert (response.status_code, response.json()["reason"]) == (400, "VALIDATION")
        response = await http.get("/v1/no-such-thing")
        assert (response.status_code, response.headers["content-type"]) == (404, PROBLEM)
        response = await http.post(
            "/v1/attachments",
            params={"sha256": "00" * 32, "size": 3},
            content=b"abc",
            headers={"content-type": "application/octet-stream"},
        )
        assert (response.status_code, response.json()["reason"]) == (400, "ATTACHMENT_MISMATCH")
    async with httpx.AsyncClient(base_url=gateway.metrics_url) as probes:
        metrics = (await probes.get("/metrics")).text
    assert 'docaxis_gateway_rejections_total{reason="SENDER_MISMATCH",status="403"}' in metrics


async def test_openapi_is_served_and_checked_in(gateway: RunningGateway) -> None:
    async with gateway.client(None) as http:
        served = (await http.get("/openapi.json")).json()
    assert served == openapi_document()
    assert json.loads(OPENAPI_FILE.read_text(encoding="utf-8")) == served, (
        "docs/openapi.json is stale: python -m gateway.rest.openapi > docs/openapi.json"
    )


async def test_probes(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.metrics_url) as http:
        assert (await http.get("/livez")).status_code == 200
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        metrics = await http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'docaxis_gateway_certificate_expiry_timestamp_seconds{certificate="client"}' in (
            metrics.text
        )


async def test_an_agency_revoked_at_runtime_is_refused_through_the_gateway_at_once(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    """The gateway loads CRLs at startup only; the services, which validate the forwarded
    agency certificate, apply a CRL ingested at runtime to the very next REST call."""
    (code,) = await register_agencies(1)
    async with gateway.client(gateway.agency_pair(code)) as http:
        assert (await http.get("/v1/inbox")).status_code == 200
        crl = gateway.pki.revoke(gateway.pki.agency(code).agency)
        async with open_channel(gateway.axis, gateway.pki.admin) as channel:
            await dpb_grpc.DirectoryServiceStub(channel).IngestCrl(
                dpb.IngestCrlRequest(crl=crl), timeout=10
            )
        response = await http.get("/v1/inbox")
        assert (response.status_code, response.json()["reason"]) == (401, "CERTIFICATE_REVOKED")
