"""Federation, the sending side: store and forward to one peer hub.

Copies for recipients the peer serves (or forwards further), and the statuses and recalls going
back along the hops, wait in the peer's queue like an agency's mail. The forwarder takes them
in batches, claims them as a push would (so a copy handed over `max_pushes` times without being
stored there is dead-lettered, resendable by an administrator), hands them over in order and
settles each one once the peer answered: a copy is then acknowledged here with the peer's signed
receipt. A peer that cannot be reached gets back-off with jitter and, after several failures in
a row, an open circuit: nothing is taken from its queue until a probe finds it answering again.

Every hand-over that fails and goes again counts against the push limit: the peer could not be
reached (the whole batch, held through the back-off or the open circuit), asked for an item
again, or answered with a receipt that does not prove it (PEER_RECEIPT_INVALID). Each such copy
remembers why (FederationStore.handover_failed), so that the dead letter the limit makes of it
says what to fix. A refusal with a retry rule does not count (its copy waits for requeue_refused
with its push given back) and a final one dead-letters with the peer's reason: they need no
memory.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from services.common.errors import UnavailableError
from services.common.metrics import PeerSnapshot
from services.common.periodic import pause
from services.exchange.domain.delivery import HandoverFailure, handover_failure
from services.exchange.domain.model import Submission
from services.exchange.domain.peering import (
    DEFAULT_REFUSAL_WINDOW_S,
    MAX_BACKOFF_S,
    CircuitBreaker,
    CircuitState,
    backoff_s,
    outgoing_trace,
    refusal_retry_at,
)
from services.exchange.service_layer.federation_ports import (
    FederationStore,
    HopOutcome,
    OutboundDocument,
    OutboundItem,
    OutboundRecall,
    OutboundStatus,
    PeerTransport,
    RetryRule,
)
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.hop_receipts import HopReceipts, PeerReceiptInvalidError
from services.exchange.service_layer.inbox_ports import AgencyInboxes, InboxMessage
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import StatusNoticeItem
from services.exchange.service_layer.peers import THROUGHPUT_WINDOW, PeerReport, PeerStates
from services.exchange.service_layer.ports import DeadLetter, PushItem

log = structlog.get_logger(__name__)

BATCH = 100
# An idle peer is probed this often, so that its last contact and circuit stay true for the
# operator (and a peer that went away is found before the next document needs it).
IDLE_PROBE_S = 30.0
# The routing key (and inbox queue suffix) of what waits for a peer hub (adapters/postgres.py).
PEER_QUEUE_PREFIX = "hub."


def peer_queue(hub_code: str) -> str:
    return PEER_QUEUE_PREFIX + hub_code


@dataclass(slots=True)
class PeerStats:
    """What an operator sees of a peer (docaxis peers, the console, the metrics)."""

    forwarded: int = 0
    refused: int = 0
    failures: int = 0
    # Documents the peer stored but answered with a receipt that did not verify (handed over
    # again later: PeerReceiptInvalidError).
    receipts_invalid: int = 0
    last_contact: float | None = None  # time.time() of the last answer
    last_failure: float | None = None  # time.time() of the last failed hand-over or probe
    last_error: str = ""
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    # (time.monotonic(), items handed over) of the recent batches, for the throughput.
    recent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)

    def handed_over(self, items: int, now: float) -> None:
        self.forwarded += items
        self.recent.append((now, items))

    def per_minute(self, now: float) -> float:
        window = THROUGHPUT_WINDOW.total_seconds()
        while self.recent and self.recent[0][0] < now - window:
            self.recent.popleft()
        return sum(n for _, n in self.recent) / (window / 60)


class Forwarder:
    def __init__(
        self,
        own_hub: str,
        transport: PeerTransport,
        inboxes: AgencyInboxes,
        exchange: ExchangeHandlers,
        lifecycle: LifecycleHandlers,
        store: FederationStore,
        *,
        failures_to_open: int = 5,
        max_backoff_s: float = MAX_BACKOFF_S,
        rng: random.Random | None = None,
        reports: PeerStates | None = None,
        kind: str = "docaxis",
        address: str = "",
        idle_probe_s: float = IDLE_PROBE_S,
        refusal_window_s: float = DEFAULT_REFUSAL_WINDOW_S,
        receipts: HopReceipts | None = None,
    ) -> None:
        """`refusal_window_s`: how long after its acceptance a copy the peer refuses for a
        reason that may pass (peering.PASSING_REFUSALS) is still handed over again. `receipts`
        checks the peer's signed receipt of each document before its hand-over counts as done;
        None for a peer whose receipts are not docaxis ones (a national axis)."""
        self._own_hub = own_hub
        self._transport = transport
        self._inboxes = inboxes
        self._exchange = exchange
        self._lifecycle = lifecycle
        self._store = store
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.stats = PeerStats(breaker=CircuitBreaker(failures_to_open, max_backoff_s))
        self._reports = reports
        self._kind = kind
        self._address = address
        self._idle_probe_s = idle_probe_s
        self._receipts = receipts
        # Batches in a row in which the peer asked for items again (retryable refusals).
        self._deferred_batches = 0
        # Set by run(): the back-off pauses end early at shutdown.
        self._stop = asyncio.Event()
        # Messages to hand over again, in order, before any other (forward_batch).
        self._again: list[InboxMessage] = []
        self._refusal_window = dt.timedelta(seconds=refusal_window_s)
        # When (monotonic) to queue again the copies the peer refused for now whose time came:
        # at once on start (a previous forwarder may have left some).
        self._requeue_at = 0.0

    @property
    def hub_code(self) -> str:
        return self._transport.hub_code

    @property
    def held(self) -> Sequence[InboxMessage]:
        """The messages the peer asked for again, held here unacknowledged: the next batch."""
        return tuple(self._again)

    def snapshot(self) -> PeerSnapshot:
        stats = self.stats
        return PeerSnapshot(
            hub=self.hub_code,
            circuit=stats.breaker.state.value,
            forwarded=stats.forwarded,
            refused=stats.refused,
            failures=stats.failures,
            last_contact=stats.last_contact,
            consecutive_failures=stats.breaker.failures,
            receipts_invalid=stats.receipts_invalid,
        )

    def report(self) -> PeerReport:
        """The forwarder's view of its peer now (docaxis peers, the console)."""
        stats = self.stats
        return PeerReport(
            hub=self.hub_code,
            kind=self._kind,
            address=self._address,
            circuit=stats.breaker.state,
            consecutive_failures=stats.breaker.failures,
            last_contact=_utc(stats.last_contact),
            last_failure_at=_utc(stats.last_failure),
            last_error=stats.last_error,
            forwarded=stats.forwarded,
            refused=stats.refused,
            failures=stats.failures,
            forwarded_per_minute=stats.per_minute(time.monotonic()),
            reported_at=dt.datetime.now(dt.UTC),
        )

    async def write_report(self) -> None:
        """Stores the report for every process of the hub to answer from (after each batch,
        probe or failure: one small write per batch of up to BATCH items). A database that does
        not answer costs the report, never the forwarding."""
        if self._reports is None:
            return
        try:
            await self._reports.record(self.report())
        except Exception as exc:  # noqa: BLE001 - a lost report must not stop forwarding
            log.warning("peer_report_not_written", hub=self.hub_code, error=str(exc))

    async def resume(self) -> None:
        """Takes the circuit over from the peer's last stored report (exchange.peer_state: it
        survives a restart, and the replica elected to forward after another reads it). A
        database that does not answer leaves the circuit closed: the first failures open it."""
        if self._reports is None:
            return
        try:
            reports = await self._reports.reports()
        except Exception as exc:  # noqa: BLE001 - forwarding goes on with a closed circuit
            log.warning("peer_state_not_read", hub=self.hub_code, error=str(exc))
            return
        for report in reports:
            if report.hub != self.hub_code:
                continue
            since = report.last_failure_at or report.reported_at
            elapsed = (dt.datetime.now(dt.UTC) - since).total_seconds()
            self.stats.breaker.resume(
                report.circuit, report.consecutive_failures, elapsed, time.monotonic()
            )
            self.stats.last_contact = _unix(report.last_contact)
            self.stats.last_failure = _unix(report.last_failure_at)
            self.stats.last_error = report.last_error
            if report.circuit is not CircuitState.CLOSED:
                log.info(
                    "peer_circuit_resumed_open",
                    hub=self.hub_code,
                    failures=report.consecutive_failures,
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Forwards until `stop` is set; a broker failure ends the run (the job restarts it)."""
        self._stop = stop
        await self.resume()
        await self.write_report()
        async with self._inboxes.consume(peer_queue(self.hub_code), prefetch=BATCH) as inbox:
            waiting: asyncio.Future[list[InboxMessage]] | None = None
            try:
                while not stop.is_set():
                    if self.stats.breaker.state is not CircuitState.CLOSED:
                        await self._probe(stop)
                        await self.write_report()
                        continue
                    if self._again:
                        again, self._again = self._again, []
                        await self.forward_batch(again)
                        await self.write_report()
                        continue
                    if time.monotonic() >= self._requeue_at:
                        await self._requeue_refused()
                    # The same wait goes on across idle probes: cancelling it could drop
                    # messages it already took from the queue.
                    waiting = waiting or asyncio.ensure_future(inbox.batch(BATCH))
                    until_requeue = max(0.0, self._requeue_at - time.monotonic())
                    if not await _ready(waiting, stop, min(self._idle_probe_s, until_requeue)):
                        if stop.is_set():
                            return
                        if time.monotonic() < self._requeue_at:
                            await self._idle_probe()
                        continue
                    batch, waiting = waiting.result(), None
                    if not batch:
                        return
                    await self.forward_batch(batch)
                    await self.write_report()
            finally:
                if waiting is not None:
                    waiting.cancel()
                await self.write_report()

    async def _requeue_refused(self) -> None:
        """Queues again the copies the peer refused for now whose time has come, and sets when
        to look next (the next one's time, or an idle probe's interval from now)."""
        next_at = await self._store.requeue_refused(self.hub_code, BATCH)
        wait = self._idle_probe_s
        if next_at is not None:
            wait = min(wait, max(0.0, (next_at - dt.datetime.now(dt.UTC)).total_seconds()))
        self._requeue_at = time.monotonic() + wait

    def _retry_rule(self, reason: str) -> RetryRule:
        def retry_at(
            accepted_at: dt.datetime, refusals: int, now: dt.datetime
        ) -> dt.datetime | None:
            return refusal_retry_at(
                reason,
                accepted_at=accepted_at,
                refusals=refusals,
                now=now,
                window=self._refusal_window,
                rng=self._rng,
                cap_s=self.stats.breaker.max_backoff_s,
            )

        return retry_at

    async def _idle_probe(self) -> None:
        """Nothing to hand over for a while: is the peer still there?"""
        if await self._transport.probe():
            self.stats.last_contact = time.time()
            self.stats.breaker.succeeded()
        else:
            self._failed("the peer did not answer its health probe")
            self.stats.breaker.failed(time.monotonic(), self._rng)
            log.warning("peer_unreachable", hub=self.hub_code, error=self.stats.last_error)
        await self.write_report()

    def _failed(self, error: str) -> None:
        self.stats.failures += 1
        self.stats.last_failure = time.time()
        self.stats.last_error = error

    async def _probe(self, stop: asyncio.Event) -> None:
        breaker = self.stats.breaker
        wait = max(0.0, breaker.retry_at - time.monotonic())
        if wait:
            await pause(stop, wait)
            return
        if not breaker.may_probe(time.monotonic()):
            return
        if await self._transport.probe():
            log.info("peer_circuit_closed", hub=self.hub_code)
            self.stats.last_contact = time.time()
            breaker.succeeded()
        else:
            self.stats.last_failure = time.time()
            self.stats.last_error = "the peer did not answer its health probe"
            breaker.failed(time.monotonic(), self._rng)

    async def forward_batch(self, batch: Sequence[InboxMessage]) -> None:
        claimed = await self._claim(batch)
        if not claimed:
            return
        items = [item for _, item in claimed]
        try:
            outcomes = await self._transport.forward(items)
        except UnavailableError as exc:
            # Kept (unacknowledged) to be handed over again before anything newer: requeued,
            # they would come back behind what the broker has pushed here meanwhile.
            self._again = [message for message, _ in claimed]
            self._failed(str(exc))
            await self._remember_failures(
                {
                    item.item_id: handover_failure(exc.reason, str(exc))
                    for _, item in claimed
                    if isinstance(item, OutboundDocument)
                }
            )
            wait = self.stats.breaker.failed(time.monotonic(), self._rng)
            log.warning(
                "peer_unreachable",
                hub=self.hub_code,
                error=str(exc),
                circuit=self.stats.breaker.state.value,
                retry_in_s=round(wait, 2),
            )
            if self.stats.breaker.state is CircuitState.CLOSED:
                await self.write_report()
                await pause(self._stop, wait)
            return
        self.stats.breaker.succeeded()
        self.stats.last_contact = time.time()
        self.stats.last_error = ""
        # The copies, (origin document, recipient), with an item to hand over again: their later
        # items of this batch are handed over again with it, whatever the peer answered (it
        # answers a repeat as the first time), so that none overtakes it. The messages stay
        # here, unacknowledged, and go first in the next batch (rejected into the queue, they
        # would come back behind those of the same copy the broker has pushed here meanwhile).
        again: set[tuple[str, str]] = set()
        # The documents whose own hand-over failed and goes again (not those only held behind
        # an earlier item of their copy): each copy remembers why.
        failed: dict[str, HandoverFailure] = {}
        for (message, item), answered in zip(claimed, outcomes, strict=True):
            outcome = self._receipt_checked(item, answered)
            key = (item.origin_document_uuid, item.recipient)
            goes_again = outcome.error if outcome.retryable else None
            if goes_again is not None and isinstance(item, OutboundDocument):
                failed[item.item_id] = handover_failure(goes_again.reason, str(goes_again))
            if key in again or goes_again is not None:
                again.add(key)
                self._again.append(message)
                continue
            if outcome.error is not None:
                self.stats.refused += 1
                if isinstance(item, OutboundDocument):
                    reason = outcome.error.reason
                    retry_at = await self._store.refused(
                        item.item_id, self.hub_code, reason, self._retry_rule(reason)
                    )
                    if retry_at is not None:
                        # Handed over again at that time (requeue_refused), not at once.
                        wait = (retry_at - dt.datetime.now(dt.UTC)).total_seconds()
                        self._requeue_at = min(self._requeue_at, time.monotonic() + wait)
                else:
                    # A status or recall the next hub cannot place: kept here as delivered to
                    # the hop (its notice acknowledged), the refusal logged.
                    await self._settle_notice(message)
                log.warning(
                    "forwarded_item_refused_by_peer",
                    hub=self.hub_code,
                    item_id=item.item_id,
                    reason=outcome.error.reason,
                    error=str(outcome.error),
                )
                await message.message.ack()
                continue
            self.stats.handed_over(1, time.monotonic())
            if isinstance(item, OutboundDocument):
                await self._store.handed_over(item.item_id, self.hub_code, outcome.receipt)
            else:
                await self._settle_notice(message)
            await message.message.ack()
        await self._remember_failures(failed)
        await self._back_off(requeued=bool(again))

    async def _remember_failures(self, failures: dict[str, HandoverFailure]) -> None:
        """Stores why these copies' hand-overs failed, before they go again: the dead letter
        the push limit may make of one says so (delivery.push). A failed hand-over only (one
        write per batch that had one); a database that does not answer costs the cause, never
        the forwarding (it is in the log and the peer's last_error)."""
        if not failures:
            return
        try:
            await self._store.handover_failed(failures)
        except Exception as exc:  # noqa: BLE001 - a lost cause must not stop forwarding
            log.warning("handover_failure_not_written", hub=self.hub_code, error=str(exc))

    async def _back_off(self, *, requeued: bool) -> None:
        """After a batch whose peer asked for some items again: a pause growing with every such
        batch in a row (jittered), so that they are not handed over again at once, in a spin."""
        if not requeued:
            self._deferred_batches = 0
            return
        self._deferred_batches += 1
        wait = backoff_s(self._deferred_batches, self._rng, cap=self.stats.breaker.max_backoff_s)
        log.info(
            "forwarded_items_deferred",
            hub=self.hub_code,
            batches_in_a_row=self._deferred_batches,
            retry_in_s=round(wait, 2),
        )
        await self.write_report()
        await pause(self._stop, wait)

    def _receipt_checked(self, item: OutboundItem, outcome: HopOutcome) -> HopOutcome:
        """The peer's answer, or, for a document it stored whose signed receipt does not prove
        the hand-over, a retryable refusal (logged and counted): the hand-over is not done, the
        copy is handed over again like an item the peer asked for again."""
        if self._receipts is None or outcome.error is not None:
            return outcome
        if not isinstance(item, OutboundDocument):
            return outcome
        try:
            self._receipts.check(self.hub_code, item, outcome.receipt)
        except PeerReceiptInvalidError as exc:
            self.stats.receipts_invalid += 1
            self._failed(f"{exc.reason}: {exc}")
            log.warning(
                "hop_receipt_refused",
                hub=self.hub_code,
                item_id=item.item_id,
                origin=item.origin_document_uuid,
                recipient=item.recipient,
                reason=exc.reason,
                error=str(exc),
            )
            return HopOutcome(item.item_id, error=exc, retryable=True)
        return outcome

    async def _settle_notice(self, message: InboxMessage) -> None:
        if message.notice_id:
            await self._lifecycle.acknowledge_notice(message.addressee, message.notice_id)

    async def _claim(
        self, batch: Sequence[InboxMessage]
    ) -> list[tuple[InboxMessage, OutboundItem]]:
        """The batch's items to hand over, oldest first; the rest settled with the broker as the
        Receive streams settle them (acked when there is nothing to hand over, rejected into the
        dead-letter queue when the copy was just dead-lettered)."""
        seen: set[str] = set()
        fresh: list[InboxMessage] = []
        for message in batch:
            if message.item_id in seen:
                await message.message.ack()
            else:
                seen.add(message.item_id)
                fresh.append(message)
        copies = [m for m in fresh if not m.notice_id]
        notices = [m for m in fresh if m.notice_id]
        found: dict[int, OutboundItem] = {}
        if copies:
            claims = await self._exchange.begin_pushes(
                [(m.delivery_id, m.addressee) for m in copies],
                {m.delivery_id: m.published_at for m in copies if m.published_at is not None},
            )
            pushed = [c for c in claims if isinstance(c, PushItem)]
            hops = await self._store.hop_info([c.document_uuid for c in pushed])
            for message, claim in zip(copies, claims, strict=True):
                if claim is None:
                    await message.message.ack()
                elif isinstance(claim, DeadLetter):
                    await message.message.reject(requeue=False)
                else:
                    origin, trace = hops[claim.document_uuid]
                    found[id(message)] = OutboundDocument(
                        item_id=claim.delivery_id,
                        origin_document_uuid=origin,
                        source_document_uuid=claim.document_uuid,
                        recipient=message.addressee,
                        requested_recipient=claim.requested_recipient,
                        submission=Submission(
                            consignment_id=f"hub:{origin}",
                            header=claim.header,
                            attachments=claim.attachments,
                            signatures=claim.signatures,
                            envelope=claim.envelope,
                        ),
                        trace=tuple(outgoing_trace(trace, self._own_hub, claim.submitted_at)),
                    )
        if notices:
            items = await self._lifecycle.begin_notices(
                [(m.notice_id, m.addressee) for m in notices]
            )
            hops = await self._store.hop_info(list({i.document_uuid for i in items if i}))
            for message, notice in zip(notices, items, strict=True):
                if notice is None:
                    await message.message.ack()
                    continue
                origin, _trace = hops[notice.document_uuid]
                if isinstance(notice, StatusNoticeItem):
                    found[id(message)] = OutboundStatus(
                        notice.notice_id, origin, notice.recipient, notice.entry
                    )
                else:
                    found[id(message)] = OutboundRecall(
                        notice.notice_id,
                        origin,
                        message.addressee,
                        notice.sender,
                        notice.reason,
                        notice.requested_at,
                    )
        return [(m, found[id(m)]) for m in fresh if id(m) in found]


async def _ready(
    waiting: asyncio.Future[list[InboxMessage]], stop: asyncio.Event, within_s: float
) -> bool:
    """Whether the batch came within `within_s` (False on stop or time-out)."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            (waiting, stopped), timeout=within_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped.cancel()
    return waiting.done() and not stop.is_set()


def _unix(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _utc(unix_time: float | None) -> dt.datetime | None:
    return None if unix_time is None else dt.datetime.fromtimestamp(unix_time, dt.UTC)
