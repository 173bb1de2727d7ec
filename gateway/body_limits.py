"""Request bodies bounded before they are read, in size and in time, on every route.

Each route has a size limit (`body_limit`). A `Content-Length` over it is refused before a byte
of the body is read; a chunked body is counted as it arrives and refused at the first byte over
the limit. A body must also keep coming: a client gets `grace_s` seconds of waiting plus one
second per `min_rate` bytes it has sent, so a slow-drip upload cannot hold a connection for
long. Either refusal is answered at once (413 or 408: problem+json, the FAIL envelope under
/axis/) with `Connection: close`, the operation that was reading the body is abandoned, and the
rest of the body is never stored: at most another `limit` bytes are read and dropped, for at
most a second, so that the client reads the refusal before the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.axis import MAX_EDXML_BYTES, fail
from gateway.metrics import GatewayMetrics
from gateway.problems import Problem

MAX_JSON_BODY = 4 * 1024 * 1024
# A sendEdoc form: the edXML file, the multipart framing and the small fields (signatures).
MAX_EDXML_FORM = MAX_EDXML_BYTES + 1024 * 1024
# Everything else: urlencoded or multipart forms of a few fields (/axis/*, the admin console).
MAX_FORM_BODY = 64 * 1024
# After a refusal, what the client is still sending is dropped this long before the
# connection closes (see BoundedBodies._refuse).
LINGER_S = 1.0


def body_limit(scope: Scope) -> int:
    """The most bytes the route of `scope` reads as a request body."""
    path: str = scope["path"]
    if path == "/v1/attachments":
        # A stream of exactly the declared size (the services bound the size itself).
        for key, _, value in (p.partition(b"=") for p in scope["query_string"].split(b"&")):
            if key == b"size" and value.isdigit() and len(value) < 20:
                return int(value)
        return MAX_FORM_BODY
    if path == "/axis/sendEdoc":
        return MAX_EDXML_FORM
    if path.startswith("/v1/"):
        return MAX_JSON_BODY
    return MAX_FORM_BODY


class _Refused(Exception):
    """The body was refused and answered; the operation reading it stops here."""


class BoundedBodies:
    """ASGI middleware: the whole application's request bodies, bounded (see the module)."""

    def __init__(
        self, app: ASGIApp, metrics: GatewayMetrics, *, grace_s: float, min_rate: float
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.grace_s = grace_s
        self.min_rate = min_rate

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, problem: Problem, limit: int
    ) -> None:
        """Answers `problem` and ends the connection. Closing a socket that still has unread
        data resets it, which can destroy the answer before the client has read it: so the
        answer goes out whole but for its end, what the client is still sending is read and
        dropped (at most `limit` bytes, for at most LINGER_S), and then the connection closes."""
        self.metrics.count_rejection(problem)
        on_axis = str(scope["path"]).startswith("/axis/")
        response = fail(problem, http_status=True) if on_axis else problem.response()
        response.headers["connection"] = "close"
        start = {"status": response.status_code, "headers": response.raw_headers}
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        dropped = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while dropped <= limit:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                    dropped += len(message.get("body", b""))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        too_large = Problem(
            413, "SIZE_LIMIT_EXCEEDED", f"this request's body is limited to {limit} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, too_large, limit)
            return
        loop = asyncio.get_running_loop()
        received, waited, more_body = 0, 0.0, True
        started = answered = False

        async def refuse(problem: Problem) -> NoReturn:
            nonlocal answered
            if not (answered or started):  # else the connection just ends
                await self._refuse(scope, receive, send, problem, limit)
            answered = True
            raise _Refused

        async def bounded_receive() -> Message:
            nonlocal received, waited, more_body
            if not more_body:  # the body is complete: waiting for a disconnect is free
                return await receive()
            budget = self.grace_s + received / self.min_rate - waited
            since = loop.time()
            try:
                async with asyncio.timeout(max(budget, 0.0)):
                    message = await receive()
            except TimeoutError:
                await refuse(Problem(408, "REQUEST_TIMEOUT", "the request body came too slowly"))
            waited += loop.time() - since
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = message.get("more_body", False)
                if received > limit:
                    await refuse(too_large)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not answered:  # after a refusal, the refusal is the answer
                started = True
                await send(message)

        with contextlib.suppress(_Refused):
            await self.app(scope, bounded_receive, guarded_send)
