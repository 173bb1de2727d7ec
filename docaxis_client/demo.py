"""`make demo`: one agency sends a document with a 5 MB attachment to three others; two receive
and acknowledge at once, the third is offline and receives it after reconnecting."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient

SENDER = "000.00.01.H45"  # Văn phòng Ủy ban nhân dân tỉnh Quảng Ninh
ONLINE = ("000.00.11.H45", "000.00.12.H45")  # Sở Nội vụ, Sở Tài chính tỉnh Quảng Ninh
OFFLINE = "000.00.71.H45"  # Ủy ban nhân dân phường Hạ Long
ATTACHMENT_BYTES = 5 * 1024 * 1024
STEP_TIMEOUT_S = 30.0
VIETNAM = dt.timezone(dt.timedelta(hours=7))


class DemoError(Exception):
    pass


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo narrates


async def _receive_one(
    client: AgencyClient, document_uuid_box: asyncio.Future[str], workdir: Path
) -> float:
    """Waits for the document on the push stream, downloads and checks the attachment,
    acknowledges; returns the time it arrived (monotonic)."""
    call = client.receive()
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async for item in call:
                delivery = item.delivery
                arrived = time.monotonic()
                expected = await document_uuid_box
                if delivery.document_uuid != expected:
                    # Mail from an earlier demo run that was never acknowledged: take it too.
                    await client.acknowledge(delivery.delivery_id)
                    continue
                attachment = delivery.attachments[0]
                target = workdir / f"{client.agency_code}-{attachment.name}"
                digest = await client.download(delivery.document_uuid, attachment.sha256, target)
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


async def run_demo(address: str) -> int:
    try:
        await _demo(address)
    except (DemoError, TimeoutError, grpc.aio.AioRpcError) as exc:
        _say(f"demo FAILED: {exc!r}")
        return 1
    _say("demo passed")
    return 0


async def _demo(address: str) -> None:
    sender = AgencyClient(address, SENDER)
    online = [AgencyClient(address, code) for code in ONLINE]
    offline = AgencyClient(address, OFFLINE)
    with tempfile.TemporaryDirectory(prefix="docaxis-demo-") as tmp:
        workdir = Path(tmp)
        attachment = workdir / "cong-van-demo.pdf"
        attachment.write_bytes(b"%PDF-1.7\n" + os.urandom(ATTACHMENT_BYTES - 9))
        _say(f"1. {SENDER} uploads a {ATTACHMENT_BYTES // (1024 * 1024)} MB attachment")
        upload = await sender.upload_file(attachment)

        loop = asyncio.get_running_loop()
        document_uuid: asyncio.Future[str] = loop.create_future()
        _say(f"2. {', '.join(ONLINE)} connect their push streams; {OFFLINE} stays offline")
        receivers = [
            asyncio.create_task(_receive_one(client, document_uuid, workdir)) for client in online
        ]
        await asyncio.sleep(0.5)  # let the streams subscribe before sending (demo pacing only)

        today = dt.datetime.now(VIETNAM).date()
        number = str(int(time.time()) % 10**9)
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
                competence="TL. CHỦ TỊCH", position="Chánh Văn phòng", full_name="Nguyễn Văn An"
            ),
            priority=common_pb2.PRIORITY_NORMAL,
            business_type=common_pb2.BUSINESS_TYPE_NEW,
        )
        _say("3. it submits the document to three recipients")
        response = await sender.submit(
            f"demo-{uuid.uuid4()}", header, [upload.ref(attachment.name, "application/pdf")]
        )
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
        await _receive_one(offline, document_uuid, workdir)

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
    for client in (sender, *online, offline):
        await client.close()
