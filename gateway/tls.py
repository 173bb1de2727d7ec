"""uvicorn over TLS that exposes the client certificate to the app and drops idle connections.

uvicorn does not put the peer certificate into the ASGI scope (encode/uvicorn#745, #2306). This
HTTP/1.1 protocol adds the ASGI TLS extension, `scope["extensions"]["tls"]`, with
`client_cert_chain` (PEM, leaf first: Python's ssl module before 3.13 gives the leaf only; the
gateway's trust store holds the issuing CAs) and `tls_version`.

uvicorn also waits for a request's headers for ever: a connection that completes the TLS
handshake and then sends nothing, or a header line now and then, holds its socket, memory and
TLS state before anyone is authenticated. Here a connection must complete a request's headers
within `header_timeout_s` of the handshake (and of each response), or it is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

# TLS 1.2 suites with forward secrecy and authenticated encryption only (no CBC, no RSA key
# exchange); TLS 1.3's suites are all AEAD already.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsH11Protocol(H11Protocol):
    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        ssl_object = transport.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            return
        der = ssl_object.getpeercert(binary_form=True)
        extension = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": None,
            "cipher_suite": None,
        }
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") in ("http", "websocket"):
                scope.setdefault("extensions", {})["tls"] = extension
            await inner(scope, receive, send)

        self.app = app

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._stop_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request's

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()


def tls_protocol(header_timeout_s: float) -> type[TlsH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with this header timeout."""

    class Configured(TlsH11Protocol):
        pass

    Configured.header_timeout_s = header_timeout_s
    return Configured
