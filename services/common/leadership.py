"""One leader among every docaxis process for what must run once per axis.

Worker processes (DOCAXIS_WORKERS) and replicas on other hosts share only Postgres and RabbitMQ,
so leadership is elected on Postgres: a session advisory lock held on a dedicated connection. The
lock belongs to the session, so it goes when the holder does: a process killed with SIGKILL has
its socket closed by the kernel and the server ends the session at once; a host that vanishes
without closing its sockets is found out by the TCP keepalives set below (about 11 s). Standbys
try the lock every `standby_poll_s` and the first to get it leads. After a Postgres failover the
promoted standby holds no advisory locks: the leaders' sessions broke with the old primary, and
the first process to reach the new one leads.

A leader that lost its lock session may not know it yet (its own check runs every
`check_interval_s`). Where two leaders at once would do harm, the job fences itself: the ledger
sequencer bumps an epoch in the row its every append locks (ledger.tree_state.writer_epoch), so
an old leader's next append finds a newer epoch and stops (PostgresLedgerWriter.take_over). The
outbox relay and the sweeps need no fence: each of their batches locks its rows, and a batch done
twice only publishes a message again, which consumers already treat as at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS

log = structlog.get_logger(__name__)

_UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
_UNANSWERED: tuple[type[BaseException], ...] = (*_UNREACHABLE, TimeoutError)

# The server closes a session whose peer stopped answering after idle + interval × count seconds.
_KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


class Singleton(enum.IntEnum):
    """The jobs that run once per axis, each with its advisory lock key (stable across versions:
    old and new processes must elect one leader between them during a rolling upgrade)."""

    LEDGER_SEQUENCER = 0x6C656467  # "ledg": sequencing and checkpoints (witnesses beside it)
    OUTBOX_RELAY = 0x726C6179  # "rlay"
    SWEEPS = 0x73776570  # "swep": rerouting and abandoned uploads
    NATIONAL_POLLER = 0x6E617869  # "naxi": the national axis's mailbox (services/national)

    @property
    def job(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class PerPeer:
    """A job that runs once per axis for each peer hub (its forwarder), under a lock key of its
    own: "fwd" above the CRC-32 of the peer's code, apart from every Singleton's key."""

    job: str
    key: int

    def __int__(self) -> int:
        return self.key

    @classmethod
    def forwarder(cls, hub_code: str) -> PerPeer:
        return cls(f"forward_{hub_code}", (0x667764 << 32) | zlib.crc32(hub_code.encode()))


# What is elected: a Singleton, or a peer's job.
Elected = Singleton | PerPeer


class PostgresLeaderTerm:
    """The hold on a lock: `lost` once its session stops answering (checked every
    `check_interval_s` on the lock's own connection)."""

    def __init__(self, conn: asyncpg.Connection, singleton: Elected, check_interval_s: float):
        self._conn = conn
        self._singleton = singleton
        self._check_interval_s = check_interval_s
        self.ended = asyncio.Event()
        self._watch = asyncio.create_task(self._watch_session())

    def lost(self) -> bool:
        return self.ended.is_set() or self._conn.is_closed()

    async def _watch_session(self) -> None:
        try:
            while not self.ended.is_set():
                await pause(self.ended, self._check_interval_s)
                if self.ended.is_set():
                    return
                try:
                    await self._conn.fetchval(
                        "SELECT 1", timeout=max(2.0, self._check_interval_s * 2)
                    )
                except _UNANSWERED as exc:
                    log.warning("leadership_lost", job=self._singleton.job, error=repr(exc))
                    return
        finally:
            self.ended.set()

    async def release(self) -> None:
        self.ended.set()
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch
        if not self._conn.is_closed():
            # Closing the session releases the advisory lock (a failing close ends it too).
            with contextlib.suppress(*_UNREACHABLE):
                await self._conn.close(timeout=2)


class PostgresLeadership:
    def __init__(
        self,
        singleton: Elected,
        database_url: str,
        *,
        role: str | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.singleton = singleton
        self._database_url = database_url
        self._role = role
        self._check_interval_s = check_interval_s

    async def try_lead(self) -> PostgresLeaderTerm | None:
        """The hold, or None while another process leads."""
        settings = dict(_KEEPALIVES)
        if self._role:
            settings["role"] = self._role
        conn: asyncpg.Connection = await asyncpg.connect(
            self._database_url, server_settings=settings, timeout=10
        )
        try:
            held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", int(self.singleton))
        except BaseException:
            with contextlib.suppress(*_UNREACHABLE):
                await conn.close(timeout=2)
            raise
        if not held:
            await conn.close(timeout=2)
            return None
        return PostgresLeaderTerm(conn, self.singleton, self._check_interval_s)


# A leader's job: runs until the event is set (stop, or the lock lost), then returns.
Term = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def lead_when_elected(
    leadership: PostgresLeadership,
    stop: asyncio.Event,
    term: Term,
    *,
    on_change: Callable[[Elected, bool], None] | None = None,
    standby_poll_s: float = 1.0,
) -> None:
    """Stands by; runs `term` while this process holds the lock; stands by again when the hold
    is lost; until `stop`. A database that is down is retried with backoff."""
    job = leadership.singleton.job
    backoff = 0.2
    while not stop.is_set():
        try:
            hold = await leadership.try_lead()
        except _UNREACHABLE as exc:
            log.warning("leadership_unreachable", job=job, error=repr(exc))
            await pause(stop, backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.2
        if hold is None:
            await pause(stop, standby_poll_s)
            continue
        _changed(leadership.singleton, True, on_change)
        ended = hold.ended
        forward = asyncio.create_task(_forward(stop, ended))
        try:
            await term(ended)
        finally:
            forward.cancel()
            await hold.release()
            _changed(leadership.singleton, False, on_change)


async def _forward(stop: asyncio.Event, ended: asyncio.Event) -> None:
    await stop.wait()
    ended.set()


def _changed(
    singleton: Elected, leading: bool, on_change: Callable[[Elected, bool], None] | None
) -> None:
    log.info("leadership_changed", job=singleton.job, leading=leading)
    if on_change is not None:
        on_change(singleton, leading)
