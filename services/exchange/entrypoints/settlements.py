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
from collections.abc import Callable

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS
from services.exchange.adapters.postgres_lifecycle import ACKNOWLEDGED_CHANNEL
from services.exchange.service_layer.inbox_ports import InFlight

log = structlog.get_logger(__name__)


_UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _: event.set()


class Settlements:
    def __init__(self, database_url: str, in_flight: InFlight) -> None:
        self._database_url = database_url
        self._in_flight = in_flight
        self._settling: set[asyncio.Task[None]] = set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for item_id in str(payload).split(","):
            if self._in_flight.holds(item_id):
                task = asyncio.create_task(self._in_flight.settle(item_id))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Listens until `stop` is set, reconnecting after a lost connection."""
        backoff = 0.2
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                # A dedicated connection: LISTEN must outlive the pool's borrowing.
                conn: asyncpg.Connection = await asyncpg.connect(self._database_url)
            except _UNREACHABLE as exc:
                log.warning("settlements_listen_failed", error=repr(exc), retry_in_s=backoff)
                await pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(ACKNOWLEDGED_CHANNEL, self._on_notify)
                while not stop.is_set() and not lost.is_set():
                    await pause(stop, 1.0, wake=lost)
            finally:
                if not conn.is_closed():
                    await conn.close()
        await asyncio.gather(*self._settling, return_exceptions=True)
