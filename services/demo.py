"""`make demo`: one agency sends a signed document with a 5 MB attachment to three others; two
receive and acknowledge at once, the third is offline and receives it after reconnecting. Each
recipient verifies both signatures itself; the sender verifies every transport receipt offline.
Then business statuses flow back to the sender, and it recalls the document from two recipients:
one agrees, one refuses (services/demo_lifecycle.py).

Everything runs over mutual TLS with certificates of the demo PKI (`docaxis pki dev-setup`, which
`make run` calls): the official signs with Ed25519, the sending agency with RSA (PKCS#1 v1.5, as
agencies' USB tokens do), the hub's receipts with P-256.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from docaxis_client.credentials import TlsCredentials, load_trust_bundle
from docaxis_client.documents import verify_delivery, verify_transport_receipt
from docaxis_client.receive import ReceiveStream, ReceiveStreamError
from docaxis_client.trust.chain import Role, TrustStore
from docaxis_client.trust.demo_pki import KeyType, PkiFolder, slug, write_private
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import SigningIdentity
from docaxis_client.vietnam import VIETNAM
from services.common.progress import Progress
from services.demo_lifecycle import LifecycleDemoError, run_lifecycle_demo

SENDER = "000.00.01.H45"  # Văn phòng Ủy ban nhân dân tỉnh Quảng Ninh
ONLINE = ("000.00.11.H45", "000.00.12.H45")  # Sở Nội vụ, Sở Tài chính tỉnh Quảng Ninh
OFFLINE = "000.00.71.H45"  # Ủy ban nhân dân phường Hạ Long
SIGNER = "Nguyễn Văn An"  # Chánh Văn phòng: the official who signs the demo document
ATTACHMENT_BYTES = 5 * 1024 * 1024
STEP_TIMEOUT_S = 30.0


class DemoError(Exception):
    pass


# The demo's agencies and the key each one's certificate holds (agency certificates serve both
# mutual TLS and organisation signatures; gRPC's TLS cannot use Ed25519, officials' keys can).
DEMO_AGENCIES = {
    SENDER: ("Văn phòng Ủy ban nhân dân tỉnh Quảng Ninh", KeyType.RSA2048),
    ONLINE[0]: ("Sở Nội vụ tỉnh Quảng Ninh", KeyType.P256),
    ONLINE[1]: ("Sở Tài chính tỉnh Quảng Ninh", KeyType.RSA2048),
    OFFLINE: ("Ủy ban nhân dân phường Hạ Long", KeyType.P256),
}
# The subject fields of the demo's national-CA-shaped certificates (national_profile).
DEMO_PROVINCE = "Ủy ban nhân dân tỉnh Quảng Ninh"
DEMO_LOCALITY = "Quảng Ninh"
DEMO_PKI_README = """DEMO PKI - NOT FOR PRODUCTION.

