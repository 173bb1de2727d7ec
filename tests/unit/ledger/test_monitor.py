"""The client-side monitor: it keeps the newest trusted checkpoint, accepts consistent growth,
and raises (after reporting) on a split view."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import pytest

from docaxis_client.ledger.merkle import consistency_proof
from docaxis_client.ledger.monitor import (
    FileCheckpointStore,
    LedgerForkError,
    LedgerMonitor,
    MemoryCheckpointStore,
)
from docaxis_client.ledger.note import Checkpoint, sign_checkpoint
from docaxis_client.ledger.policy import QuorumNotMetError
from tests.unit.ledger.synthetic import (
    ORIGIN,
    SyntheticLog,
    cosigned,
    fixed_signer,
    relink,
    synthetic_log,
    witnessed_policy,
)


@functools.cache
def log() -> SyntheticLog:
    return synthetic_log(300, (10, 100, 300))


def notes() -> list[bytes]:
    return [cosigned(n) for n in log().notes]


class Hub:
    """What the monitor asks the hub: consistency proofs from the honest tree, fork reports."""

    def __init__(self) -> None:
        self.reports: list[tuple[bytes, bytes, str]] = []
        self.asked: list[tuple[int, int]] = []

    async def consistency(self, old: int, new: int) -> Sequence[bytes]:
        self.asked.append((old, new))
        return consistency_proof(log().tree(), old, new)

    async def report(self, held: bytes, shown: bytes, detail: str) -> None:
        self.reports.append((held, shown, detail))


def monitor(
    hub: Hub, store: MemoryCheckpointStore | FileCheckpointStore | None = None
) -> LedgerMonitor:
    return LedgerMonitor(
        witnessed_policy(), store or MemoryCheckpointStore(), hub.consistency, hub.report
    )


async def test_consistent_growth_is_kept_and_older_views_are_checked_too(tmp_path: Path) -> None:
    hub = Hub()
    store = FileCheckpointStore(tmp_path)
    m = monitor(hub, store)
    first, middle, last = notes()
    await m.observe(middle)
    await m.observe(last)
    assert m.latest() == last
    await m.observe(first)  # an older receipt: consistent, the newest stays
    assert m.latest() == last
    assert hub.asked == [(100, 300), (10, 300)]
    assert monitor(hub, FileCheckpointStore(tmp_path)).latest() == last  # survives a restart
    assert hub.reports == []


async def test_a_second_root_for_the_same_size_is_reported_and_raised() -> None:
    hub = Hub()
    m = monitor(hub)
    await m.observe(notes()[1])
    forked = cosigned(sign_checkpoint(Checkpoint(ORIGIN, 100, b"\x05" * 32), [fixed_signer()]))
    with pytest.raises(LedgerForkError, match="two roots for size 100") as caught:
        await m.observe(forked)
    assert caught.value.reason == "LEDGER_FORK"
    assert hub.reports == [(notes()[1], forked, "two roots for size 100")]
    assert m.latest() == notes()[1]


async def test_a_rewritten_history_that_grows_is_a_fork() -> None:
    """Even cosigned (witnesses shown another view), a tree that does not extend the held one
    fails the consistency proof the hub can give."""
    hub = Hub()
    m = monitor(hub)
    await m.observe(notes()[0])
    bodies = list(log().bodies)
    bodies[3] = bodies[4]
    rewritten = SyntheticLog(relink(bodies), [300])
    with pytest.raises(LedgerForkError, match="no consistency from size 10 to 300"):
        await m.observe(cosigned(rewritten.notes[0]))
    assert len(hub.reports) == 1


async def test_a_checkpoint_the_policy_does_not_trust_is_refused_before_anything_else() -> None:
    hub = Hub()
    with pytest.raises(QuorumNotMetError):
        await monitor(hub).observe(log().notes[0])  # log-signed, not cosigned
    assert hub.asked == []
    assert hub.reports == []
