"""What the exchange's background loops need to be woken: notifications sent at commit (the
outbox has rows, an acknowledgement was stored). Postgres NOTIFY implements these
(services/common/postgres_notifications.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Subscription(Protocol):
    @property
    def lost(self) -> asyncio.Event:
        """Set once nothing more will be heard (the connection dropped): subscribe again."""
        ...

    async def close(self) -> None: ...


class Notifications(Protocol):
    async def subscribe(self, on_payload: Callable[[str], None]) -> Subscription:
        """Calls `on_payload` with each notification's payload until the subscription is
        closed or lost."""
        ...
