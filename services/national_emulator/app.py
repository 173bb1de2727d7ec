"""The national axis's operations as documented (domain.md §8), with its quirks.

- Every answer is JSON `{status: "OK"|"FAIL", ErrorCode, ErrorDesc, data|DocId|count}`; refusals
  answer HTTP 200 with one of the provincial error codes seen in the field: 10 invalid file, 15
  bad system id/secret, 18 receiver not found, 19 sender not registered, 20 platform error, 21
  file processing error, 22 edXML not per standard, 23 receiver locked.
- A system authenticates on every call with headers: `X-System-Id`, `X-Timestamp` (Unix
  seconds) and `X-Signature`, the lowercase hex HMAC-SHA256 of `<system id>\\n<timestamp>` under
  its secret (the SDK signs its headers with HMAC-SHA256(secret, …)); the secret itself never
  travels.
- It is a mailbox: an upload is kept per recipient until that recipient's system picks it up
  with `updateStatus` `done` (or gives it up with `fail`); nothing is pushed.
- Envelope signatures are not checked (dummy, empty or absent ones pass, as on the real axis);
  the file is stored and handed out byte for byte.
- The same file (by SHA-256) sent again by the same sender to the same recipient is the same
  upload: the first DocId comes back (a sender retrying after a lost answer duplicates nothing).
- `getReceivedEdocList` pages (`page` from 1, `pageSize` at most the configured limit, larger
  asks are cut); `created_time` is `yyyy/MM/dd HH:mm:ss` or `dd/MM/yyyy HH:mm:ss` (Vietnam time),
  as configured, since integrations disagree.
- Faults for tests (`POST /_emulator/faults` with the admin token): the next N calls (of one
  operation or all) answer a 5xx with a non-JSON body, or, with `error_code`, a FAIL answer
  with that code (e.g. 20 platform error, 15 as if the credentials were refused); or every call
  answers 503 while `down`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from docaxis_client.vietnam import VIETNAM
from gateway.edxml import (
    DocumentPackage,
    EdxmlError,
    MalformedXmlError,
    StatusPackage,
    UnsafeXmlError,
    read_edxml,
)
from services.national_emulator.state import EmulatorState, MailboxItem, RegistryAgency, save

MAX_FILE_BYTES = 64 * 1024 * 1024
CLOCK_SKEW_S = 300


class AxisError(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(slots=True)
class Faults:
    """Injected failures: the next `fail_next` calls (of `operation`, or any) answer `status`,
    or a FAIL answer with `error_code` when one is given."""

    fail_next: int = 0
    status: int = 503
    operation: str = ""
    down: bool = False
    error_code: str = ""


@dataclass(slots=True)
class Emulator:
    state: EmulatorState
    state_file: Path
    admin_token: str
    page_limit: int = 50
    date_format: str = "ymd"  # ymd | dmy
    faults: Faults = field(default_factory=Faults)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def persist(self) -> None:
        save(self.state_file, self.state)

    def stamp(self, iso: str) -> str:
        moment = dt.datetime.fromisoformat(iso).astimezone(VIETNAM)
        pattern = "%Y/%m/%d %H:%M:%S" if self.date_format == "ymd" else "%d/%m/%Y %H:%M:%S"
        return moment.strftime(pattern)


def ok(**body: Any) -> JSONResponse:
    return JSONResponse({"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **body})


def fail(code: str, description: str) -> JSONResponse:
    return JSONResponse({"status": "FAIL", "ErrorCode": code, "ErrorDesc": description})


def signature(secret: str, system_id: str, timestamp: str) -> str:
    """What a system puts in X-Signature (also what the connector computes)."""
    message = f"{system_id}\n{timestamp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _authenticate(emulator: Emulator, request: Request) -> str:
    system_id = request.headers.get("x-system-id", "")
    timestamp = request.headers.get("x-timestamp", "")
    given = request.headers.get("x-signature", "")
    system = emulator.state.systems.get(system_id)
    if system is None or not timestamp.isdigit() or not given:
        raise AxisError("15", "unknown system id or missing signature")
    if abs(time.time() - int(timestamp)) > CLOCK_SKEW_S:
        raise AxisError("15", "timestamp outside the allowed clock skew")
    if not hmac.compare_digest(signature(system.secret, system_id, timestamp), given):
        raise AxisError("15", "bad system id/secret")
    return system_id


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        ("multipart/", "application/x-www-form-urlencoded")
    ):
        form = await request.form(max_part_size=MAX_FILE_BYTES)
        for key in form:
            values = form.getlist(key)
            if key == "to":
                params[key] = [str(v) for v in values]
            elif key == "file_doc":
                upload = values[0]
                params[key] = await upload.read() if isinstance(upload, UploadFile) else b""
            else:
                params[key] = str(values[0])
    return params


def _recipients(params: dict[str, Any], package: DocumentPackage | StatusPackage) -> list[str]:
    raw = params.get("to") or []
    given = [code.strip() for value in raw for code in str(value).split(",") if code.strip()]
    if given:
        return list(dict.fromkeys(given))
    if isinstance(package, StatusPackage):
        return [package.response_for.organ_id] if package.response_for else []
    return list(dict.fromkeys(r.organ_id for r in package.header.recipients))


def _read(data: bytes, messagetype: str) -> DocumentPackage | StatusPackage:
    if not data:
        raise AxisError("10", "file_doc is empty or missing")
    try:
        package = read_edxml(data).raise_for_errors()
    except (UnsafeXmlError, MalformedXmlError) as exc:
        raise AxisError("10", f"not an XML file: {exc}") from None
    except EdxmlError as exc:
        raise AxisError("22", f"edXML not per standard: {exc}") from None
    wanted = StatusPackage if messagetype == "status" else DocumentPackage
    if not isinstance(package, wanted):
        raise AxisError("22", f"messagetype={messagetype} does not match the file")
    return package


async def send_edoc(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    data: bytes = params.get("file_doc") or b""
    messagetype = params.get("messagetype", "edoc")
    if messagetype not in ("edoc", "status"):
        raise AxisError("22", "messagetype is edoc or status")
    sha256 = hashlib.sha256(data).hexdigest()
    if params.get("hash") and str(params["hash"]).lower() != sha256:
        raise AxisError("21", "the file does not match its hash")
    package = _read(data, messagetype)
    sender = params.get("from") or (
        package.sender.organ_id
        if isinstance(package, StatusPackage)
        else package.header.sender.organ_id
    )
    state = emulator.state
    if sender not in state.systems[system_id].agencies:
        raise AxisError("19", f"sender {sender} is not registered for this system")
    recipients = _recipients(params, package)
    if not recipients:
        raise AxisError("18", "no receiver")
    for code in recipients:
        agency = state.agencies.get(code)
        if agency is None or agency.deleted or state.system_of(code) is None:
            raise AxisError("18", f"receiver {code} not found")
        if agency.locked:
            raise AxisError("23", f"receiver {code} is locked")
    existing = [
        i
        for i in state.items
        if i.sender == sender and i.sha256 == sha256 and i.recipient in recipients
    ]
    if existing and {i.recipient for i in existing} == set(recipients):
        return ok(DocId=existing[0].doc_id)
    if isinstance(package, StatusPackage):
        response = package.response_for
        document_id = response.document_id if response else ""
        notation, title = "", f"status {package.status_code}"
    else:
        document_id = package.header.document_id
        notation = f"{package.header.code.number}/{package.header.code.notation}"
        title = package.header.subject
    doc_id = str(state.next_doc)
    state.next_doc += 1
    now = dt.datetime.now(dt.UTC).isoformat()
    for code in recipients:
        state.items.append(
            MailboxItem(
                doc_id=doc_id,
                messagetype=messagetype,
                sender=sender,
                recipient=code,
                sha256=sha256,
                file_b64=base64.b64encode(data).decode("ascii"),
                document_id=document_id,
                notation=notation,
                title=title,
                created_at=now,
            )
        )
    emulator.persist()
    return ok(DocId=doc_id)


def _mine(emulator: Emulator, system_id: str) -> list[MailboxItem]:
    agencies = set(emulator.state.systems[system_id].agencies)
    return [i for i in emulator.state.items if i.recipient in agencies]


async def received_list(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    messagetype = params.get("messagetype", "edoc")
    if messagetype not in ("edoc", "status"):
        raise AxisError("22", "messagetype is edoc or status")
    waiting = [
        i
        for i in _mine(emulator, system_id)
        if i.messagetype == messagetype and i.status == "initial"
    ]
    try:
        page = max(1, int(params.get("page", 1)))
        size = min(emulator.page_limit, max(1, int(params.get("pageSize", emulator.page_limit))))
    except ValueError:
        raise AxisError("20", "page and pageSize are numbers") from None
    chosen = waiting[(page - 1) * size : page * size]
    data = [
        {
            "docId": i.doc_id,
            "from": i.sender,
            "to": i.recipient,
            "status": i.status,
            "created_time": emulator.stamp(i.created_at),
            "notation": i.notation,
            "title": i.title,
        }
        for i in chosen
    ]
    return ok(data=data, count=len(waiting))


async def get_edoc(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    doc_id = str(params.get("docId", ""))
    items = [i for i in _mine(emulator, system_id) if i.doc_id == doc_id]
    if not items:
        raise AxisError("18", f"no document {doc_id!r} for this system")
    return ok(data={"content": items[0].file_b64, "docId": doc_id})


async def update_status(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    doc_id = str(params.get("docId", ""))
    status = params.get("status", "")
    if status not in ("done", "fail"):
        raise AxisError("20", "status is done or fail")
    items = [i for i in _mine(emulator, system_id) if i.doc_id == doc_id]
    if not items:
        raise AxisError("18", f"no document {doc_id!r} for this system")
    now = dt.datetime.now(dt.UTC).isoformat()
    for item in items:
        if item.status == "initial":
            item.status, item.updated_at = status, now
    emulator.persist()
    return ok(data=None)


async def sent_list(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    doc_id = str(params.get("docId", ""))
    agencies = set(emulator.state.systems[system_id].agencies)
    items = [i for i in emulator.state.items if i.doc_id == doc_id and i.sender in agencies]
    if not items:
        raise AxisError("18", f"no document {doc_id!r} sent by this system")
    data = [
        {
            "to": i.recipient,
            "sendStatus": "done",
            "receiveStatus": i.status,
            "sendTime": emulator.stamp(i.created_at),
            "receiveTime": emulator.stamp(i.updated_at) if i.updated_at else "",
            "notation": i.notation,
            "title": i.title,
        }
        for i in items
    ]
    return ok(data=data)


def _agency_json(agency: RegistryAgency) -> dict[str, Any]:
    return {
        "id": agency.code,
        "pid": agency.pid,
        "code": agency.code,
        "code102": agency.code,
        "name": agency.name,
        "mail": agency.mail,
        "oldCode": agency.old_code,
    }


async def agencies_list(emulator: Emulator, _system: str, params: dict[str, Any]) -> Response:
    pcode = params.get("pcode", "")
    data = [
        _agency_json(a)
        for a in emulator.state.agencies.values()
        if not a.deleted and (not pcode or a.pid == pcode)
    ]
    return ok(data=data, count=len(data))


async def synchronize_unit(emulator: Emulator, _system: str, params: dict[str, Any]) -> Response:
    raw = str(params.get("version", "0"))
    if not raw.isdigit():
        raise AxisError("20", "version is a non-negative integer")
    since = int(raw)
    changed = sorted(
        (a for a in emulator.state.agencies.values() if a.version > since),
        key=lambda a: a.version,
    )
    page = changed[: emulator.page_limit]
    data = [
        {
            **_agency_json(a),
            "version": a.version,
            "status": "deleted" if a.deleted else ("locked" if a.locked else "active"),
        }
        for a in page
    ]
    return ok(
        data={
            "agencies": data,
            "nextVersion": str(page[-1].version if page else since),
            "latestVersion": str(emulator.state.registry_version),
            "more": len(changed) > len(page),
        }
    )


async def register_agency(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    code = str(params.get("code", "")).strip()
    if not code:
        raise AxisError("20", "code is required")
    state = emulator.state
    agency = state.agencies.get(code) or RegistryAgency(code=code, name=code)
    agency.name = str(params.get("name", agency.name))
    agency.pid = str(params.get("pcode", agency.pid))
    agency.mail = str(params.get("mail", agency.mail))
    agency.deleted = False
    state.agencies[code] = agency
    state.touch(agency)
    if state.system_of(code) is None:
        state.systems[system_id].agencies.append(code)
    emulator.persist()
    return ok(data=_agency_json(agency))


async def delete_agency(emulator: Emulator, system_id: str, params: dict[str, Any]) -> Response:
    code = str(params.get("code", ""))
    agency = emulator.state.agencies.get(code)
    if agency is None or agency.deleted:
        raise AxisError("18", f"agency {code} not found")
    agency.deleted = True
    emulator.state.touch(agency)  # a tombstone: the delta feed tells it to every system
    emulator.persist()
    return ok(data=None)


Operation = Callable[[Emulator, str, dict[str, Any]], Awaitable[Response]]
OPERATIONS: dict[str, Operation] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": received_list,
    "getEdoc": get_edoc,
    "updateStatus": update_status,
    "getSentEdocList": sent_list,
    "getAgenciesList": agencies_list,
    "getSynchronizeUnit": synchronize_unit,
    "registerAgency": register_agency,
    "deleteAgency": delete_agency,
}


def _injected(emulator: Emulator, name: str) -> Response | None:
    faults = emulator.faults
    if faults.down:
        return PlainTextResponse("Service Unavailable", status_code=503)
    if faults.fail_next > 0 and faults.operation in ("", name):
        faults.fail_next -= 1
        if faults.error_code:
            return fail(faults.error_code, "injected by the emulator's fault switch")
        return PlainTextResponse("upstream error", status_code=faults.status)
    return None


def _endpoint(emulator: Emulator, name: str, operation: Operation) -> Callable[..., Any]:
    async def call(request: Request) -> Response:
        if (injected := _injected(emulator, name)) is not None:
            return injected
        try:
            system_id = _authenticate(emulator, request)
            params = await _params(request)
            async with emulator.lock:
                return await operation(emulator, system_id, params)
        except AxisError as exc:
            return fail(exc.code, exc.description)

    return call


def _admin(emulator: Emulator) -> Callable[..., Any]:
    async def faults(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("x-admin-token", ""), emulator.admin_token):
            return PlainTextResponse("forbidden", status_code=403)
        if request.method == "POST":
            body = await request.json()
            emulator.faults = Faults(
                fail_next=int(body.get("fail_next", 0)),
                status=int(body.get("status", 503)),
                operation=str(body.get("operation", "")),
                down=bool(body.get("down", False)),
                error_code=str(body.get("error_code", "")),
            )
        items = emulator.state.items
        return JSONResponse(
            {
                "fail_next": emulator.faults.fail_next,
                "down": emulator.faults.down,
                "items": [
                    {
                        "docId": i.doc_id,
                        "messagetype": i.messagetype,
                        "from": i.sender,
                        "to": i.recipient,
                        "status": i.status,
                        "documentId": i.document_id,
                    }
                    for i in items
                ],
            }
        )

    return faults


def create_app(emulator: Emulator) -> Starlette:
    routes = [
        Route(f"/{name}", _endpoint(emulator, name, operation), methods=["GET", "POST"])
        for name, operation in OPERATIONS.items()
    ]
    routes.append(Route("/_emulator/faults", _admin(emulator), methods=["GET", "POST"]))
    return Starlette(routes=routes)
