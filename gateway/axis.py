"""National-axis-compatible operations (domain.md §8) over edXML, under `/axis/`.

An existing DMS switches to docaxis by changing its base URL: the same operation names, the
`{status, ErrorCode, ErrorDesc, data}` envelope, and edXML packages in and out. Domain refusals
answer HTTP 200 with `status: "FAIL"`, a numeric ErrorCode of the provincial vocabulary seen in
the field (10 invalid file, 15 bad credentials, 18 receiver not found, 19 sender not registered,
20 platform error, 21 file processing error, 22 edXML not per standard, 23 receiver locked) and
docaxis's stable `reason` next to it.

Mailbox ids (`docId`) are `edoc:<delivery id>` for documents and `status:<notice id>` for status
notices; `getSentEdocList` takes the document uuid `sendEdoc` returned.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import json_format, timestamp_pb2
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import bounded_json
from gateway.auth import Agency
from gateway.edxml import (
    Attachment,
    DocumentPackage,
    EdxmlError,
    MalformedXmlError,
    Organisation,
    StatusPackage,
    UnsafeXmlError,
    edxml_bytes,
    read_edxml,
)
from gateway.edxml.mapping import (
    attachment_ref,
    document_header,
    document_package,
    status_package,
    status_values,
)
from gateway.problems import Problem, problem_of
from gateway.rest.app import Context, check_parameters, check_same_origin

MAX_EDXML_BYTES = 64 * 1024 * 1024
# docaxis reason -> the provincial error code DMSs already handle.
ERROR_CODES = {
    "VALIDATION": "22",
    "UNSUPPORTED_VERSION": "22",
    "SIZE_LIMIT_EXCEEDED": "21",
    "ATTACHMENT_MISMATCH": "21",
    "INVALID_ADDRESSEE": "18",
    "NOT_REGISTERED": "19",
    "SENDER_MISMATCH": "19",
    "UNAUTHENTICATED": "15",
    "CERTIFICATE_REVOKED": "15",
    "CERTIFICATE_EXPIRED": "15",
    "UNTRUSTED_ISSUER": "15",
    "PERMISSION_DENIED": "15",
    "CROSS_ORIGIN": "15",
    "NOT_FOUND": "18",
    "DUPLICATE": "21",
    "SIGNATURE_INVALID": "22",
    "SIGNATURE_MISSING": "22",
    "SIGNATURE_ALGORITHM_WEAK": "22",
    "SIGNER_MISMATCH": "19",
    "CERTIFICATE_UNBOUND": "19",
    "TIMESTAMP_INVALID": "22",
    "UNAVAILABLE": "20",
}
_ATTACHMENT_CHUNK = 256 * 1024
# How the original edXML file is named among a document's files.
ENVELOPE_NAME = "envelope.edxml"
EDXML_MEDIA_TYPE = "application/xml"


def ok(data: Any = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "OK", "ErrorCode": "0", "ErrorDesc": "", "data": data, **extra})


def fail(problem: Problem, *, http_status: bool = False) -> JSONResponse:
    body: dict[str, Any] = {
        "status": "FAIL",
        "ErrorCode": problem.metadata.get("axisErrorCode") or ERROR_CODES.get(problem.reason, "20"),
        "ErrorDesc": problem.detail,
        "reason": problem.reason,
        "data": None,
    }
    if problem.violations:
        body["violations"] = problem.violations
    # Refusals before the operation runs (authentication, a body refused before it is read)
    # keep their HTTP status; the rest answers 200 with FAIL, as the axis does.
    return JSONResponse(body, status_code=problem.status if http_status else 200)


async def _upload(ctx: Context, agency: Agency, attachment: Attachment) -> None:
    await _upload_bytes(ctx, agency, attachment.sha256, attachment.data)


async def _upload_bytes(ctx: Context, agency: Agency, sha256: str, data: bytes) -> None:
    async def parts() -> AsyncIterator[pb.UploadAttachmentRequest]:
        yield pb.UploadAttachmentRequest(
            declaration=pb.AttachmentDeclaration(sha256=sha256, size=len(data))
        )
        for start in range(0, len(data), _ATTACHMENT_CHUNK):
            yield pb.UploadAttachmentRequest(chunk=data[start : start + _ATTACHMENT_CHUNK])

    await ctx.call(ctx.services.exchange.UploadAttachment, parts(), agency)


def signatures_from_form(raw: str) -> list[common_pb2.DocumentSignature]:
    """The two document signatures (proto JSON), made by the DMS with docaxis_client over the
    manifest of the mapped header and attachments; none: the submission goes unsigned."""
    if not raw:
        return []
    try:
        items = bounded_json.loads(raw)
        if not isinstance(items, list):
            raise TypeError("not a list")
        return [json_format.ParseDict(item, common_pb2.DocumentSignature()) for item in items]
    except (ValueError, TypeError, json_format.ParseError) as exc:
        raise Problem(400, "VALIDATION", f"signatures: {exc}") from None


def _stamp(moment: dt.datetime | None) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime((moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    return stamp


def _file_id(data: bytes) -> str:
    """A stable id of an uploaded file: the same file sent twice is one submission or status."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, hashlib.sha256(data).hexdigest()))


