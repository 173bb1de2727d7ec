"""The national axis's REST API as a client (domain.md §8), with its error codes mapped to
docaxis's typed errors: what is worth handing over again (retryable) and what is final.

Authentication: `X-System-Id`, `X-Timestamp` and `X-Signature` (HMAC-SHA256 of
`<system id>\\n<timestamp>` under the secret) on every call; the secret is read from a file and
never logged or sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.common.errors import (
    DomainError,
    RejectedError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from services.national.settings import NationalAxisSettings

TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AxisCredentials:
    system_id: str
    secret: str

    def __repr__(self) -> str:  # never the secret, whoever prints it
        return f"AxisCredentials(system_id={self.system_id!r})"

    def headers(self, now: float | None = None) -> dict[str, str]:
        timestamp = str(int(now if now is not None else time.time()))
        message = f"{self.system_id}\n{timestamp}".encode()
        digest = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-System-Id": self.system_id, "X-Timestamp": timestamp, "X-Signature": digest}


def axis_error(code: str, description: str) -> DomainError:
    """A FAIL answer as docaxis's typed error. Retryable (the same call may pass later): 20
    platform error and 15 bad credentials (nothing is wrong with the item: the operator fixes
    the secret, the queue waits). Final: 10 invalid file and 22 edXML not per standard
    (VALIDATION), 21 file processing error (ATTACHMENT_MISMATCH), 18 receiver not found and 23
    receiver locked (INVALID_ADDRESSEE), 19 sender not registered (NOT_REGISTERED)."""
    text = f"national axis error {code}: {description}"
    meta = {"axisErrorCode": code}
    if code == "15":
        error: DomainError = UnauthenticatedError(text, meta=meta)
        error.retryable = True
        return error
    if code in ("10", "22"):
        return ValidationError(text, meta=meta)
    if code == "21":
        return RejectedError(text, reason="ATTACHMENT_MISMATCH", meta=meta)
    if code in ("18", "23"):
        return RejectedError(text, reason="INVALID_ADDRESSEE", meta=meta)
    if code == "19":
        return RejectedError(text, reason="NOT_REGISTERED", meta=meta)
    return UnavailableError(text, retry_after_s=1.0, meta=meta)


@dataclass(frozen=True, slots=True)
class ReceivedItem:
    doc_id: str
    sender: str
    recipient: str
    created_time: str


class NationalAxisClient:
    def __init__(
        self,
        base_url: str,
        credentials: AxisCredentials,
        *,
        ca_file: str | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """`ca_file`: the trust anchors of an https axis other than the system's; verification
        of the axis's certificate is never switched off."""
        self._credentials = credentials
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", verify=verify, timeout=timeout_s
        )

    @classmethod
    def from_settings(cls, settings: NationalAxisSettings) -> NationalAxisClient:
        """The client of the configured axis, its secret read from its file (kept in memory
        only, never logged)."""
        secret = Path(settings.secret_file).read_text("utf-8").strip()
        return cls(
            settings.base_url,
            AxisCredentials(settings.system_id, secret),
            ca_file=settings.ca_file,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str | Sequence[str]] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(
                "POST" if data is not None or files is not None else "GET",
                operation,
                params=params,
                data=data,
                files=files,
                headers=self._credentials.headers(),
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"national axis {operation}: {type(exc).__name__}", retry_after_s=1.0
            ) from exc
        if response.status_code >= 500:
            raise UnavailableError(
                f"national axis {operation}: HTTP {response.status_code}", retry_after_s=1.0
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UnavailableError(
                f"national axis {operation}: HTTP {response.status_code}, not a JSON answer"
            )
        code = str(body.get("ErrorCode", ""))
        if body.get("status") != "OK" or code != "0":
            raise axis_error(code or "20", str(body.get("ErrorDesc", "")))
        return body

    async def send_edoc(
        self, data: bytes, *, sender: str, messagetype: str, to: Sequence[str]
    ) -> str:
        body = await self._call(
            "sendEdoc",
            data={
                "from": sender,
                "servicetype": "eDoc",
                "messagetype": messagetype,
                "to": list(to),
                "hash": hashlib.sha256(data).hexdigest(),
            },
            files={"file_doc": ("document.edxml", data, "application/xml")},
        )
        return str(body.get("DocId", ""))

    async def received(
        self, messagetype: str, *, page: int = 1, page_size: int = 50
    ) -> tuple[list[ReceivedItem], int]:
        body = await self._call(
            "getReceivedEdocList",
            params={"messagetype": messagetype, "page": str(page), "pageSize": str(page_size)},
        )
        items = [
            ReceivedItem(
                str(raw.get("docId", "")),
                str(raw.get("from", "")),
                str(raw.get("to", "")),
                str(raw.get("created_time", "")),
            )
            for raw in body.get("data") or []
        ]
        return items, int(body.get("count") or len(items))

    async def get_edoc(self, doc_id: str) -> bytes:
        body = await self._call("getEdoc", params={"docId": doc_id})
        data = body.get("data") or {}
        try:
            return base64.b64decode(str(data.get("content", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UnavailableError(f"national axis getEdoc {doc_id}: content not base64") from exc

    async def update_status(self, doc_id: str, status: str) -> None:
        await self._call("updateStatus", data={"docId": doc_id, "status": status})

    async def sent(self, doc_id: str) -> list[dict[str, Any]]:
        body = await self._call("getSentEdocList", params={"docId": doc_id})
        return list(body.get("data") or [])

    async def agencies(self) -> list[dict[str, Any]]:
        body = await self._call("getAgenciesList")
        return list(body.get("data") or [])

    async def register_agency(self, code: str, name: str, parent: str = "") -> None:
        await self._call("registerAgency", data={"code": code, "name": name, "pcode": parent})

    async def delete_agency(self, code: str) -> None:
        await self._call("deleteAgency", data={"code": code})

    async def synchronize(self, version: int) -> dict[str, Any]:
        body = await self._call("getSynchronizeUnit", params={"version": str(version)})
        return dict(body.get("data") or {})
