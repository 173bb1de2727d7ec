"""uvicorn over TLS that exposes the client certificate to the app.

uvicorn does not put the peer certificate into the ASGI scope (encode/uvicorn#745, #2306). This
HTTP/1.1 protocol adds the ASGI TLS extension, `scope["extensions"]["tls"]`, with
`client_cert_chain` (PEM, leaf first: Python's ssl module before 3.13 gives the leaf only; the
gateway's trust store holds the issuing CAs) and `tls_version`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class TlsH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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
