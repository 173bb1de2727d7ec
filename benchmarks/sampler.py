"""What the soak samples every few seconds while the load runs: resident memory and open file
descriptors of every docaxis process (its workers too, read from /proc), the connections to the
run's database (pg_stat_activity), and how much waits in each queue: ready messages in the
agencies' RabbitMQ inboxes (copies for the recipients, status notices for the senders) and the
dead-letter queue (passive declares: the broker's management
API is not enabled, and a `rabbitmqctl` per sample would cost a second of CPU each time), outbox
rows not yet relayed, copies and notices not yet acknowledged and ledger events not yet
sequenced."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from benchmarks.stack import Axis
from services.exchange.adapters.rabbit import DEAD_LETTER_QUEUE, inbox_queue_name

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    rss_mib: float
    open_fds: int


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # since the steady load began
    processes: list[ProcessSample]
    db_connections: int
    inbox_messages: int  # ready in the recipients' inboxes: copies
    notice_messages: int  # ready in the senders' inboxes: status notices
    dead_letters: int
    outbox_rows: int
    unacknowledged_copies: int
    unacknowledged_notices: int
    ledger_pending: int

    @property
    def rss_mib(self) -> float:
        return sum(p.rss_mib for p in self.processes)

    @property
    def open_fds(self) -> int:
        return sum(p.open_fds for p in self.processes)


def process_sample(pid: int) -> ProcessSample | None:
    """Resident memory (statm) and open descriptors of one process; None if it has exited."""
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcessSample(pid, resident_pages * PAGE_KIB / 1024, fds)


async def unacknowledged_copies(database_url: str) -> set[str]:
    """Delivery ids of the copies docaxis holds that no recipient has acknowledged (after a run:
    should be none)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id FROM exchange.delivery WHERE acknowledged_at IS NULL")
        return {str(row["id"]) for row in rows}
    finally:
        await conn.close()


class Sampler:
    """One Postgres connection and one AMQP channel of its own, kept open for the run (its own
    connection is left out of the count)."""

    def __init__(
        self,
        axis: Axis,
        database_url: str,
        amqp_url: str,
        senders: Sequence[str],
        recipients: Sequence[str],
    ) -> None:
        self._axis = axis
        self._database_url = database_url
        self._amqp_url = amqp_url
        self._recipient_queues = [inbox_queue_name(code) for code in recipients]
        self._sender_queues = [inbox_queue_name(code) for code in senders]
        self._db: asyncpg.Connection | None = None
        self._broker: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def open(self) -> None:
        self._db = await asyncpg.connect(self._database_url)
        self._broker = await aio_pika.connect_robust(self._amqp_url)
        self._channel = await self._broker.channel()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
        if self._broker is not None:
            await self._broker.close()

    async def sample(self, at_s: float) -> Sample:
        assert self._db is not None
        processes = [
            sample
            for pid in sorted(self._axis.processes())
            if (sample := process_sample(pid)) is not None
        ]
        row = await self._db.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()) AS connections,
              (SELECT count(*) FROM exchange.outbox) AS outbox,
              (SELECT count(*) FROM exchange.delivery WHERE acknowledged_at IS NULL)
                AS unacknowledged,
              (SELECT count(*) FROM exchange.notice
                WHERE acknowledged_at IS NULL AND coalesced_into IS NULL) AS notices,
              (SELECT count(*) FROM ledger.pending) AS ledger_pending
            """
        )
        assert row is not None
        inbox = notices = 0
        for queue in self._recipient_queues:
            inbox += await self._ready(queue)
        for queue in self._sender_queues:
            notices += await self._ready(queue)
        return Sample(
            at_s=at_s,
            processes=processes,
            db_connections=row["connections"],
            inbox_messages=inbox,
            notice_messages=notices,
            dead_letters=await self._ready(DEAD_LETTER_QUEUE),
            outbox_rows=row["outbox"],
            unacknowledged_copies=row["unacknowledged"],
            unacknowledged_notices=row["notices"],
            ledger_pending=row["ledger_pending"],
        )

    async def _ready(self, queue: str) -> int:
        """Messages ready in `queue` (0 if it does not exist yet: a passive declare of a missing
        queue closes the channel, so a fresh one is opened)."""
        assert self._broker is not None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._broker.channel()
        try:
            declared = await self._channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            self._channel = None
            return 0
        count = declared.declaration_result.message_count
        return int(count or 0)
