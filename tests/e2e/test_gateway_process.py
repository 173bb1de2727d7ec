"""`python -m gateway` as a real process in front of `docaxis run`: settings from the
environment, readiness from the services' health, a REST submission reaching a gRPC DMS, the
metrics counting it, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
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
from tests.e2e.processes import AxisProcess, free_port
from tests.pki import SuitePki

pytestmark = pytest.mark.e2e


def _gateway_env(pki: SuitePki, target: str, port: int, metrics_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DOCAXIS_GATEWAY_ADDRESS": f"127.0.0.1:{port}",
        "DOCAXIS_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "DOCAXIS_GATEWAY_GRPC_TARGET": target,
        "DOCAXIS_GATEWAY_TLS_CERT_FILE": str(pki.server.certificate),
        "DOCAXIS_GATEWAY_TLS_KEY_FILE": str(pki.server.key),
        "DOCAXIS_GATEWAY_TLS_CLIENT_CA_FILE": str(pki.bundle),
        "DOCAXIS_GATEWAY_CLIENT_CERT_FILE": str(pki.gateway_pair.certificate),
        "DOCAXIS_GATEWAY_CLIENT_KEY_FILE": str(pki.gateway_pair.key),
    }


async def test_the_gateway_process_serves_rest_in_front_of_the_axis(
    axis_process: AxisProcess, pki: SuitePki, tmp_path: Path
) -> None:
    sender, recipient = await register(axis_process, 2)
    port, metrics_port = free_port(), free_port()
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [sys.executable, "-m", "gateway"],
        env=_gateway_env(pki, axis_process.address, port, metrics_port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as probes:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await probes.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            assert (await probes.get("/livez")).status_code == 200

            pair = pki._write(f"e2e-{sender}", pki.agency(sender).agency)
            context = ssl.create_default_context(cafile=str(pki.bundle))
            context.load_cert_chain(str(pair.certificate), str(pair.key))
            data = b"%PDF-1.7 e2e" * 1000
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30
            ) as http:
                digest = hashlib.sha256(data).hexdigest()
                uploaded = await http.post(
                    "/v1/attachments", params={"sha256": digest, "size": len(data)}, content=data
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
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        finally:
            log.close()
    assert code == 0, (tmp_path / "gateway.log").read_text()


def test_the_gateway_refuses_to_start_without_its_certificates() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCAXIS_GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "DOCAXIS_GATEWAY_TLS_CERT_FILE" in result.stderr
