"""What the Receive streams need of the broker: an agency's inbox in batches, and the pushed
messages held until their acknowledgement. RabbitMQ implements these (adapters/rabbit.py);
unit tests use fakes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class BrokerMessage(Protocol):
    """A message the broker holds for a stream until it is acknowledged."""

    @property
    def headers(self) -> Mapping[str, object]:
        """Its headers (the trace context among them)."""
        ...

    async def ack(self) -> None:
        """Once the message's item is settled (stored as acknowledged, or nothing to push)."""
        ...

    async def reject(self, requeue: bool = False) -> None:
        """`requeue=False`: into the queue's dead-letter exchange."""
        ...


@dataclass(frozen=True, slots=True)
class InboxMessage:
    delivery_id: str
    message: BrokerMessage
    # Set instead of delivery_id for a notice (a status for a sender, a recall for a recipient).
    notice_id: str = ""
    # Whom the message is for (the copy's recipient, the notice's agency): a peer hub's queue
    # holds messages for many (federation).
    addressee: str = ""
    # A copy's: when the relay published it (its queued_at), None when the message does not say.
    published_at: dt.datetime | None = None

    @property
    def item_id(self) -> str:
        return self.notice_id or self.delivery_id


class Inbox(Protocol):
    """One stream's view of its agency's inbox queue."""

    async def batch(self, max_items: int) -> list[InboxMessage]:
        """Waits for a message, then takes every other one already here, up to `max_items`.
        Empty once the consumer was stopped (shutdown); raises a broker error once the channel
        closed."""
        ...


class AgencyInboxes(Protocol):
    """Where the Receive streams take an agency's mail from."""

    def consume(
        self, agency_code: str, *, prefetch: int | None = None
    ) -> AbstractAsyncContextManager[Inbox]: ...


class InFlight(Protocol):
    """Messages pushed to a DMS and not yet acknowledged, by item id, across this process's
    Receive streams."""

    def holds(self, item_id: str) -> bool: ...

    def add(
        self,
        item_id: str,
        message: BrokerMessage,
        released: Callable[[str], None] | None = None,
    ) -> None:
        """`released` is told the item id when it is settled (frees a place in a window)."""
        ...

    def forget(self, item_ids: Sequence[str]) -> None: ...

    async def settle(self, item_id: str) -> None:
        """Acknowledges the broker message of an item that is stored as acknowledged."""
        ...