def submission_header(package: DocumentPackage) -> common_pb2.DocumentHeader:
    """The header a package submits, and what a DMS signs (with the attachment refs): the
    mapped header without DocumentId, which the exchange computes itself (output only)."""
    header = document_header(package)
    header.ClearField("document_id")
    return header


async def _send_document(
    ctx: Context, agency: Agency, package: DocumentPackage, data: bytes, signatures: str
) -> JSONResponse:
    header = submission_header(package)
    signed = signatures_from_form(signatures)  # refused before anything is uploaded
    for attachment in package.attachments:
        await _upload(ctx, agency, attachment)
    # The file itself is kept too, byte for byte: its XML-DSig is checked by the exchange and
    # stays verifiable by edXML recipients, who get these bytes back from getEdoc.
    envelope = hashlib.sha256(data).hexdigest()
    await _upload_bytes(ctx, agency, envelope, data)
    request = pb.SubmitRequest(
        # The same file sent twice is one submission (the first receipt comes back).
        consignment_id=_file_id(data),
        header=header,
        attachments=[attachment_ref(attachment) for attachment in package.attachments],
        signatures=signed,
        envelope=common_pb2.AttachmentRef(
            name=ENVELOPE_NAME, media_type=EDXML_MEDIA_TYPE, size=len(data), sha256=envelope
        ),
    )
    response = await ctx.call(ctx.services.exchange.Submit, request, agency)
    if not response.replayed:
        ctx.metrics.submissions.labels("edxml").inc()
    receipt = response.receipt
    return ok(
        {"documentUuid": receipt.document_uuid, "documentId": receipt.document_id},
        DocId=receipt.document_uuid,
    )


async def _send_status(
    ctx: Context, agency: Agency, package: StatusPackage, data: bytes
) -> JSONResponse:
    values = status_values(package)
    if not values.document_id:
        raise Problem(400, "VALIDATION", "ResponseFor/DocumentId is required")
    tracked = await ctx.call(
        ctx.services.exchange.Track, pb.TrackRequest(document_id=values.document_id), agency
    )
    status_id = _file_id(data)
    if values.status_code == "13":  # the sender takes its document back
        await ctx.call(
            ctx.services.exchange.Recall,
            pb.RecallRequest(document_uuid=tracked.document_uuid, reason=values.description),
            agency,
        )
        return ok(None, DocId=status_id)
    mine = [
        r
        for r in tracked.recipients
        if agency.code in (r.effective_recipient, r.requested_recipient)
    ]
    if not mine:
        raise Problem(200, "NOT_FOUND", f"{agency.code} did not receive {values.document_id}")
    try:
        code = int(values.status_code)
    except ValueError:
        raise Problem(400, "VALIDATION", f"StatusCode {values.status_code!r}") from None
    staff = package.staff
    await ctx.call(
        ctx.services.exchange.ReportStatus,
        pb.ReportStatusRequest(
            delivery_id=mine[0].delivery_id,
            code=code,  # type: ignore[arg-type]  # the services validate the code list
            description=values.description,
            staff=(
                pb.StaffInfo(
                    department=staff.department,
                    staff=staff.staff,
                    email=staff.email,
                    mobile=staff.mobile,
                )
                if staff is not None
                else None
            ),
            occurred_at=_stamp(package.timestamp),
            status_id=status_id,
        ),
        agency,
    )
    return ok(None, DocId=status_id)