Created by `docaxis pki` for `make run`, `make demo` and local experiments. The CA key sits
next to the certificates, keys are unencrypted: nothing here may ever be trusted outside this
machine. Production uses certificates of the national CA.
"""


def _write_pkcs12(stem: Path) -> None:
    """The certificate and key at `stem`.pem/.key as one PKCS#12 file, what browsers import.
    Unencrypted, like every key of the demo PKI: the file must never leave this machine."""
    identity = PkiFolder.load_identity(stem.with_suffix(".pem"))
    data = pkcs12.serialize_key_and_certificates(
        stem.name.encode(),
        identity.key,
        identity.certificate,
        identity.chain[1:],
        serialization.NoEncryption(),
    )
    write_private(stem.with_suffix(".p12"), data)


def ensure_demo_pki(folder: Path) -> list[str]:
    """What `make run` and `make demo` need, issued if missing; returns what was created."""
    pki = PkiFolder(folder)
    created: list[str] = []
    if not (folder / "ca.pem").exists():
        pki.init()
        created.append(f"demo CA in {folder}")

    def need(path: Path, issue: Callable[[], object], what: str) -> None:
        if not path.exists():
            issue()
            created.append(what)

    need(
        folder / "servers" / "localhost.pem",
        lambda: pki.issue_server("localhost"),
        "server certificate for localhost and 127.0.0.1",
    )
    for role in Role:
        need(
            folder / "roles" / role.value / f"{role.value}.pem",
            lambda role=role: pki.issue_role(role, role.value),  # type: ignore[misc]
            f"{role.value} certificate",
        )
    for code, (name, key_type) in DEMO_AGENCIES.items():
        need(
            folder / "agencies" / f"{code}.pem",
            lambda code=code, name=name, key_type=key_type: pki.issue_agency(  # type: ignore[misc]
                code, name, key_type=key_type, parent=DEMO_PROVINCE, locality=DEMO_LOCALITY
            ),
            f"agency certificate of {code} ({key_type.value})",
        )
    admin = folder / "roles" / Role.ADMIN.value / Role.ADMIN.value
    need(
        admin.with_suffix(".p12"),
        lambda: _write_pkcs12(admin),
        f"{admin.with_suffix('.p12')} (import it into a browser for the admin console)",
    )
    need(
        folder / "tsa" / "tsa.pem",
        pki.issue_tsa,
        "time-stamping authority certificate (the demo signs its PDF with RFC 3161 timestamps)",
    )
    need(
        folder / "persons" / SENDER / f"{slug(SIGNER)}.pem",
        lambda: pki.issue_person(
            SIGNER,
            SENDER,
            key_type=KeyType.ED25519,
            organization=DEMO_AGENCIES[SENDER][0],
            unit="Lãnh đạo Văn phòng",
            locality=DEMO_LOCALITY,
        ),
        f"person certificate of {SIGNER} ({KeyType.ED25519.value})",
    )
    return created or [f"demo PKI in {folder} is complete"]


@dataclass(frozen=True, slots=True)
class DemoPki:
    """The demo's view of a demo PKI folder."""

    folder: Path

    def tls(self, code: str) -> TlsCredentials:
        return TlsCredentials.from_files(
            ca=self.folder / "bundle.pem",
            cert=self.folder / "agencies" / f"{code}.pem",
            key=self.folder / "agencies" / f"{code}.key",
        )

    def organization(self, code: str) -> SigningIdentity:
        """The agency's key and certificate, signing with its key's default algorithm (an RSA
        key: PKCS#1 v1.5 with SHA-256)."""
        return PkiFolder.load_identity(self.folder / "agencies" / f"{code}.pem")

    def person(self, code: str, full_name: str) -> SigningIdentity:
        return PkiFolder.load_identity(self.folder / "persons" / code / f"{slug(full_name)}.pem")

    def signed_pdf(self, code: str, full_name: str) -> bytes:
        """The demo's main document: a one-page PDF signed by the official, then the agency,
        each signature timestamped by the demo TSA over HTTP (RFC 3161), as the national CA's
        signing tools do (a demo PKI folder without a TSA signs without timestamps)."""
        # pyHanko: only when signing.
        from docaxis_client.trust.pdf import demo_pdf, http_timestamper, sign_pdf
        from docaxis_client.trust.tsa import TimestampAuthority, serving

        pdf = demo_pdf(["docaxis demo", f"Cong van cua {code}", "Ky so: nguoi ky, co quan"])
        tsa = self.folder / "tsa" / "tsa.pem"
        with contextlib.ExitStack() as stack:
            stamper = None
            if tsa.exists():
                authority = TimestampAuthority(PkiFolder.load_identity(tsa))
                stamper = http_timestamper(stack.enter_context(serving(authority)))
            pdf = sign_pdf(
                pdf, self.person(code, full_name), field_name="ChuKyNguoiKy", timestamper=stamper
            )
            return sign_pdf(
                pdf, self.organization(code), field_name="ChuKyCoQuan", timestamper=stamper
            )

    def trust(self) -> TrustStore:
        crls = sorted((self.folder / "crl").glob("*.pem"))
        return load_trust_bundle(
            (self.folder / "bundle.pem").read_bytes(), crls_pem=[p.read_bytes() for p in crls]
        )


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo narrates


async def _subscribed(client: AgencyClient) -> ReceiveStream:
    """The client's push stream, once docaxis says it is attached to the agency's queue."""
    stream = client.receive()
    async with asyncio.timeout(STEP_TIMEOUT_S):
        await stream.subscribed()
    return stream


