"""Issue 17, findings 5 and 6, through the gateway's REST API: a NUL in a subject or a path for
an attachment name is a problem+json 400 naming the field (it was a 502 with asyncpg's
message), and no traceback."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format

from tests.conftest import make_header
from tests.integration.gateway.conftest import RunningGateway

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crash_free_log")]

Register = Callable[..., Awaitable[list[str]]]


async def test_control_characters_and_a_path_as_a_name_are_a_400_naming_the_fields(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    sender, recipient = await register_agencies(2)
    body = json_format.MessageToDict(
        pb.SubmitRequest(consignment_id=str(uuid.uuid4()), header=make_header(sender, [recipient]))
    )
    body["header"]["subject"] = "Về việc\u0000 thử"
    body["attachments"] = [
        {
            "name": "../../etc/passwd",
            "mediaType": "application/pdf",
            "size": "10",
            "sha256": "a" * 64,
        }
    ]
    async with gateway.client(gateway.agency_pair(sender)) as http:
        response = await http.post("/v1/documents", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["reason"] == "VALIDATION"
    assert "asyncpg" not in response.text
    assert "Traceback" not in response.text
    fields = {v["field"] for v in problem["violations"]}
    assert "header.subject" in fields