async def send_edoc(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    async with request.form(max_files=1, max_fields=20, max_part_size=MAX_EDXML_BYTES) as form:
        upload = form.get("file_doc")
        if not isinstance(upload, UploadFile):
            raise Problem(400, "VALIDATION", "file_doc (the .edxml file) is required")
        data = await upload.read(MAX_EDXML_BYTES + 1)
        messagetype = str(form.get("messagetype") or "edoc")
        signatures = str(form.get("signatures") or "")
    if len(data) > MAX_EDXML_BYTES:
        raise Problem(400, "SIZE_LIMIT_EXCEEDED", f"edXML files are limited to {MAX_EDXML_BYTES}")
    try:
        result = read_edxml(data)
        package = result.raise_for_errors()
    except (UnsafeXmlError, MalformedXmlError) as exc:  # not an XML file at all: "invalid file"
        raise Problem(
            400, exc.reason, str(exc), violations=_issues(exc), metadata={"axisErrorCode": "10"}
        ) from None
    except EdxmlError as exc:
        raise Problem(400, exc.reason, str(exc), violations=_issues(exc)) from None
    if messagetype == "status":
        if not isinstance(package, StatusPackage):
            raise Problem(400, "VALIDATION", "messagetype=status but the file is a document")
        return await _send_status(ctx, agency, package, data)
    if not isinstance(package, DocumentPackage):
        raise Problem(400, "VALIDATION", "messagetype=edoc but the file is a status")
    if package.header.sender.organ_id != agency.code:
        raise Problem(403, "SENDER_MISMATCH", "From/OrganId is not the calling agency")
    return await _send_document(ctx, agency, package, data, signatures)


def _issues(exc: EdxmlError) -> list[dict[str, str]]:
    return [{"field": issue.path, "description": issue.message} for issue in exc.issues]


async def received_list(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    messagetype = request.query_params.get("messagetype", "edoc")
    if messagetype not in ("edoc", "status"):
        raise Problem(400, "VALIDATION", "messagetype is edoc or status")
    wanted = pb.ITEM_KIND_DELIVERY if messagetype == "edoc" else pb.ITEM_KIND_STATUS
    items: list[dict[str, str]] = []
    token = ""
    for _ in range(20):  # at most 20 pages of 500
        page = await ctx.call(
            ctx.services.exchange.ListPending,
            pb.ListPendingRequest(page_size=500, page_token=token),
            agency,
        )
        for item in page.items:
            if item.kind != wanted:
                continue
            doc_id = (
                f"edoc:{item.delivery_id}"
                if wanted == pb.ITEM_KIND_DELIVERY
                else f"status:{item.notice_id}"
            )
            items.append(
                {
                    "docId": doc_id,
                    "from": item.sender,
                    "to": agency.code,
                    "status": "initial",
                    "documentUuid": item.document_uuid,
                    "created_time": item.created_at.ToDatetime(dt.UTC).isoformat(),
                }
            )
        token = page.next_page_token
        if not token:
            break
    return ok(items, count=len(items))


async def _download(ctx: Context, agency: Agency, document_uuid: str, sha256: str) -> bytes:
    call = ctx.services.exchange.DownloadAttachment(
        pb.DownloadAttachmentRequest(document_uuid=document_uuid, sha256=sha256),
        metadata=agency.metadata,
        timeout=ctx.services.timeout_s,
    )
    data = bytearray()
    try:
        part = await call.read()
        while isinstance(part, pb.DownloadAttachmentResponse):
            data += part.chunk
            part = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise problem_of(exc) from None
    return bytes(data)


def _parse_doc_id(raw: str) -> tuple[str, str]:
    kind, _, value = raw.partition(":")
    if kind not in ("edoc", "status") or not value:
        raise Problem(200, "NOT_FOUND", f"unknown docId {raw!r}")
    return kind, value


async def get_edoc(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    kind, value = _parse_doc_id(request.query_params.get("docId", ""))
    if kind == "edoc":
        fetched = await ctx.call(
            ctx.services.exchange.Fetch, pb.FetchRequest(delivery_id=value), agency
        )
        delivery = fetched.delivery
        ctx.metrics.deliveries.labels("edxml").inc()
        extra: dict[str, Any] = {
            "signatures": [json_format.MessageToDict(s) for s in delivery.signatures],
            "documentUuid": delivery.document_uuid,
            "verification": verification_json(delivery.verification),
        }
        if delivery.HasField("envelope"):
            # The sender's own file, byte for byte: its envelope signature still verifies.
            original = await _download(
                ctx, agency, delivery.document_uuid, delivery.envelope.sha256
            )
            return ok({"content": base64.b64encode(original).decode("ascii"), **extra})
        attachments = [
            Attachment(
                content_id=f"cid:{index}",
                name=ref.name,
                data=await _download(ctx, agency, delivery.document_uuid, ref.sha256),
                description=ref.description,
            )
            for index, ref in enumerate(delivery.attachments, start=1)
        ]
        hops = [(hop.hub_code, hop.at.ToDatetime(dt.UTC)) for hop in delivery.trace]
        # Forwarded across hubs, the document was sent when the first hub accepted it (here it
        # was accepted only later, by the last hop).
        sent_at = hops[0][1] if hops else delivery.submitted_at.ToDatetime(dt.UTC)
        package: DocumentPackage | StatusPackage = document_package(
            delivery.header, attachments, sent_at=sent_at, hops=hops
        )
    else:
        fetched = await ctx.call(
            ctx.services.exchange.Fetch, pb.FetchRequest(notice_id=value), agency
        )
        if fetched.WhichOneof("item") != "status":
            raise Problem(200, "NOT_FOUND", "not a status notice")
        notice = fetched.status
        package = status_package(
            reporter=Organisation(organ_id=notice.recipient),
            document_id=notice.document_id,
            status_code=f"{notice.status.code:02d}",
            description=notice.status.description,
            at=notice.status.occurred_at.ToDatetime(dt.UTC),
        )
        extra = {"documentUuid": notice.document_uuid}
    content = edxml_bytes(package)
    return ok({"content": base64.b64encode(content).decode("ascii"), **extra})


async def update_status(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        params = {**request.query_params, **{k: str(v) for k, v in form.items()}}
    kind, value = _parse_doc_id(params.get("docId", ""))
    status = params.get("status", "")
    if status not in ("done", "fail"):
        raise Problem(400, "VALIDATION", "status is done or fail")
    if status == "fail":  # not picked up: it stays in the mailbox and is listed again
        return ok(None)
    acknowledge = (
        pb.AcknowledgeRequest(delivery_id=value)
        if kind == "edoc"
        else pb.AcknowledgeRequest(notice_id=value)
    )
    response = await ctx.call(ctx.services.exchange.Acknowledge, acknowledge, agency)
    if not response.already_acknowledged:
        ctx.metrics.acknowledgements.labels("edxml").inc()
    return ok(None)


_STATES = {
    pb.DELIVERY_STATE_ACCEPTED: "initial",
    pb.DELIVERY_STATE_QUEUED: "initial",
    pb.DELIVERY_STATE_PUSHED: "processing",
    pb.DELIVERY_STATE_ACKNOWLEDGED: "done",
    pb.DELIVERY_STATE_FAILED: "fail",
    pb.DELIVERY_STATE_WITHDRAWN: "fail",
    # Delivery gave up (pushed too often, never acknowledged) until an administrator resends.
    pb.DELIVERY_STATE_DEAD_LETTERED: "fail",
}


def verification_json(verification: common_pb2.Verification) -> dict[str, Any]:
    """What the hub verified, for a DMS reading JSON: `signed` is false for documents accepted
    without signatures (transport-attested or development), whatever else is listed."""
    mode = common_pb2.SignatureMode.Name(verification.mode).removeprefix("SIGNATURE_MODE_")
    return {
        "signed": verification.mode == common_pb2.SIGNATURE_MODE_SIGNED,
        "mode": mode,
        "warnings": list(verification.warnings),
        "checks": [
            json_format.MessageToDict(check, preserving_proto_field_name=False)
            for check in verification.checks
        ],
    }


def _time(stamp: timestamp_pb2.Timestamp) -> str:
    return stamp.ToDatetime(dt.UTC).isoformat() if stamp.seconds or stamp.nanos else ""


async def sent_list(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    doc_id = request.query_params.get("docId", "")
    try:
        uuid.UUID(doc_id)
    except ValueError:
        raise Problem(200, "NOT_FOUND", f"unknown docId {doc_id!r}") from None
    tracked = await ctx.call(
        ctx.services.exchange.Track, pb.TrackRequest(document_uuid=doc_id), agency
    )
    header = tracked.header
    data = [
        {
            "to": recipient.effective_recipient,
            "requestedTo": recipient.requested_recipient,
            "sendStatus": _STATES.get(recipient.state, "initial"),
            "sendTime": _time(recipient.queued_at),
            "receiveTime": _time(recipient.acknowledged_at),
            "statuses": [
                {
                    "code": f"{s.code:02d}",
                    "description": s.description,
                    "time": _time(s.occurred_at),
                }
                for s in recipient.statuses
            ],
            "notation": f"{header.code.number}/{header.code.notation}",
            "title": header.subject,
            "verification": verification_json(tracked.verification),
        }
        for recipient in tracked.recipients
    ]
    return ok(data)


def _agency_json(agency: dpb.Agency) -> dict[str, Any]:
    return {
        "id": agency.code,
        "pid": agency.parent_code,
        "code": agency.code,
        "code102": agency.code,
        "name": agency.name,
        "mail": agency.email,
        "oldCode": "",
    }


async def agencies_list(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    items: list[dict[str, Any]] = []
    token = ""
    for _ in range(20):
        page = await ctx.call(
            ctx.services.directory.ListAgencies,
            dpb.ListAgenciesRequest(
                parent_code=request.query_params.get("pcode", ""), page_size=1000, page_token=token
            ),
            agency,
        )
        items += [_agency_json(a) for a in page.agencies]
        token = page.next_page_token
        if not token:
            break
    return ok(items)


async def synchronize_unit(ctx: Context, request: Request, agency: Agency) -> JSONResponse:
    raw = request.query_params.get("version", "0")
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(400, "VALIDATION", "version is a non-negative integer")
    page = await ctx.call(
        ctx.services.directory.SyncAgencies,
        dpb.SyncAgenciesRequest(since_version=int(raw), page_size=1000),
        agency,
    )
    return ok(
        {
            "agencies": [
                {**_agency_json(a), "status": dpb.AgencyStatus.Name(a.status)}
                for a in page.agencies
            ],
            "nextVersion": str(page.next_since_version),
            "latestVersion": str(page.latest_version),
            "more": page.more,
        }
    )


_OPERATIONS = {
    "sendEdoc": (send_edoc, ["POST"]),
    "getReceivedEdocList": (received_list, ["GET", "POST"]),
    "getEdoc": (get_edoc, ["GET", "POST"]),
    # POST only: acknowledging changes state (the national axis's own clients post a form).
    "updateStatus": (update_status, ["POST"]),
    "getSentEdocList": (sent_list, ["GET", "POST"]),
    "getAgenciesList": (agencies_list, ["GET", "POST"]),
    "getSynchronizeUnit": (synchronize_unit, ["GET", "POST"]),
}


def axis_routes(ctx: Context) -> list[Route]:
    def endpoint(handler: Any) -> Any:
        async def call(request: Request) -> Response:
            try:
                agency = await ctx.agency(request)
            except Problem as problem:
                ctx.metrics.count_rejection(problem)
                return fail(problem, http_status=True)
            try:
                if request.method == "POST":
                    check_same_origin(request)
                check_parameters(request)
                response: Response = await handler(ctx, request, agency)
            except Problem as problem:
                ctx.metrics.count_rejection(problem)
                return fail(problem)
            except HTTPException as exc:  # Starlette's own, e.g. a malformed multipart form
                malformed = Problem(exc.status_code, "VALIDATION", str(exc.detail))
                ctx.metrics.count_rejection(malformed)
                return fail(malformed)
            return response

        return call

    return [
        Route(f"/axis/{name}", endpoint(handler), methods=methods)
        for name, (handler, methods) in _OPERATIONS.items()
    ]
