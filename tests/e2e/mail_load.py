"""A small steady mail load for the failover tests: one agency submits documents to another,
whose DMS receives them on a push stream and acknowledges each; both sides retry what the
axis refuses as unavailable, as a real DMS does, so the test can count what was lost or
duplicated across the fault."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc

from docaxis_client.client import AgencyClient
from docaxis_client.receive import ReceiveStreamError
from tests.conftest import make_header
from tests.e2e.processes import AxisProcess
from tests.waiting import eventually

# What an axis whose database or broker is failing over answers: try again shortly.
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RETRY_PAUSE_S = 0.2


@dataclass(slots=True)
class MailLoad:
    axis: AxisProcess
    sender: str
    recipient: str
    # document uuid of every document the axis accepted (its Submit answered OK)
    accepted: list[str] = field(default_factory=list)
    # document uuid -> delivery id, for what the recipient acknowledged (the axis answered OK)
    acknowledged: dict[str, str] = field(default_factory=dict)
    # pushes of a document after its acknowledgement was answered OK: must stay 0
    duplicates: int = 0
    # pushes again before the acknowledgement (a requeue when a stream broke): allowed
    redelivered: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    pushed: set[str] = field(default_factory=set)  # documents pushed at least once

    async def send(self, count: int, *, every_s: float = 0.05) -> None:
        """Submits `count` documents one after another; a refused one is submitted again with
        the same consignment id (the axis answers a repeat with the first receipt)."""
        async with self.axis.client(self.sender) as client:
            for _ in range(count):
                consignment = f"c-{uuid.uuid4()}"
                header = make_header(self.sender, [self.recipient])
                while True:
                    try:
                        response = await client.submit(consignment, header)
                    except grpc.aio.AioRpcError as exc:
                        self._refused("Submit", exc)
                        await asyncio.sleep(RETRY_PAUSE_S)
                        continue
                    self.accepted.append(response.receipt.document_uuid)
                    break
                await asyncio.sleep(every_s)

    async def receive(self) -> None:
        """Receives and acknowledges until cancelled, opening a new stream when one breaks."""
        async with self.axis.client(self.recipient) as client:
            while True:
                stream = client.receive()
                try:
                    while True:
                        delivery = (await stream.read()).delivery
                        await self._acknowledge(
                            client, delivery.document_uuid, delivery.delivery_id
                        )
                except (grpc.aio.AioRpcError, ReceiveStreamError) as exc:
                    if isinstance(exc, grpc.aio.AioRpcError):
                        self._refused("Receive", exc)
                    await asyncio.sleep(RETRY_PAUSE_S)
                finally:
                    stream.cancel()

    async def _acknowledge(self, client: AgencyClient, document: str, delivery_id: str) -> None:
        if document in self.acknowledged:
            self.duplicates += 1
            return
        if document in self.pushed:
            self.redelivered[document] += 1
        self.pushed.add(document)
        while True:
            try:
                await client.acknowledge(delivery_id)
            except grpc.aio.AioRpcError as exc:
                self._refused("Acknowledge", exc)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            self.acknowledged[document] = delivery_id
            return

    def _refused(self, call: str, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() not in RETRIED:
            raise exc
        self.refusals[f"{call} {exc.code().name}"] += 1

    async def settled(self, within: float) -> None:
        """Waits until every accepted document was acknowledged by the recipient."""

        async def pending() -> set[str]:
            return set(self.accepted) - set(self.acknowledged)

        await eventually(pending, lambda left: not left, within=within, every=0.1)

    def describe(self) -> str:
        """What the load saw, for a failure's message."""
        missing = sorted(set(self.accepted) - set(self.acknowledged))
        return (
            f"accepted {len(self.accepted)}, acknowledged {len(self.acknowledged)}, "
            f"duplicates {self.duplicates}, redelivered {sum(self.redelivered.values())}, "
            f"refusals {dict(self.refusals)}, not acknowledged {missing[:5]}"
        )
