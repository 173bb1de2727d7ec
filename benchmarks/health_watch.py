"""Every change of a docaxis process's gRPC health (grpc.health.v1 Check every 0.1 s, as an
orchestrator's probe asks it), with its time: what `make chaos` reports around a fault."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import open_channel
from docaxis_client.credentials import TlsCredentials

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
POLL_S = 0.1
POLL_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    at: float  # time.monotonic()
    status: int | None  # None: the process does not answer


class HealthWatch:
    def __init__(self, name: str, address: str, tls: TlsCredentials) -> None:
        self.name = name
        self._address = address
        self._tls = tls
        self.changes: list[Change] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def status(self) -> int | None:
        return self.changes[-1].status if self.changes else None

    def _record(self, status: int | None) -> None:
        if self.status != status or not self.changes:
            self.changes.append(Change(time.monotonic(), status))

    async def _watch(self) -> None:
        # Check, polled: the server's Watch stream fails (UNKNOWN, a TypeError in an
        # interceptor), and a status held for a health interval (0.5 s here) is not missed.
        async with open_channel(self._address, self._tls) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    response = await stub.Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=POLL_TIMEOUT_S
                    )
                    self._record(response.status)
                except grpc.aio.AioRpcError:
                    self._record(None)
                await asyncio.sleep(POLL_S)

    def outage(self, since: float) -> tuple[float | None, float | None]:
        """Seconds from `since` until the first NOT_SERVING after it, and from `since` until
        SERVING again after that (None where it did not happen)."""
        down = next((c.at for c in self.changes if c.at >= since and c.status == NOT_SERVING), None)
        if down is None:
            return None, None
        up = next((c.at for c in self.changes if c.at > down and c.status == SERVING), None)
        return down - since, None if up is None else up - since

    def describe_outage(self, since: float) -> str:
        down, up = self.outage(since)
        if down is None:
            return f"{self.name} never NOT_SERVING"
        back = "not SERVING again" if up is None else f"SERVING at {up:.1f} s"
        return f"{self.name} NOT_SERVING at {down:.1f} s, {back}"
