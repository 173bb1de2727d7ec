"""The outbox relay: moves committed outbox rows to RabbitMQ, woken by NOTIFY at commit."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS
from services.common.rabbit import BROKER_ERRORS
from services.exchange.adapters.postgres import OUTBOX_CHANNEL, PostgresOutbox
from services.exchange.adapters.rabbit import RabbitPublisher

log = structlog.get_logger(__name__)

_TRANSIENT: tuple[type[BaseException], ...] = (
    *BROKER_ERRORS,
    *TRANSIENT_ERRORS,
    asyncpg.PostgresError,  # e.g. a serialization failure: the batch is simply retried
)


class OutboxRelay:
    def __init__(
        self,
        database_url: str,
        outbox: PostgresOutbox,
        publisher: RabbitPublisher,
        *,
        batch_size: int = 256,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._database_url = database_url
        self._outbox = outbox
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relays until `stop` is set. Failures (broker or database down) back off and retry;
        the rows stay in the outbox, so nothing is lost while waiting."""
        listener: asyncpg.Connection | None = None
        backoff = 0.2
        while not stop.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                relayed = await self._outbox.relay_batch(
                    self._batch_size, self._publisher.publish_batch
                )
                backoff = 0.2
                if relayed:
                    log.debug("outbox_relayed", messages=relayed)
                if relayed == self._batch_size:
                    continue  # more waiting: no pause between full batches
            except _TRANSIENT as exc:
                log.warning("outbox_relay_failed", error=repr(exc), retry_in_s=backoff)
                await pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wake.clear()
            await pause(stop, self._poll_interval_s, wake=self._wake)
        if listener is not None and not listener.is_closed():
            await listener.close()

    async def _listen(self) -> asyncpg.Connection:
        # A dedicated connection: LISTEN must outlive the pool's transaction-scoped borrowing.
        conn: asyncpg.Connection = await asyncpg.connect(self._database_url)
        await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
        return conn
