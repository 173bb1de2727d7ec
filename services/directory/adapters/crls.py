"""Stored CRLs in Postgres, and the watcher that keeps each process's revocations current."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres_notifications import PostgresNotifications, PostgresSubscription
from services.common.trust import CrlInfo

log = structlog.get_logger(__name__)

CRL_CHANNEL = "directory_crl"


class PostgresCrls:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_if_newer(self, info: CrlInfo, der: bytes) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchrow(
                "SELECT crl_number, this_update FROM directory.crl WHERE issuer_key_id = $1 "
                "FOR UPDATE",
                info.issuer_key_id,
            )
            if stored is not None and (int(stored["crl_number"]), stored["this_update"]) >= (
                info.number,
                info.this_update,
            ):
                return False
            await conn.execute(
                """
                INSERT INTO directory.crl (issuer_key_id, issuer, crl_number, this_update,
                    next_update, revoked_count, der)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (issuer_key_id) DO UPDATE SET issuer = EXCLUDED.issuer,
                    crl_number = EXCLUDED.crl_number, this_update = EXCLUDED.this_update,
                    next_update = EXCLUDED.next_update, revoked_count = EXCLUDED.revoked_count,
                    der = EXCLUDED.der, ingested_at = now()
                """,
                info.issuer_key_id,
                info.issuer,
                Decimal(info.number),
                info.this_update,
                info.next_update,
                info.revoked_count,
                der,
            )
            # Delivered at commit to every process listening, this one included.
            await conn.execute(f"NOTIFY {CRL_CHANNEL}")
        return True

    async def all(self) -> Sequence[bytes]:
        rows = await self._pool.fetch("SELECT der FROM directory.crl ORDER BY issuer_key_id")
        return [row["der"] for row in rows]


class CrlWatcher:
    """Reloads the revocations whenever a CRL is ingested anywhere (LISTEN directory_crl), and
    every `poll_interval_s` as a safety net for notifications missed while reconnecting."""

    def __init__(
        self,
        ingested: PostgresNotifications,
        reload: Callable[[], Awaitable[None]],
        *,
        poll_interval_s: float = 60.0,
    ) -> None:
        """`ingested`: the notifications of CRL_CHANNEL, on the process's listening connection."""
        self._ingested = ingested
        self._reload = reload
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._subscription: PostgresSubscription | None = None

    def _on_notify(self, _payload: str) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Listens first, then loads: a CRL ingested in between is not missed."""
        self._subscription = await self._ingested.subscribe(self._on_notify)
        await self._reload()

    async def close(self) -> None:
        """Stops listening (also when `run` was cancelled before it did)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.close()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            # A lost connection also loses notifications: listen again and reload at once.
            lost = () if self._subscription is None else (self._subscription.lost,)
            await pause(stop, self._poll_interval_s, wake=(self._wake, *lost))
            if stop.is_set():
                break
            self._wake.clear()
            try:
                if self._subscription is None or self._subscription.lost.is_set():
                    await self.close()
                    self._subscription = await self._ingested.subscribe(self._on_notify)
                await self._reload()
                backoff = 0.2
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("revocations_reload_failed", error=repr(exc), retry_in_s=backoff)
                self._wake.set()  # try again after the pause
                await pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
        await self.close()
