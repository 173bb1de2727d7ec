"""Acknowledgements made in any worker process, told to this one's streams.

With several worker processes behind one address (DOCAXIS_WORKERS), a unary Acknowledge (or an
AcknowledgeBatch) may land on another process than the Receive stream that pushed the item and
holds its broker message. The acknowledging transaction NOTIFYs ACKNOWLEDGED_CHANNEL with the
item ids; every process listens and settles what its own streams hold (a no-op elsewhere), which
acks the broker message and frees the stream's window. Should a notification be missed (the
listening connection dropped), nothing is lost: the stream's channel requeues the message when it
closes and the next push skips it, because the database says it is acknowledged.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS
from services.exchange.service_layer.inbox_ports import InFlight
from services.exchange.service_layer.notification_ports import Notifications

log = structlog.get_logger(__name__)


_UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)


class Settlements:
    def __init__(self, acknowledged: Notifications, in_flight: InFlight) -> None:
        """`acknowledged`: the item ids of each committed acknowledgement, comma-separated."""
        self._acknowledged = acknowledged
        self._in_flight = in_flight
        self._settling: set[asyncio.Task[None]] = set()

    def _on_notify(self, payload: str) -> None:
        for item_id in payload.split(","):
            if self._in_flight.holds(item_id):
                task = asyncio.create_task(self._in_flight.settle(item_id))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Listens until `stop` is set, reconnecting after a lost connection."""
        backoff = 0.2
        while not stop.is_set():
            try:
                subscription = await self._acknowledged.subscribe(self._on_notify)
            except _UNREACHABLE as exc:
                log.warning("settlements_listen_failed", error=repr(exc), retry_in_s=backoff)
                await pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                while not stop.is_set() and not subscription.lost.is_set():
                    await pause(stop, 1.0, wake=subscription.lost)
            finally:
                await subscription.close()
        await asyncio.gather(*self._settling, return_exceptions=True)
