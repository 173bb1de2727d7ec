"""Attacks on the gateway's edge (issue 17: 4, 7 and the console's sign-out of 8), against
the running gateway: each gets its typed refusal, and none leaves a traceback in the log."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from gateway.admin.session import COOKIE
from tests.conftest import Register
from tests.integration.gateway.conftest import RunningGateway
from tests.integration.gateway.test_axis_compat import _signed_edxml

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


@pytest.mark.usefixtures("no_tracebacks")
async def test_deeply_nested_json_is_a_validation_problem_not_a_server_error(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    async with gateway.client(gateway.agency_pair(code)) as http:
        for body in (
            "[" * 100_000,
            '{"a":' * 100_000 + "1" + "}" * 100_000,
            # Nested beyond the bound but otherwise valid JSON.
            '{"header": ' + '{"a": [' * 20 + "]}" * 20 + "}",
        ):
            response = await http.post("/v1/documents", content=body, headers=JSON)
            assert (response.status_code, response.headers["content-type"]) == (400, PROBLEM)
            assert response.json()["reason"] == "VALIDATION"
            assert "nested" in response.json()["detail"]
        # The same through /axis/sendEdoc's signatures field: the FAIL envelope.
        data, _ = _signed_edxml(gateway, code, code)
        response = await http.post(
            "/axis/sendEdoc",
            data={"messagetype": "edoc", "signatures": "[" * 100_000},
            files={"file_doc": ("doc.edxml", data, "text/xml")},
        )
        body = response.json()
        assert (body["status"], body["ErrorCode"], body["reason"]) == ("FAIL", "22", "VALIDATION")
        assert "signatures" in body["ErrorDesc"]


@pytest.mark.usefixtures("no_tracebacks")
async def test_v1_writes_take_json_only_and_no_cross_site_request(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    """A page in a browser that holds an agency certificate could otherwise recall a document
    with a text/plain form post (no CORS preflight for that)."""
    (code,) = await register_agencies(1)
    recall = f"/v1/documents/{uuid.uuid4()}/recall"
    reason = json.dumps({"reason": "thu hồi"})
    async with gateway.client(gateway.agency_pair(code)) as http:
        for media_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": media_type} if media_type else {}
            response = await http.post(recall, content=reason, headers=headers)
            assert (response.status_code, response.headers["content-type"]) == (415, PROBLEM)
            assert response.json()["reason"] == "UNSUPPORTED_MEDIA_TYPE"
        # A form post to a body-less write, and an attachment that is not an octet stream.
        ack = f"/v1/inbox/deliveries/{uuid.uuid4()}/acknowledge"
        response = await http.post(ack, data={"x": "1"})
        assert (response.status_code, response.json()["reason"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
        response = await http.post(
            "/v1/attachments", params={"sha256": "00" * 32, "size": 3}, content=b"abc"
        )
        assert (response.status_code, response.json()["reason"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
        # JSON from another site's page: refused before anything is parsed.
        for headers in (
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
        ):
            response = await http.post(recall, content=reason, headers={**JSON, **headers})
            assert (response.status_code, response.json()["reason"]) == (403, "CROSS_ORIGIN")
        # The DMS (no Origin) and the gateway's own origin get through to the services.
        own = {"origin": gateway.url, "sec-fetch-site": "same-origin"}
        for headers in ({}, own):
            response = await http.post(recall, content=reason, headers={**JSON, **headers})
            assert (response.status_code, response.json()["reason"]) == (404, "NOT_FOUND")
        response = await http.post(ack)  # no body, no media type
        assert (response.status_code, response.json()["reason"]) == (404, "NOT_FOUND")


@pytest.mark.usefixtures("no_tracebacks")
async def test_axis_acknowledges_by_post_only_and_not_from_another_site(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    doc_id = {"docId": f"edoc:{uuid.uuid4()}", "status": "done"}
    async with gateway.client(gateway.agency_pair(code)) as http:
        response = await http.get("/axis/updateStatus", params=doc_id)
        assert response.status_code == 405
        response = await http.post(
            "/axis/updateStatus", data=doc_id, headers={"origin": "https://evil.example"}
        )
        body = response.json()
        assert (body["status"], body["ErrorCode"], body["reason"]) == ("FAIL", "15", "CROSS_ORIGIN")
        data, _ = _signed_edxml(gateway, code, code)
        response = await http.post(
            "/axis/sendEdoc",
            data={"messagetype": "edoc"},
            files={"file_doc": ("doc.edxml", data, "text/xml")},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert response.json()["reason"] == "CROSS_ORIGIN"
        # From the DMS: through to the services, which know no such delivery.
        body = (await http.post("/axis/updateStatus", data=doc_id)).json()
        assert (body["status"], body["reason"]) == ("FAIL", "NOT_FOUND")


@pytest.mark.usefixtures("no_tracebacks")
async def test_signing_out_of_the_console_ends_the_session_on_the_server(
    gateway: RunningGateway,
) -> None:
    """Before, the cookie of a signed-out session kept working until it idled out."""
    admin = gateway.pki.write_pair("gw-admin", gateway.pki.admin_certificate)
    origin = {"origin": gateway.url}
    async with gateway.client(admin) as http:
        signed_in = await http.post(
            "/admin/login", data={"next": "/admin/agencies"}, headers=origin
        )
        assert signed_in.status_code == 303
        cookie = {"cookie": f"{COOKIE}={signed_in.cookies[COOKIE]}"}
        http.cookies.clear()  # only the cookie taken above is sent from here on
        page = await http.get("/admin/agencies", headers=cookie)
        assert page.status_code == 200
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match is not None
        signed_out = await http.post(
            "/admin/logout", data={"csrf": match[1]}, headers={**cookie, **origin}
        )
        assert signed_out.status_code == 303
        http.cookies.clear()
        replayed = await http.get("/admin/agencies", headers=cookie)
        assert replayed.status_code == 303
        assert replayed.headers["location"].startswith("/admin/login?")
        assert "expired=1" in replayed.headers["location"]


@pytest.mark.usefixtures("no_tracebacks")
async def test_a_malformed_axis_form_is_the_fail_envelope(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    async with gateway.client(gateway.agency_pair(code)) as http:
        response = await http.post(
            "/axis/sendEdoc",
            content=b'--x\r\nContent-Disposition: form-data; name="file_doc"\r\n\r\nno end',
            headers={"content-type": "multipart/form-data; boundary=y"},
        )
    body = response.json()
    assert (response.status_code, body["status"], body["reason"]) == (200, "FAIL", "VALIDATION")