async def _receive_one(
    client: AgencyClient,
    call: ReceiveStream,
    document_uuid_box: asyncio.Future[str],
    workdir: Path,
    trust: TrustStore | None,
) -> float:
    """Waits for the document on the push stream, verifies its signatures, downloads and checks
    the attachment, acknowledges; returns the time it arrived (monotonic)."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async for item in call:
                if item.WhichOneof("item") != "delivery":
                    # A status or recall notice left over from an earlier demo run.
                    notice = item.status if item.HasField("status") else item.recall
                    await client.acknowledge_notice(notice.notice_id)
                    continue
                delivery = item.delivery
                arrived = time.monotonic()
                expected = await document_uuid_box
                if delivery.document_uuid != expected:
                    # Mail from an earlier demo run that was never acknowledged: take it too.
                    await client.acknowledge(delivery.delivery_id)
                    continue
                if trust is not None:
                    # The recipient's own check, with its own trust anchors: docaxis is not
                    # trusted to have verified anything.
                    signers = verify_delivery(delivery, trust)
                    _say(
                        f"  {client.agency_code} verified the signatures: "
                        f"{signers.person.full_name} ({signers.person.algorithm.value}), "
                        f"{signers.organization.agency_code} "
                        f"({signers.organization.algorithm.value})"
                    )
                if delivery.verification.checks:
                    # What the hub checked, as the recipient's DMS shows it to the clerk.
                    for check in delivery.verification.checks:
                        form = common_pb2.SignatureForm.Name(check.form).removeprefix(
                            "SIGNATURE_FORM_"
                        )
                        # The hub's word on when: an RFC 3161 timestamp, or reception.
                        stamped = check.checked.startswith("RFC 3161")
                        when = " ".join(check.checked.split()[:4]) if stamped else "no timestamp"
                        _say(
                            f"  hub verified {form} {check.attachment} ({check.field}): "
                            f"{check.full_name or check.agency_code}, {check.algorithm}"
                            + (f"; {when}" if check.form == common_pb2.SIGNATURE_FORM_PADES else "")
                        )
                attachment = delivery.attachments[-1]
                target = workdir / f"{client.agency_code}-{attachment.name}"
                what = f"  {client.agency_code} downloading {attachment.name}"
                with Progress(what, attachment.size, unit="B") as shown:
                    digest = await client.download(
                        delivery.document_uuid, attachment.sha256, target, progress=shown.reach
                    )
                if digest != attachment.sha256:
                    raise DemoError(f"{client.agency_code}: attachment digest mismatch")
                await client.acknowledge(delivery.delivery_id)
                _say(
                    f"  {client.agency_code} received {delivery.header.document_id!r}, "
                    f"downloaded {target.stat().st_size:,} bytes (SHA-256 verified), acknowledged"
                )
                return arrived
    finally:
        call.cancel()
    raise DemoError(f"{client.agency_code}: stream ended without the document")


async def run_demo(address: str, pki_folder: Path | None) -> int:
    """Runs the demo over mutual TLS with the demo PKI in `pki_folder`, or in plaintext
    development mode (unsigned) when it is None."""
    try:
        await _demo(address, None if pki_folder is None else DemoPki(pki_folder))
    except (
        DemoError,
        LifecycleDemoError,
        TimeoutError,
        ReceiveStreamError,
        grpc.aio.AioRpcError,
        TrustError,
    ) as exc:
        _say(f"demo FAILED: {exc!r}")
        return 1
    _say("demo passed")
    return 0


def _client(address: str, code: str, pki: DemoPki | None) -> AgencyClient:
    if pki is None:
        return AgencyClient(address, code)
    if code != SENDER:
        return AgencyClient.connect(address, tls=pki.tls(code))
    return AgencyClient.connect(
        address,
        tls=pki.tls(code),
        person=pki.person(code, SIGNER),
        organization=pki.organization(code),
    )


async def _demo(address: str, pki: DemoPki | None) -> None:
    trust = None if pki is None else pki.trust()
    sender = _client(address, SENDER, pki)
    online = [_client(address, code, pki) for code in ONLINE]
    offline = _client(address, OFFLINE, pki)
    with tempfile.TemporaryDirectory(prefix="docaxis-demo-") as tmp:
        workdir = Path(tmp)
        # The annex is large (streamed uploads and downloads); with a PKI the main document is
        # a PDF signed as ND30 prescribes: the official, then the agency (PAdES).
        attachment = workdir / "phu-luc-demo.bin"
        attachment.write_bytes(os.urandom(ATTACHMENT_BYTES))
        _say(f"1. {SENDER} uploads a {ATTACHMENT_BYTES // (1024 * 1024)} MB annex")
        with Progress(f"   uploading {attachment.name}", ATTACHMENT_BYTES, unit="B") as shown:
            upload = await sender.upload_file_resumable(attachment, progress=shown.reach)
        uploads = [(upload, attachment.name, "application/octet-stream")]
        if pki is not None:
            signed_pdf = workdir / "cong-van-demo.pdf"
            signed_pdf.write_bytes(await asyncio.to_thread(pki.signed_pdf, SENDER, SIGNER))
            _say(
                f"   and the document, a PDF signed by the official and the agency "
                f"({signed_pdf.stat().st_size:,} bytes)"
            )
            uploads.insert(
                0,
                (
                    await sender.upload_file_resumable(signed_pdf),
                    signed_pdf.name,
                    "application/pdf",
                ),
            )

        loop = asyncio.get_running_loop()
        document_uuid: asyncio.Future[str] = loop.create_future()
        _say(f"2. {', '.join(ONLINE)} connect their push streams; {OFFLINE} stays offline")
        streams = [await _subscribed(client) for client in online]
        receivers = [
            asyncio.create_task(_receive_one(client, stream, document_uuid, workdir, trust))
            for client, stream in zip(online, streams, strict=True)
        ]

        today = dt.datetime.now(VIETNAM).date()
        # Milliseconds (CodeNumber holds 11 characters): two demos in one second do not collide.
        number = str(time.time_ns() // 1_000_000 % 10**11)
        header = common_pb2.DocumentHeader(
            sender=SENDER,
            recipients=[*ONLINE, OFFLINE],
            code=common_pb2.DocumentCode(number=number, notation="UBND-VP"),
            promulgation_place="Quảng Ninh",
            promulgation_date=today.isoformat(),
            document_type=1,
            type_name="Công văn",
            subject="Về việc triển khai trục liên thông văn bản docaxis",
            signer=common_pb2.Signer(
                competence="TL. CHỦ TỊCH",
                position="Chánh Văn phòng",
                # Signed documents take the name from the person certificate; unsigned
                # development-mode documents must state it.
                full_name="" if pki else SIGNER,
            ),
            priority=common_pb2.PRIORITY_NORMAL,
            business_type=common_pb2.BUSINESS_TYPE_NEW,
        )
        refs = [uploaded.ref(name, media_type) for uploaded, name, media_type in uploads]
        signed = (
            "signed by the official (Ed25519) and the agency (RSA), in the manifest and in the PDF"
            if pki
            else "unsigned"
        )
        _say(f"3. it submits the document to three recipients, {signed}")
        response = await sender.submit(f"demo-{uuid.uuid4()}", header, refs)
        submitted = time.monotonic()
        receipt = response.receipt
        _say(f"   accepted as {receipt.document_uuid} ({receipt.document_id})")
        document_uuid.set_result(receipt.document_uuid)
        arrivals = await asyncio.gather(*receivers)
        for code, arrived in zip(ONLINE, arrivals, strict=True):
            _say(
                f"   {code}: pushed {max(0.0, arrived - submitted) * 1000:.1f} ms after acceptance"
            )

        state = await sender.track(receipt.document_uuid)
        waiting = [r for r in state.recipients if r.effective_recipient == OFFLINE]
        if not waiting or waiting[0].state == pb.DELIVERY_STATE_ACKNOWLEDGED:
            raise DemoError(f"{OFFLINE} should still be waiting")
        _say(f"4. {OFFLINE} reconnects and receives what it missed")
        await _receive_one(offline, offline.receive(), document_uuid, workdir, trust)

        _say("5. the sender tracks its document:")
        state = await sender.track(receipt.document_uuid)
        for r in state.recipients:
            name = pb.DeliveryState.Name(r.state).removeprefix("DELIVERY_STATE_")
            acked = r.acknowledged_at.ToDatetime(dt.UTC).astimezone(VIETNAM)
            _say(
                f"   {r.effective_recipient}: {name}, pushed {r.push_count}x, "
                f"acknowledged {acked:%H:%M:%S.%f}"
            )
        if any(r.state != pb.DELIVERY_STATE_ACKNOWLEDGED for r in state.recipients):
            raise DemoError("not every recipient acknowledged")
        if trust is not None:
            _say("6. the sender fetches each transport receipt and verifies it offline:")
            # Of the header as signed (the official's name from the person certificate).
            manifest_sha256 = sender.manifest_sha256(header, refs)
            for route in receipt.routes:
                transport = await sender.transport_receipt(route.delivery_id)
                hub = verify_transport_receipt(
                    transport,
                    trust,
                    manifest_sha256=manifest_sha256,
                    recipient=route.effective_recipient,
                    document_uuid=receipt.document_uuid,
                )
                _say(
                    f"   {transport.recipient} picked it up at "
                    f"{transport.acknowledged_at.astimezone(VIETNAM):%H:%M:%S}: receipt signed by "
                    f"{hub.subject.rfc4514_string()} ({transport.algorithm.value}), valid"
                )
        await run_lifecycle_demo(
            sender, [*online, offline], receipt, first_step=7 if trust is not None else 6
        )
    for client in (sender, *online, offline):
        await client.close()
