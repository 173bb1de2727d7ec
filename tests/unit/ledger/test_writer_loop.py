"""The writer loop over its ports: it sequences only while it leads, stands by when another
instance leads or its hold is lost, and makes what it sequenced provable before it stops.
(tests/integration/test_ledger_guards.py runs two loops on Postgres's advisory lock.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from docaxis_client.ledger.note import NoteSigner
from services.ledger.entrypoints.writer import LedgerWriterLoop
from services.ledger.service_layer.ports import FencedOutError, StoredCheckpoint
from tests.unit.ledger.synthetic import fixed_signer
from tests.waiting import eventually


class Term:
    def __init__(self) -> None:
        self.lost_hold = False
        self.released = False

    def lost(self) -> bool:
        return self.lost_hold

    async def release(self) -> None:
        self.released = True


class Leadership:
    """Grants a hold once `free` is set; hands out a fresh term each time."""

    def __init__(self, *, free: bool) -> None:
        self.free = free
        self.terms: list[Term] = []
        self.asked = 0

    async def try_lead(self) -> Term | None:
        self.asked += 1
        if not self.free:
            return None
        self.terms.append(Term())
        return self.terms[-1]


class Sequencer:
    def __init__(self, staged: int = 0) -> None:
        self.staged = staged
        self.sequenced = 0
        self.keys_recorded = 0
        self.published: list[int] = []
        self.epochs = 0
        # Set: another writer took over since (the Postgres writer's fence raises then).
        self.fenced = False

    async def take_over(self) -> int:
        self.epochs += 1
        self.fenced = False
        return self.epochs

    async def record_keys(self, signers: Sequence[NoteSigner]) -> list[str]:
        self.keys_recorded += 1
        return [s.verifier.vkey for s in signers]

    async def sequence_batch(self, limit: int) -> int:
        if self.fenced:
            raise FencedOutError("a newer epoch")
        done = min(limit, self.staged - self.sequenced)
        self.sequenced += done
        return done

    async def publish_checkpoint(self, signers: Sequence[NoteSigner]) -> StoredCheckpoint | None:
        if self.published and self.published[-1] == self.sequenced:
            return None
        self.published.append(self.sequenced)
        return StoredCheckpoint(self.sequenced, b"r" * 32, b"note")


def _loop(leadership: Leadership, sequencer: Sequencer) -> LedgerWriterLoop:
    return LedgerWriterLoop(
        leadership, sequencer, [fixed_signer()], batch_size=10, idle_wait_s=0.01
    )


async def _until(condition: Callable[[], bool]) -> None:
    async def holds() -> bool:
        return condition()

    await eventually(holds, within=5, every=0.01)


async def test_while_another_leads_nothing_is_sequenced() -> None:
    leadership, sequencer = Leadership(free=False), Sequencer(staged=25)
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(leadership, sequencer).run(stop))
    await _until(lambda: leadership.asked >= 1)
    stop.set()
    await task
    assert (sequencer.sequenced, sequencer.keys_recorded, sequencer.published) == (0, 0, [])


async def test_the_leader_sequences_everything_and_signs_it_before_stopping() -> None:
    leadership, sequencer = Leadership(free=True), Sequencer(staged=25)
    loop = _loop(leadership, sequencer)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await _until(lambda: sequencer.sequenced == 25)
    assert loop.leading.is_set()
    stop.set()
    await task
    assert sequencer.keys_recorded == 1
    assert sequencer.published[-1] == 25  # the last words: all of it provable
    assert not loop.leading.is_set()
    assert [term.released for term in leadership.terms] == [True]


async def test_a_lost_hold_stands_the_writer_by_until_it_leads_again() -> None:
    leadership, sequencer = Leadership(free=True), Sequencer()
    loop = _loop(leadership, sequencer)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await _until(lambda: len(leadership.terms) == 1 and loop.leading.is_set())
    leadership.free = False
    leadership.terms[0].lost_hold = True
    await _until(lambda: not loop.leading.is_set())
    assert leadership.terms[0].released
    sequencer.staged = 5
    leadership.free = True
    await _until(lambda: sequencer.sequenced == 5)
    stop.set()
    await task
    assert len(leadership.terms) == 2
    assert sequencer.keys_recorded == 2  # keys recorded at each takeover


async def test_a_fenced_out_writer_releases_its_hold_and_takes_over_afresh_next_time() -> None:
    """A leader whose hold went without it noticing finds a newer epoch at its next batch: it
    stops appending, releases the hold, and on its next term takes over with a new epoch."""
    leadership, sequencer = Leadership(free=True), Sequencer()
    loop = _loop(leadership, sequencer)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await _until(lambda: sequencer.epochs == 1)
    sequencer.fenced = True
    await _until(lambda: len(leadership.terms) >= 2 and sequencer.epochs >= 2)
    assert leadership.terms[0].released
    sequencer.staged = 5
    await _until(lambda: sequencer.sequenced == 5)
    stop.set()
    await task


async def test_the_last_words_sequence_what_was_staged_up_to_the_stop() -> None:
    """Events staged after the leader's last batch (the outbox relay's final pass, which the
    process stops before this writer) are sequenced and signed before the writer stops."""
    leadership, sequencer = Leadership(free=True), Sequencer(staged=25)
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(leadership, sequencer).run(stop))
    await _until(lambda: sequencer.sequenced == 25)
    sequencer.staged += 7
    stop.set()
    await task
    assert (sequencer.sequenced, sequencer.published[-1]) == (32, 32)


async def test_a_writer_that_stops_without_leading_says_the_last_words_if_nobody_leads() -> None:
    """Another worker led and has stopped; this one, stopping after it, takes the lead once
    for its last words (what its own relay staged at its stop), then lets it go."""
    leadership, sequencer = Leadership(free=False), Sequencer(staged=5)
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(leadership, sequencer).run(stop))
    await _until(lambda: leadership.asked >= 1)
    leadership.free = True
    stop.set()
    await task
    assert (sequencer.sequenced, sequencer.published, sequencer.keys_recorded) == (5, [5], 1)
    assert [term.released for term in leadership.terms] == [True]
