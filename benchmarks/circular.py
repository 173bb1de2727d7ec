"""A national circular: one signed document to every commune, each commune's DMS in pull mode
with its own certificate (list, fetch, acknowledge), timed until every copy is acknowledged."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from benchmarks.load import document_header
from benchmarks.stack import BenchPki
from docaxis_client.client import AgencyClient

# DMSs working at once: a commune's DMS polls on its own schedule; this many at a time keeps
# the generator's own event loop from being what is measured.
CONCURRENT_DMS = 200
POLL_EVERY_S = 0.05


@dataclass(frozen=True, slots=True)
class CircularResult:
    recipients: int
    submit_s: float
    fully_acknowledged_s: float
    acknowledged: int
    errors: dict[str, int]
    # Why Submit refused the circular, when it did (then nothing was timed).
    refused: str = ""
    # Cores each group of processes used, from connecting the DMSs to the last acknowledgement.
    cores: dict[str, float] = field(default_factory=dict)


async def run_circular(
    address: str,
    pki: BenchPki,
    sender: AgencyClient,
    attachment: common_pb2.AttachmentRef,
    communes: Sequence[str],
    *,
    within_s: float,
) -> CircularResult:
    clients = [pki.client(address, code) for code in communes]
    errors: dict[str, int] = {}
    gate = asyncio.Semaphore(CONCURRENT_DMS)
    try:
        # Every DMS connected (mutual TLS handshake done) and its inbox empty before the clock
        # starts: the communes are online, waiting for mail.
        async def connect(client: AgencyClient) -> None:
            async with gate:
                await client.list_pending(page_size=1)

        await asyncio.gather(*(connect(client) for client in clients))
        header = document_header(
            sender.agency_code,
            communes,
            str(time.time_ns() // 1_000_000 % 10**11),
            "Công văn gửi toàn bộ xã, phường, đặc khu",
        )
        signatures = sender.sign(header, [attachment])
        start = time.monotonic()
        try:
            response = await sender.exchange.Submit(
                pb.SubmitRequest(
                    consignment_id=f"bench-circular-{uuid.uuid4()}",
                    header=header,
                    attachments=[attachment],
                    signatures=signatures,
                ),
                timeout=within_s,
            )
        except grpc.aio.AioRpcError as exc:
            return CircularResult(
                len(communes), math.nan, math.nan, 0, {}, f"{exc.code().name}: {exc.details()}"
            )
        submitted = time.monotonic()
        document_uuid = response.receipt.document_uuid

        async def take(client: AgencyClient) -> bool:
            """Polls until the circular is listed, fetches it and acknowledges it."""
            async with gate:
                while time.monotonic() - start < within_s:
                    try:
                        listed = await client.list_pending()
                        for item in listed.items:
                            if item.document_uuid == document_uuid:
                                await client.fetch(item)
                                await client.acknowledge_item(item)
                                return True
                    except grpc.aio.AioRpcError as exc:
                        errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    await asyncio.sleep(POLL_EVERY_S)
                return False

        taken = await asyncio.gather(*(take(client) for client in clients))
        finished = time.monotonic()
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    return CircularResult(
        recipients=len(communes),
        submit_s=submitted - start,
        fully_acknowledged_s=finished - start,
        acknowledged=sum(taken),
        errors=errors,
    )
