"""Bounds at the gateway's edge (issue 17: 3, 8), measured on the wire with raw HTTP/1.1 over
mutual TLS: a body over its route's limit is refused before it is read (the client is still
sending when the refusal arrives), slow bodies and idle or slow-header connections are cut,
and TLS 1.2 offers AEAD suites only."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.axis import MAX_EDXML_BYTES
from gateway.body_limits import MAX_FORM_BODY, MAX_JSON_BODY
from tests.conftest import Register
from tests.http_wire import Answer, Wire
from tests.integration.gateway.conftest import RunningGateway, gateway_served
from tests.pki import SuitePki

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
MIB = 1024 * 1024


def _refused_as_too_large(answer: Answer, *, axis: bool) -> None:
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    if axis:
        assert (answer.body["status"], answer.body["ErrorCode"]) == ("FAIL", "21")
    else:
        assert answer.headers["content-type"] == PROBLEM
    assert answer.body["reason"] == "SIZE_LIMIT_EXCEEDED"


@pytest.mark.usefixtures("no_tracebacks")
async def test_a_declared_length_over_the_routes_limit_is_refused_before_the_body_is_sent(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    """Each request sends its headers only: the refusal comes although not one byte of the
    400 MB (or other) body was sent, and the connection ends."""
    (code,) = await register_agencies(1)
    pair = gateway.agency_pair(code)
    form = "application/x-www-form-urlencoded"
    cases = [
        ("POST", "/v1/documents", "application/json", 400_000_000, False),
        (
            "POST",
            "/axis/sendEdoc",
            "multipart/form-data; boundary=x",
            MAX_EDXML_BYTES + 2 * MIB,
            True,
        ),
        ("POST", "/axis/updateStatus", form, MAX_FORM_BODY + 1, True),
        (
            "POST",
            "/v1/attachments?sha256=" + "0" * 64 + "&size=10",
            "application/octet-stream",
            11,
            False,
        ),
        ("GET", "/v1/inbox", "application/json", MAX_JSON_BODY + 1, False),
        ("POST", "/admin/login", form, MAX_FORM_BODY + 1, False),
    ]

    async def refused(method: str, target: str, media_type: str, length: int, axis: bool) -> None:
        wire = await Wire.open(gateway.port, gateway.ssl_context(pair))
        try:
            await wire.send_head(
                method, target, {"Content-Type": media_type, "Content-Length": str(length)}
            )
            _refused_as_too_large(await wire.answer(), axis=axis)
            assert await wire.closed_by_server()
        finally:
            wire.close()

    # Each on a connection of its own, all at once: each refusal waits LINGER_S for the body
    # that never comes before it closes (gateway/body_limits.py), 6 s one after the other.
    async with asyncio.TaskGroup() as requests:
        for case in cases:
            requests.create_task(refused(*case))
    async with httpx.AsyncClient(base_url=gateway.metrics_url) as probes:
        metrics = (await probes.get("/metrics")).text
    assert 'docaxis_gateway_rejections_total{reason="SIZE_LIMIT_EXCEEDED",status="413"}' in metrics


async def _stream_until_answered(
    wire: Wire, target: str, media_type: str, most: int
) -> tuple[Answer, int]:
    """Sends a chunked body of up to `most` bytes while reading; returns the answer and how
    much was sent before it came (or the connection ended)."""
    await wire.send_head(
        "POST", target, {"Content-Type": media_type, "Transfer-Encoding": "chunked"}
    )
    answering = asyncio.create_task(wire.answer())
    chunk = b" " * 65536
    sent = 0
    try:
        while sent < most and not answering.done():
            wire.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await wire.writer.drain()
            sent += len(chunk)
    except (ConnectionError, ssl.SSLError):
        pass
    async with asyncio.timeout(20):
        return await answering, sent


@pytest.mark.usefixtures("no_tracebacks")
async def test_a_chunked_body_is_read_up_to_its_limit_and_no_further(
    gateway: RunningGateway, register_agencies: Register
) -> None:
    """Without a Content-Length the gateway counts what it reads: the refusal comes while the
    client is still sending, long before it has sent 64 MiB (before the fix, a JSON body was
    read whole before its size was checked, and the client sent all of it)."""
    (code,) = await register_agencies(1)
    pair = gateway.agency_pair(code)
    for target, media_type, limit, axis in (
        ("/v1/documents", "application/json", MAX_JSON_BODY, False),
        ("/axis/updateStatus", "application/x-www-form-urlencoded", MAX_FORM_BODY, True),
        # An attachment stream longer than its declared size.
        (
            f"/v1/attachments?sha256={'0' * 64}&size=100000",
            "application/octet-stream",
            100_000,
            False,
        ),
    ):
        wire = await Wire.open(gateway.port, gateway.ssl_context(pair))
        try:
            answer, sent = await _stream_until_answered(wire, target, media_type, 64 * MIB)
        finally:
            wire.close()
        _refused_as_too_large(answer, axis=axis)
        assert limit < sent < 64 * MIB, (target, sent)


@pytest.fixture(scope="module")
async def strict_gateway(axis: str, pki: SuitePki) -> AsyncIterator[RunningGateway]:
    """A gateway with short header and body time bounds (production defaults: 10 s, 30 s)."""
    async with gateway_served(
        axis, pki, header_timeout_s=1.0, body_grace_s=1.0, body_min_rate=1_000_000
    ) as running:
        yield running


@pytest.mark.usefixtures("no_tracebacks")
async def test_connections_that_send_no_request_are_closed_before_authentication(
    strict_gateway: RunningGateway, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    pair = strict_gateway.agency_pair(code)
    context = strict_gateway.ssl_context(pair)
    idle = await Wire.open(strict_gateway.port, context)  # handshake done, then nothing
    slow = await Wire.open(strict_gateway.port, context)  # a header line now and then
    try:
        slow.writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def drip() -> None:
            n = 0
            while not slow.writer.is_closing():
                slow.writer.write(b"X-Slow-%d: 1\r\n" % n)
                await asyncio.sleep(0.1)
                n += 1

        dripping = asyncio.create_task(drip())
        assert await idle.closed_by_server()
        assert await slow.closed_by_server()
        dripping.cancel()
    finally:
        idle.close()
        slow.close()
    # A client that sends its requests gets answers, one after the other on one connection.
    async with strict_gateway.client(pair) as http:
        for _ in range(2):
            assert (await http.get("/v1/inbox")).status_code == 200


@pytest.mark.usefixtures("no_tracebacks")
async def test_a_body_that_stops_coming_is_refused(
    strict_gateway: RunningGateway, register_agencies: Register
) -> None:
    (code,) = await register_agencies(1)
    pair = strict_gateway.agency_pair(code)
    for target, media_type, axis in (
        ("/v1/documents", "application/json", False),
        ("/axis/updateStatus", "application/x-www-form-urlencoded", True),
    ):
        wire = await Wire.open(strict_gateway.port, strict_gateway.ssl_context(pair))
        try:
            await wire.send_head(
                "POST", target, {"Content-Type": media_type, "Content-Length": "1000"}
            )
            wire.writer.write(b"{" if not axis else b"docId=")  # and then nothing more
            answer = await wire.answer()
        finally:
            wire.close()
        assert (answer.status, answer.body["reason"]) == (408, "REQUEST_TIMEOUT")
        assert answer.body["status"] == ("FAIL" if axis else 408)


async def test_tls_offers_aead_cipher_suites_only(gateway: RunningGateway) -> None:
    def tls12(ciphers: str) -> ssl.SSLContext:
        context = gateway.ssl_context(None)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        return context

    for cbc in ("ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256", "AES256-SHA:AES128-SHA"):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", gateway.port, ssl=tls12(cbc))
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port, ssl=tls12("ECDHE+AESGCM"))
    cipher = writer.get_extra_info("cipher")
    writer.transport.abort()
    assert "GCM" in cipher[0]
    async with httpx.AsyncClient(verify=gateway.ssl_context(None)) as http:
        assert (await http.get(f"{gateway.url}/openapi.json")).status_code == 200
