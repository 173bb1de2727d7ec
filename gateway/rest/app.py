"""The REST/JSON API. Bodies are the proto3 JSON of the gRPC contracts' messages (the OpenAPI
document is generated from them), each call is made to the services as the gateway on behalf of
the agency the client certificate names, and every refusal is `application/problem+json` with
the gRPC error's stable reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from docaxis_client.trust.manifest import AGENCY_CODE_PATTERN
from gateway import bounded_json
from gateway.auth import Agency, AgencyAuthenticator, Principal
from gateway.clients import Services
from gateway.metrics import GatewayMetrics
from gateway.problems import Problem, problem_of

M = TypeVar("M", bound=Message)

UPLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Operation:
    """One REST operation, as the router and the OpenAPI document see it."""

    method: str
    path: str
    operation_id: str
    summary: str
    response: type[Message] | None
    request: type[Message] | None = None
    # Request fields that come from the path instead of the body.
    path_fields: frozenset[str] = frozenset()
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    status: int = 200
    raw_request: bool = False  # application/octet-stream body
    raw_response: bool = False
    tags: tuple[str, ...] = field(default=("exchange",))


@dataclass(slots=True)
class Context:
    services: Services
    authenticator: AgencyAuthenticator
    metrics: GatewayMetrics

    async def agency(self, request: Request) -> Agency:
        return self.authenticator.authenticate(request.scope)

    async def call(
        self,
        rpc: Callable[..., Awaitable[M]],
        message: Message | AsyncIterator[Message],
        principal: Principal,
    ) -> M:
        """`rpc` for `principal` (a message, or the requests of a client stream), its refusal as
        a Problem."""
        try:
            return await rpc(message, metadata=principal.metadata, timeout=self.services.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise problem_of(exc) from None


def message_from_json(raw: bytes, message_type: type[M]) -> M:
    """A request body (proto3 JSON, an object) as `message_type`; Problem 400 for anything else."""
    try:
        data = bounded_json.loads(raw or b"{}")
    except bounded_json.JsonError as exc:
        raise Problem(400, "VALIDATION", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Problem(400, "VALIDATION", "the body must be a JSON object")
    message = message_type()
    try:
        json_format.ParseDict(data, message)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise Problem(400, "VALIDATION", f"the body does not match the schema: {exc}") from None
    return message


def to_json(message: Message, status: int = 200) -> JSONResponse:
    return JSONResponse(json_format.MessageToDict(message), status_code=status)


async def parse_body(request: Request, message_type: type[M], **path: str) -> M:
    message = message_from_json(await request.body(), message_type)  # bounded by body_limits
    for name, value in path.items():
        setattr(message, name, value)
    return message


_CONTROL = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"}


def check_text(request: Request) -> None:
    """Path and query values are text: control characters (NUL first: Postgres text cannot hold
    it) are refused at the edge."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if any(char in _CONTROL for char in str(value)):
            raise Problem(400, "VALIDATION", f"{name} contains control characters")


def check_parameters(request: Request) -> None:
    """check_text, and the API's agency-code parameters are well-formed."""
    check_text(request)
    for name in ("code", "parent_code", "pcode"):
        value = request.path_params.get(name) or request.query_params.get(name)
        if value and not AGENCY_CODE_PATTERN.fullmatch(str(value)):
            raise Problem(400, "VALIDATION", f"{name} is not an agency code")


