"""The ledger writer: one leader sequences staged events and publishes signed checkpoints.

Leadership (a Postgres advisory lock in production, services/common/leadership.py) goes to one
process of the whole axis at a time, worker or replica: the others wait until the leader's hold
goes away, then one takes over from the state in the database. The writer fences itself besides
(Sequencer.take_over): a leader that lost its hold without noticing yet cannot append beside its
successor, because its next batch finds a newer epoch and raises FencedOutError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import asyncpg
import structlog

from docaxis_client.ledger.note import NoteSigner
from services.common.periodic import pause
from services.common.postgres import TRANSIENT_ERRORS
from services.ledger.service_layer.ports import FencedOutError, Leadership, LeaderTerm, Sequencer

log = structlog.get_logger(__name__)

_TRANSIENT: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
# What keeps the last words of a writer that did not lead from being said: the next leader
# sequences what is left.
_UNSAID: tuple[type[BaseException], ...] = (FencedOutError, *_TRANSIENT)


class LedgerWriterLoop:
    def __init__(
        self,
        leadership: Leadership,
        writer: Sequencer,
        signers: Sequence[NoteSigner],
        *,
        batch_size: int = 1000,
        max_batch_size: int = 8192,
        idle_wait_s: float = 0.1,
        checkpoint_interval_s: float = 1.0,
        on_leadership: Callable[[bool], None] | None = None,
    ) -> None:
        self._leadership = leadership
        self._on_leadership = on_leadership
        self._writer = writer
        self._signers = list(signers)
        self._batch_size = batch_size
        self._max_batch_size = max(batch_size, max_batch_size)
        self._idle_wait_s = idle_wait_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Sequences while this process leads, until `stop`; then, leading or not, its last
        words (_last_words)."""
        said = False
        while not stop.is_set():
            term: LeaderTerm | None = None
            try:
                term = await self._leadership.try_lead()
                if term is not None:
                    self._leads(True)
                    said = await self._lead(term, stop)
                else:
                    await pause(stop, 1.0)  # another writer leads: stand by
            except FencedOutError as exc:
                log.warning("ledger_writer_fenced_out", error=str(exc))
            except _TRANSIENT as exc:
                log.warning("ledger_writer_failed", error=repr(exc))
                await pause(stop, 1.0)
            finally:
                if term is not None:
                    await term.release()
                if self.leading.is_set():
                    self._leads(False)
        if not said:
            await self._last_words_unled()

    async def _last_words_unled(self) -> None:
        """A process that stops without leading may hold the last events staged: with several
        workers, the leader may have stopped first (the first worker stops the others after
        itself) and another worker's outbox relay staged its final pass after that. It leads
        once more if nobody else does, for its last words; otherwise the leader takes them."""
        try:
            term = await self._leadership.try_lead()
            if term is None:
                return
            try:
                await self._take_over()
                await self._last_words(term)
            finally:
                await term.release()
        except _UNSAID as exc:
            log.warning("ledger_last_words_failed", error=repr(exc))

    def _leads(self, leading: bool) -> None:
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        log.info("ledger_leader_acquired" if leading else "ledger_leader_released")
        if self._on_leadership is not None:
            self._on_leadership(leading)

    async def _lead(self, term: LeaderTerm, stop: asyncio.Event) -> bool:
        """Sequences until `stop` (True, once its last words are said) or the lock is lost."""
        await self._take_over()
        last_checkpoint = 0.0
        limit = self._batch_size
        while not stop.is_set():
            if term.lost():
                return False  # lost the lock with its session: stand by again
            sequenced = await self._writer.sequence_batch(limit)
            # Small batches keep latency low when quiet; a backlog grows them, because each
            # commit's fixed cost then dominates (measured: 1000 -> ~12k/s, 8000 -> ~20k/s).
            full = sequenced == limit
            limit = min(limit * 2, self._max_batch_size) if full else self._batch_size
            now = time.monotonic()
            if now - last_checkpoint >= self._checkpoint_interval_s:
                published = await self._writer.publish_checkpoint(self._signers)
                if published is not None:
                    log.debug("checkpoint_published", size=published.size)
                last_checkpoint = now
            if not full:
                await pause(stop, self._idle_wait_s)
        await self._last_words(term)
        return True

    async def _take_over(self) -> None:
        """What a writer does first on taking the lead: fences off the previous one and
        registers its signing keys."""
        epoch = await self._writer.take_over()
        log.info("ledger_writer_took_over", epoch=epoch)
        await self._writer.record_keys(self._signers)

    async def _last_words(self, term: LeaderTerm) -> None:
        """What was staged before the stop sequenced and made provable: the process stops this
        writer after its other jobs (serve), so the outbox relay's final pass is in it."""
        if term.lost():
            return
        while await self._writer.sequence_batch(self._max_batch_size) == self._max_batch_size:
            if term.lost():
                return
        await self._writer.publish_checkpoint(self._signers)
