"""Directory changes heard by this process: what Submit keeps of the directory is forgotten as
soon as any process (any worker, any tool) changes it (service_layer/directory_cache.py).

The cache answers from memory only while this listens. A lost connection turns it off and
clears it, since a notification may be missed from then on; once listening again it starts
empty, so nothing read before the gap survives it."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS
from services.exchange.service_layer.directory_cache import DirectoryCache
from services.exchange.service_layer.notification_ports import Notifications

log = structlog.get_logger(__name__)

_UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)


class DirectoryChanges:
    def __init__(self, changed: Notifications, cache: DirectoryCache) -> None:
        """`changed`: a notification at the commit of every directory change."""
        self._changed = changed
        self._cache = cache

    def _on_notify(self, _payload: str) -> None:
        self._cache.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Listens until `stop` is set, reconnecting after a lost connection."""
        backoff = 0.2
        while not stop.is_set():
            try:
                subscription = await self._changed.subscribe(self._on_notify)
            except _UNREACHABLE as exc:
                log.warning("directory_changes_listen_failed", error=repr(exc), retry_in_s=backoff)
                await pause(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            # Listening from here: every change that commits from now on is heard.
            self._cache.set_listening(True)
            try:
                while not stop.is_set() and not subscription.lost.is_set():
                    await pause(stop, 1.0, wake=subscription.lost)
            finally:
                self._cache.set_listening(False)
                await subscription.close()
            if not stop.is_set():
                log.warning("directory_changes_listen_lost")