def cross_origin(request: Request) -> bool:
    """Whether a browser sent this request from another site. Browsers name the page's origin
    in `Origin` on every POST and say where the request comes from in `Sec-Fetch-Site`; DMS
    software sends neither, and is not refused for that."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"https://{request.headers.get('host', '')}":
        return True
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def check_same_origin(request: Request) -> None:
    if cross_origin(request):
        raise Problem(403, "CROSS_ORIGIN", "writes from another site's pages are refused")


def check_write(request: Request, op: Operation) -> None:
    """A write (POST) comes from no other site, and its body is of the operation's media type:
    a cross-site form can send only text/plain, urlencoded or multipart bodies without asking
    first (CORS preflight, which the API never grants)."""
    check_same_origin(request)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if op.raw_request:
        expected = "application/octet-stream"
    elif op.request is None and not media_type:
        return  # nothing to send: no body, no media type
    else:
        expected = "application/json"
    if media_type != expected:
        raise Problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"{op.operation_id} takes {expected}, not {media_type or 'an untyped body'}",
        )


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "VALIDATION", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise Problem(400, "VALIDATION", f"{name} must be between {low} and {high}")
    return value


def bool_query(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Problem(400, "VALIDATION", f"{name} must be true or false")
    return raw in ("true", "1")


OPERATIONS: list[Operation] = []
_HANDLERS: dict[str, Callable[[Context, Request], Awaitable[Response]]] = {}


def operation(
    op: Operation,
) -> Callable[
    [Callable[[Context, Request], Awaitable[Response]]],
    Callable[[Context, Request], Awaitable[Response]],
]:
    def register(
        handler: Callable[[Context, Request], Awaitable[Response]],
    ) -> Callable[[Context, Request], Awaitable[Response]]:
        OPERATIONS.append(op)
        _HANDLERS[op.operation_id] = handler
        return handler

    return register


@operation(
    Operation(
        "POST",
        "/v1/attachments",
        "uploadAttachment",
        "Stream an attachment (raw bytes) before submitting the document that lists it.",
        pb.UploadAttachmentResponse,
        query=(
            ("sha256", "string", "lowercase hex SHA-256 of the whole body"),
            ("size", "integer", "size of the whole body in bytes"),
        ),
        status=201,
        raw_request=True,
    )
)
async def upload_attachment(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    sha256 = request.query_params.get("sha256", "")
    size = int_query(request, "size", -1, 0, 2**62)
    if size < 0:
        raise Problem(400, "VALIDATION", "size is required")

    # Written one chunk at a time, not from a generator: when a body is refused half-way
    # (gateway.body_limits) or the client goes, the call is cancelled here.
    call = ctx.services.exchange.UploadAttachment(
        metadata=agency.metadata, timeout=ctx.services.timeout_s
    )
    try:
        try:
            declaration = pb.AttachmentDeclaration(sha256=sha256, size=size)
            await call.write(pb.UploadAttachmentRequest(declaration=declaration))
            buffer = bytearray()
            async for piece in request.stream():
                buffer += piece
                while len(buffer) >= UPLOAD_CHUNK:
                    await call.write(pb.UploadAttachmentRequest(chunk=bytes(buffer[:UPLOAD_CHUNK])))
                    del buffer[:UPLOAD_CHUNK]
            if buffer:
                await call.write(pb.UploadAttachmentRequest(chunk=bytes(buffer)))
            await call.done_writing()
        except asyncio.InvalidStateError:
            pass  # the services answered before the whole body was sent: the answer follows
        response = await call
    except grpc.aio.AioRpcError as exc:
        raise problem_of(exc) from None
    finally:
        call.cancel()  # nothing to cancel once the call is done
    return to_json(response, 201)


@operation(
    Operation(
        "POST",
        "/v1/documents",
        "submitDocument",
        "Submit a signed document (header, uploaded attachments, the two signatures).",
        pb.SubmitResponse,
        pb.SubmitRequest,
        status=201,
    )
)
async def submit(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = await parse_body(request, pb.SubmitRequest)
    response = await ctx.call(ctx.services.exchange.Submit, message, agency)
    if not response.replayed:
        ctx.metrics.submissions.labels("rest").inc()
    return to_json(response, 200 if response.replayed else 201)


@operation(
    Operation(
        "GET",
        "/v1/documents/{document_uuid}",
        "trackDocument",
        "Each recipient's state, statuses and recall state of a document sent or received.",
        pb.TrackResponse,
    )
)
async def track(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.TrackRequest(document_uuid=request.path_params["document_uuid"])
    return to_json(await ctx.call(ctx.services.exchange.Track, message, agency))


@operation(
    Operation(
        "POST",
        "/v1/documents/{document_uuid}/recall",
        "recallDocument",
        "Ask the recipients (all, or those listed) to give a sent document back (status 13).",
        pb.RecallResponse,
        pb.RecallRequest,
        path_fields=frozenset({"document_uuid"}),
    )
)
async def recall(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = await parse_body(
        request, pb.RecallRequest, document_uuid=request.path_params["document_uuid"]
    )
    return to_json(await ctx.call(ctx.services.exchange.Recall, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/documents/{document_uuid}/attachments/{sha256}",
        "downloadAttachment",
        "Stream an attachment of a document sent or received, from `offset` on.",
        None,
        query=(("offset", "integer", "first byte to send"),),
        raw_response=True,
    )
)
async def download(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.DownloadAttachmentRequest(
        document_uuid=request.path_params["document_uuid"],
        sha256=request.path_params["sha256"],
        offset=int_query(request, "offset", 0, 0, 2**62),
    )
    call = ctx.services.exchange.DownloadAttachment(
        message, metadata=agency.metadata, timeout=ctx.services.timeout_s
    )
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise problem_of(exc) from None

    async def body() -> AsyncIterator[bytes]:
        part = first
        while isinstance(part, pb.DownloadAttachmentResponse):
            yield part.chunk
            part = await call.read()  # an error here ends the body early (the length is unknown)

    return StreamingResponse(body(), media_type="application/octet-stream")


@operation(
    Operation(
        "GET",
        "/v1/inbox",
        "listInbox",
        "Pull mode: what awaits the agency (deliveries, status and recall notices), oldest first.",
        pb.ListPendingResponse,
        query=(
            ("page_size", "integer", "at most this many items (1-500)"),
            ("page_token", "string", "next_page_token of the previous page"),
        ),
        tags=("inbox",),
    )
)
async def list_inbox(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.ListPendingRequest(
        page_size=int_query(request, "page_size", 100, 1, 500),
        page_token=request.query_params.get("page_token", ""),
    )
    return to_json(await ctx.call(ctx.services.exchange.ListPending, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/inbox/deliveries/{delivery_id}",
        "fetchDelivery",
        "A delivery with its header, attachment references and signatures.",
        pb.FetchResponse,
        tags=("inbox",),
    )
)
async def fetch_delivery(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.FetchRequest(delivery_id=request.path_params["delivery_id"])
    response = await ctx.call(ctx.services.exchange.Fetch, message, agency)
    ctx.metrics.deliveries.labels("rest").inc()
    return to_json(response)


@operation(
    Operation(
        "GET",
        "/v1/inbox/notices/{notice_id}",
        "fetchNotice",
        "A status or recall notice.",
        pb.FetchResponse,
        tags=("inbox",),
    )
)
async def fetch_notice(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.FetchRequest(notice_id=request.path_params["notice_id"])
    return to_json(await ctx.call(ctx.services.exchange.Fetch, message, agency))


@operation(
    Operation(
        "POST",
        "/v1/inbox/deliveries/{delivery_id}/acknowledge",
        "acknowledgeDelivery",
        "The delivery is safely stored by the DMS (transport acknowledgement; idempotent).",
        pb.AcknowledgeResponse,
        tags=("inbox",),
    )
)
async def acknowledge_delivery(ctx: Context, request: Request) -> Response:
    return await _acknowledge(
        ctx, request, pb.AcknowledgeRequest(delivery_id=request.path_params["delivery_id"])
    )


@operation(
    Operation(
        "POST",
        "/v1/inbox/notices/{notice_id}/acknowledge",
        "acknowledgeNotice",
        "The notice is safely stored by the DMS (idempotent).",
        pb.AcknowledgeResponse,
        tags=("inbox",),
    )
)
async def acknowledge_notice(ctx: Context, request: Request) -> Response:
    return await _acknowledge(
        ctx, request, pb.AcknowledgeRequest(notice_id=request.path_params["notice_id"])
    )


async def _acknowledge(ctx: Context, request: Request, message: pb.AcknowledgeRequest) -> Response:
    agency = await ctx.agency(request)
    response = await ctx.call(ctx.services.exchange.Acknowledge, message, agency)
    if not response.already_acknowledged:
        ctx.metrics.acknowledgements.labels("rest").inc()
    return to_json(response)


@operation(
    Operation(
        "POST",
        "/v1/deliveries/{delivery_id}/statuses",
        "reportStatus",
        "The recipient reports a processing status (01-06, 15, 16) to the sender.",
        pb.ReportStatusResponse,
        pb.ReportStatusRequest,
        path_fields=frozenset({"delivery_id"}),
        tags=("inbox",),
    )
)
async def report_status(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = await parse_body(
        request, pb.ReportStatusRequest, delivery_id=request.path_params["delivery_id"]
    )
    return to_json(await ctx.call(ctx.services.exchange.ReportStatus, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/deliveries/{delivery_id}/receipt",
        "getTransportReceipt",
        "The hub-signed transport receipt of an acknowledged delivery.",
        pb.GetTransportReceiptResponse,
    )
)
async def transport_receipt(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = pb.GetTransportReceiptRequest(delivery_id=request.path_params["delivery_id"])
    return to_json(await ctx.call(ctx.services.exchange.GetTransportReceipt, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/agencies/{code}",
        "getAgency",
        "One agency of the directory, closed ones included.",
        dpb.GetAgencyResponse,
        tags=("directory",),
    )
)
async def get_agency(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = dpb.GetAgencyRequest(code=request.path_params["code"])
    return to_json(await ctx.call(ctx.services.directory.GetAgency, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/agencies",
        "listAgencies",
        "Agencies of the directory, by parent, a page at a time.",
        dpb.ListAgenciesResponse,
        query=(
            ("parent_code", "string", "only the children of this agency"),
            ("include_closed", "boolean", "closed agencies too"),
            ("page_size", "integer", "at most this many (1-1000)"),
            ("page_token", "string", "next_page_token of the previous page"),
        ),
        tags=("directory",),
    )
)
async def list_agencies(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = dpb.ListAgenciesRequest(
        parent_code=request.query_params.get("parent_code", ""),
        include_closed=bool_query(request, "include_closed"),
        page_size=int_query(request, "page_size", 100, 1, 1000),
        page_token=request.query_params.get("page_token", ""),
    )
    return to_json(await ctx.call(ctx.services.directory.ListAgencies, message, agency))


@operation(
    Operation(
        "GET",
        "/v1/agency-changes",
        "syncAgencies",
        "The directory's delta feed: agencies changed after `since_version`, closed ones included.",
        dpb.SyncAgenciesResponse,
        query=(
            ("since_version", "integer", "next_since_version of the previous call (0: all)"),
            ("page_size", "integer", "at most this many (1-1000)"),
        ),
        tags=("directory",),
    )
)
async def sync_agencies(ctx: Context, request: Request) -> Response:
    agency = await ctx.agency(request)
    message = dpb.SyncAgenciesRequest(
        since_version=int_query(request, "since_version", 0, 0, 2**62),
        page_size=int_query(request, "page_size", 100, 1, 1000),
    )
    return to_json(await ctx.call(ctx.services.directory.SyncAgencies, message, agency))


def routes(ctx: Context) -> list[Route]:
    def endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
        handler = _HANDLERS[op.operation_id]

        async def call(request: Request) -> Response:
            if op.method == "POST":
                check_write(request, op)
            check_parameters(request)
            return await handler(ctx, request)

        return call

    return [Route(op.path, endpoint(op), methods=[op.method]) for op in OPERATIONS]


def problem_handlers(metrics: GatewayMetrics) -> dict[Any, Any]:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        metrics.count_rejection(exc)
        return exc.response()

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reason = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "VALIDATION")
        return Problem(exc.status_code, reason, str(exc.detail)).response()

    return {Problem: on_problem, HTTPException: on_http}


def build_app(
    ctx: Context, openapi: dict[str, Any], extra_routes: list[BaseRoute] | None = None
) -> Starlette:
    rendered = JSONResponse(openapi).body  # serialised once, not per request

    async def openapi_endpoint(request: Request) -> Response:
        return Response(rendered, media_type="application/json")

    return Starlette(
        routes=[*routes(ctx), *(extra_routes or []), Route("/openapi.json", openapi_endpoint)],
        exception_handlers=problem_handlers(ctx.metrics),
    )
