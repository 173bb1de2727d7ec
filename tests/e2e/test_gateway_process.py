"""`python -m gateway` as a real process in front of `docaxis run`: settings from the
environment, readiness from the services' health, a REST submission reaching a gRPC DMS, the
metrics counting it, and a clean exit on SIGTERM."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format

from docaxis_client.documents import sign_submission
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess, GatewayProcess
from tests.http_wire import Wire
from tests.pki import SuitePki

pytestmark = pytest.mark.e2e


async def test_the_gateway_process_serves_rest_in_front_of_the_axis(
    axis_process: AxisProcess, pki: SuitePki, tmp_path: Path
) -> None:
    sender, recipient = await register(axis_process, 2)
    gateway = GatewayProcess(axis_process, tmp_path)
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.probes_url) as probes:
            assert (await probes.get("/livez")).status_code == 200
            # On uvloop's loop, as the services (gateway/__main__.py).
            assert '"event_loop": "uvloop.Loop"' in gateway.logs()

            pair = pki.write_pair(f"e2e-{sender}", pki.agency(sender).agency)
            context = ssl.create_default_context(cafile=str(pki.bundle))
            context.load_cert_chain(str(pair.certificate), str(pair.key))
            data = b"%PDF-1.7 e2e" * 1000
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{gateway.port}", verify=context, timeout=30
            ) as http:
                digest = hashlib.sha256(data).hexdigest()
                uploaded = await http.post(
                    "/v1/attachments",
                    params={"sha256": digest, "size": len(data)},
                    content=data,
                    headers={"content-type": "application/octet-stream"},
                )
                assert uploaded.status_code == 201, uploaded.text
                ref = common_pb2.AttachmentRef(
                    name="a.pdf", media_type="application/pdf", size=len(data), sha256=digest
                )
                header = make_header(sender, [recipient])
                credentials = pki.agency(sender)
                request = pb.SubmitRequest(
                    consignment_id=str(uuid.uuid4()),
                    header=header,
                    attachments=[ref],
                    signatures=sign_submission(
                        header,
                        [ref],
                        person=credentials.person.identity(),
                        organization=credentials.agency.identity(),
                    ),
                )
                response = await http.post("/v1/documents", json=json_format.MessageToDict(request))
                assert response.status_code == 201, response.text
                document_uuid = response.json()["receipt"]["documentUuid"]
            async with axis_process.client(recipient) as dms:
                pending = await dms.list_pending()
                assert [i.document_uuid for i in pending.items] == [document_uuid]
            metrics = (await probes.get("/metrics")).text
            assert 'docaxis_gateway_submissions_total{api="rest"} 1.0' in metrics
    finally:
        code = await gateway.terminate()
    assert code == 0, gateway.logs()


def test_the_gateway_refuses_to_start_without_its_certificates() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCAXIS_GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "DOCAXIS_GATEWAY_TLS_CERT_FILE" in result.stderr


async def test_the_gateway_process_log_has_no_traceback_after_the_edge_attacks(
    axis_process: AxisProcess, pki: SuitePki, tmp_path: Path
) -> None:
    """Issue 17's edge attacks against the real process; then its log is grepped."""
    (code,) = await register(axis_process, 1)
    gateway = GatewayProcess(axis_process, tmp_path)
    await gateway.start()
    try:
        pair = pki.write_pair(f"e2e-attacker-{code}", pki.agency(code).agency)
        context = ssl.create_default_context(cafile=str(pki.bundle))
        context.load_cert_chain(str(pair.certificate), str(pair.key))
        wire = await Wire.open(gateway.port, context)
        try:
            await wire.send_head(
                "POST",
                "/v1/documents",
                {"Content-Type": "application/json", "Content-Length": "400000000"},
            )
            assert (await wire.answer()).status == 413
        finally:
            wire.close()
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{gateway.port}", verify=context, timeout=30
        ) as http:
            json_body = {"content-type": "application/json"}
            deep = await http.post("/v1/documents", content="[" * 100_000, headers=json_body)
            assert deep.status_code == 400
            recall = f"/v1/documents/{uuid.uuid4()}/recall"
            form = await http.post(recall, content="{}", headers={"content-type": "text/plain"})
            assert form.status_code == 415
            foreign = {**json_body, "origin": "https://evil.example"}
            assert (await http.post(recall, content="{}", headers=foreign)).status_code == 403
            ack = await http.get("/axis/updateStatus", params={"docId": "edoc:x", "status": "done"})
            assert ack.status_code == 405
    finally:
        exit_code = await gateway.terminate()
    assert exit_code == 0, gateway.logs()
    assert "Traceback" not in gateway.logs()
