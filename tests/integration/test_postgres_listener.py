"""One LISTEN connection per process (services/common/postgres_notifications.py), on the real
Postgres: every channel on it, each subscriber hearing its own; when it drops, every
subscription is lost and the subscribers share the one connection that replaces it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from services.common.postgres_notifications import PostgresListener, PostgresSubscription
from services.directory.adapters.crls import CRL_CHANNEL, CrlWatcher
from tests.waiting import eventually

CHANNELS = ("outbox", "acknowledged", "changed")


class Heard:
    """What each channel's subscriber heard."""

    def __init__(self) -> None:
        self.payloads: dict[str, list[str]] = {channel: [] for channel in CHANNELS}

    def hear(self, channel: str) -> Callable[[str], None]:
        return self.payloads[channel].append


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield opened
    await opened.close()


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[PostgresListener]:
    opened = PostgresListener(database_url)
    yield opened
    await opened.close()


def _names() -> dict[str, str]:
    """Channel names of this test's own, so that no other listener of the database counts."""
    prefix = f"test_{uuid.uuid4().hex[:12]}"
    return {channel: f"{prefix}_{channel}" for channel in CHANNELS}


async def _listening(pool: asyncpg.Pool, names: dict[str, str]) -> list[int]:
    """The backends whose last statement LISTENed on one of `names`."""
    prefix = next(iter(names.values())).rsplit("_", 1)[0]
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE $1",
        f'LISTEN "{prefix}%',
    )
    return [row["pid"] for row in rows]


async def _subscribe_all(
    listener: PostgresListener, names: dict[str, str], heard: Heard
) -> dict[str, PostgresSubscription]:
    subscriptions = await asyncio.gather(
        *(listener.channel(names[channel]).subscribe(heard.hear(channel)) for channel in CHANNELS)
    )
    return dict(zip(CHANNELS, subscriptions, strict=True))


async def _notify_each(pool: asyncpg.Pool, names: dict[str, str], round_: str) -> None:
    for channel in CHANNELS:
        await pool.execute("SELECT pg_notify($1, $2)", names[channel], f"{channel} {round_}")


async def _heard_all(heard: Heard, round_: str) -> None:
    async def each() -> bool:
        return all(f"{channel} {round_}" in heard.payloads[channel] for channel in CHANNELS)

    await eventually(each)


async def test_every_channel_on_one_connection_each_subscriber_hearing_its_own(
    listener: PostgresListener, pool: asyncpg.Pool
) -> None:
    names, heard = _names(), Heard()
    await _subscribe_all(listener, names, heard)
    assert len(await _listening(pool, names)) == 1
    await _notify_each(pool, names, "first")
    await _heard_all(heard, "first")
    assert heard.payloads == {channel: [f"{channel} first"] for channel in CHANNELS}


async def test_a_dropped_connection_is_lost_to_all_and_one_new_one_serves_them_again(
    listener: PostgresListener, pool: asyncpg.Pool
) -> None:
    names, heard = _names(), Heard()
    subscriptions = await _subscribe_all(listener, names, heard)
    [dropped] = await _listening(pool, names)
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", dropped)

    async def all_lost() -> bool:
        return all(subscription.lost.is_set() for subscription in subscriptions.values())

    await eventually(all_lost)
    for subscription in subscriptions.values():
        await subscription.close()  # on a dropped connection: nothing to undo
    # Each subscriber subscribes again, as the relay, the settlements, directory changes and the
    # CRL watcher do, at about the same moment.
    again = await _subscribe_all(listener, names, heard)

    async def listening() -> list[int]:
        return await _listening(pool, names)

    # One connection again, and not the dropped one (which may take a moment to be gone).
    await eventually(listening, lambda pids: len(pids) == 1 and dropped not in pids)
    assert not any(subscription.lost.is_set() for subscription in again.values())
    await _notify_each(pool, names, "again")
    await _heard_all(heard, "again")


async def test_a_closed_subscription_stops_its_channel_only_and_the_last_one_the_connection(
    listener: PostgresListener, pool: asyncpg.Pool
) -> None:
    names, heard = _names(), Heard()
    subscriptions = await _subscribe_all(listener, names, heard)
    [connection] = await _listening(pool, names)
    await subscriptions["outbox"].close()
    await pool.execute("SELECT pg_notify($1, 'unheard')", names["outbox"])
    await _notify_each(pool, names, "after")

    async def the_others() -> bool:
        return all(f"{c} after" in heard.payloads[c] for c in ("acknowledged", "changed"))

    await eventually(the_others)
    # Notifications arrive in commit order: "outbox after" came after "unheard", and neither was
    # heard once the outbox's subscription had closed.
    assert heard.payloads["outbox"] == []
    for channel in ("acknowledged", "changed"):
        await subscriptions[channel].close()

    async def closed() -> bool:
        alive: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", connection
        )
        return alive == 0

    await eventually(closed)


async def test_the_crl_watcher_listens_again_and_reloads_at_once_when_the_connection_drops(
    listener: PostgresListener, pool: asyncpg.Pool
) -> None:
    """A CRL ingested while the connection was down was not heard: the watcher reloads as soon
    as it finds the connection lost, not at its next poll, and hears the next one."""
    reloads = 0

    async def reload() -> None:
        nonlocal reloads
        reloads += 1

    async def reloaded() -> int:
        return reloads

    watcher = CrlWatcher(listener.channel(CRL_CHANNEL), reload, poll_interval_s=3600)
    await watcher.start()
    assert reloads == 1
    stop = asyncio.Event()
    watching = asyncio.create_task(watcher.run(stop))
    try:
        dropped = listener.server_pid
        assert dropped is not None
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", dropped)
        await eventually(reloaded, lambda count: count >= 2)

        async def listening_again() -> int | None:
            return listener.server_pid

        await eventually(listening_again, lambda pid: pid not in (None, dropped))
        before = reloads
        await pool.execute(f"NOTIFY {CRL_CHANNEL}")
        await eventually(reloaded, lambda count: count > before)
    finally:
        stop.set()
        await watching
