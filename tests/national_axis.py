"""The national-axis emulator as a real process for the tests, and edXML packages as the
national axis's other systems send them."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from docaxis.common.v1 import common_pb2

from docaxis_client.vietnam import VIETNAM
from gateway.edxml import Attachment, Organisation, edxml_bytes
from gateway.edxml.mapping import document_package, status_package
from services.national.client import AxisCredentials, NationalAxisClient
from tests.e2e.processes import free_port
from tests.waiting import eventually

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class SystemSeed:
    system_id: str
    agencies: tuple[str, ...]
    secret: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class EmulatorProcess:
    """`python -m services.national_emulator` on a loopback port, its state in `workdir`."""

    workdir: Path
    systems: Sequence[SystemSeed]
    agencies: Sequence[dict[str, Any]]
    page_limit: int = 50
    date_format: str = "ymd"
    # (certificate chain, key) files: HTTPS, as a real axis serves it.
    tls: tuple[Path, Path] | None = None
    ca_file: Path | None = None  # the bundle that issued that certificate
    port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._spawn()
        try:
            await eventually(self._answers, within=20, every=0.1)
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> None:
        seed = self.workdir / "seed.json"
        seed.write_text(
            json.dumps(
                {
                    "systems": [
                        {"system_id": s.system_id, "secret": s.secret, "agencies": s.agencies}
                        for s in self.systems
                    ],
                    "agencies": list(self.agencies),
                }
            ),
            "utf-8",
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.national_emulator",
                "--port",
                str(self.port),
                "--state",
                str(self.workdir / "state.json"),
                "--seed",
                str(seed),
                "--page-limit",
                str(self.page_limit),
                "--date-format",
                self.date_format,
                *(
                    ["--cert-file", str(self.tls[0]), "--key-file", str(self.tls[1])]
                    if self.tls
                    else []
                ),
            ],
            cwd=REPO,
            env={**os.environ, "NATIONAL_EMULATOR_ADMIN_TOKEN": self.admin_token},
        )

    async def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {self.process.returncode}")
        try:
            await self.admin()
        except httpx.HTTPError:
            return False
        return True

    def kill(self) -> None:
        """kill -9: what it saved is all that survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    async def admin(self, **faults: Any) -> dict[str, Any]:
        """The fault switch (POST when `faults` are given) and every mailbox item."""
        async with httpx.AsyncClient(timeout=5, verify=self.verify) as http:
            headers = {"X-Admin-Token": self.admin_token}
            url = f"{self.url}/_emulator/faults"
            response = await (
                http.post(url, json=faults, headers=headers)
                if faults
                else http.get(url, headers=headers)
            )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    def client(self, system: SystemSeed, *, secret: str | None = None) -> NationalAxisClient:
        return NationalAxisClient(
            self.url,
            AxisCredentials(system.system_id, secret or system.secret),
            ca_file=str(self.ca_file) if self.ca_file else None,
            timeout_s=5,
        )


async def started(emulator: EmulatorProcess) -> EmulatorProcess:
    await emulator.start()
    return emulator


def agency(code: str, name: str, pid: str = "", **extra: Any) -> dict[str, Any]:
    return {"code": code, "name": name, "pid": pid, **extra}


def document_edxml(
    sender: str,
    recipients: Sequence[str],
    number: str,
    *,
    subject: str = "Công văn thử qua trục quốc gia",
    attachment: bytes = b"%PDF-1.4 national axis test\n",
    dmy_dates: bool = False,
    empty_signature: bool = False,
    revoke: str = "",
    update: str = "",
    replace: str = "",
) -> bytes:
    """A document package as a DMS on the national axis writes it: strict edXML, or with the
    `dd/MM/yyyy` dates some integrations send, and an empty envelope signature element; with
    `revoke`, the revoke package (BussinessDocType 1) of that DocumentId; with `update` or
    `replace`, the update (2) or replacement (3) of that DocumentId, a document of its own."""
    today = dt.datetime.now(VIETNAM).date()
    business, target = common_pb2.BUSINESS_TYPE_NEW, ""
    for kind, named in (
        (common_pb2.BUSINESS_TYPE_REVOKE, revoke),
        (common_pb2.BUSINESS_TYPE_UPDATE, update),
        (common_pb2.BUSINESS_TYPE_REPLACE, replace),
    ):
        if named:
            business, target = kind, named
    header = common_pb2.DocumentHeader(
        sender=sender,
        recipients=list(recipients),
        code=common_pb2.DocumentCode(number=number, notation="BTC-VP"),
        promulgation_place="Hà Nội",
        promulgation_date=today.isoformat(),
        document_type=1,
        type_name="Công văn",
        subject=subject,
        signer=common_pb2.Signer(
            competence="TL. BỘ TRƯỞNG", position="Chánh Văn phòng", full_name="Trần Văn C"
        ),
        business_type=business,
        response_for=[target] if target else [],
    )
    package = document_package(
        header,
        [] if revoke else [Attachment(content_id="cid:1", name="congvan.pdf", data=attachment)],
        reason="Thu hồi do gửi nhầm" if revoke else "",
        sent_at=dt.datetime.now(dt.UTC),
        organisations={sender: Organisation(organ_id=sender, organ_name="Bộ Thử")},
    )
    data = edxml_bytes(package)
    if dmy_dates:
        data = _to_dmy(data, today)
    if empty_signature:
        data = data.replace(
            b"</edXML:edXMLHeader>",
            b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/></edXML:edXMLHeader>',
        )
    return data


def _to_dmy(data: bytes, today: dt.date) -> bytes:
    ymd = today.strftime("%Y/%m/%d").encode()
    dmy = today.strftime("%d/%m/%Y").encode()
    # Dates in the header and trace; the DocumentId keeps its own yyyy/MM/dd (it is a key).
    text = data.replace(b"," + ymd + b",", b"\x00KEY\x00")
    text = text.replace(ymd, dmy)
    return text.replace(b"\x00KEY\x00", b"," + ymd + b",")


def status_edxml(reporter: str, document_id: str, code: str, description: str = "") -> bytes:
    return edxml_bytes(
        status_package(
            reporter=Organisation(organ_id=reporter),
            document_id=document_id,
            status_code=code,
            description=description or f"trạng thái {code}",
            at=dt.datetime.now(dt.UTC),
        )
    )
