"""The services' Prometheus metrics: one registry per process, counted where things happen, plus
gauges read from the database at scrape time (queue depths, ledger lag).

Served by MetricsService.GetMetrics (metrics_api.py); the gateway appends them to its /metrics.
With several worker processes (DOCAXIS_WORKERS) one scrape shows the sum over all of them
(metrics_workers.py).
Every family is `docaxis_*` and none `docaxis_gateway_*`, which the gateway's own metrics use, so
the two expositions concatenate without a name collision.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from services.common.clock import Clock, utc_now
from services.common.errors import UnavailableError
from services.common.metrics_workers import read_worker_metrics, sum_expositions

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_S = TypeVar("_S")

# From a recipient that is online (milliseconds) to one that reconnects after a lunch break.
LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
)
# A scrape answers within the gateway's deadline even when the database hangs: the gauges of a
# probe that did not answer in time are left out, and its `docaxis_metrics_probe_up` says 0.
PROBE_TIMEOUT_S = 1.5
# Agencies named in docaxis_limit_refusals before the rest are counted as "other".
LIMITED_AGENCY_LABELS = 50
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST


class SubmissionOutcome(enum.StrEnum):
    ACCEPTED = "accepted"  # a new document, stored and routed
    REPLAYED = "replayed"  # a repeated consignment, answered with its first receipt


class DeliveryMode(enum.StrEnum):
    PUSH = "push"  # on the Receive stream
    PULL = "pull"  # by Fetch


# The fates of a status notice (services/exchange/domain/notices.py NoticeFate).
NOTICE_FATES = ("queued", "coalesced", "suppressed")


class AcknowledgedKind(enum.StrEnum):
    DELIVERY = "delivery"
    NOTICE = "notice"


class ForkSource(enum.StrEnum):
    """Who produced split-view evidence against this log."""

    WITNESS = "witness"  # refused a checkpoint as inconsistent with one it cosigned
    CLIENT = "client"  # a DMS client's monitor (LedgerService.ReportFork)


@dataclass(frozen=True, slots=True)
class AgencyQueue:
    """What waits for one recipient agency's acknowledgement: deliveries and notices."""

    agency: str
    depth: int
    oldest: dt.datetime


@dataclass(frozen=True, slots=True)
class LedgerBacklog:
    pending_entries: int
    # When the oldest event not yet sequenced was staged; None when none waits.
    oldest_pending: dt.datetime | None
    tree_size: int
    # When the latest checkpoint was signed; None before the first.
    last_checkpoint: dt.datetime | None


class QueueProbe(Protocol):
    async def queues(self) -> Sequence[AgencyQueue]:
        """Every agency with something unacknowledged (cheap indexed reads, called per scrape);
        UnavailableError when the database cannot say."""
        ...


class LedgerProbe(Protocol):
    async def backlog(self) -> LedgerBacklog:
        """The sequencer's backlog and the log's size (cheap reads, called per scrape);
        UnavailableError when the database cannot say."""
        ...


def _age_s(now: dt.datetime, then: dt.datetime) -> float:
    # Timestamps come from the database's clock and this process's: never report a negative age.
    return max(0.0, (now - then).total_seconds())


class _ReadAtScrape(Collector, Generic[_S]):
    """Families built from snapshots `read` returns at each scrape (describe: with none)."""

    def __init__(self, read: Callable[[], Sequence[_S]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(()))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self._read()))

    @staticmethod
    def _families(snapshots: Sequence[_S]) -> list[Metric]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PeerSnapshot:
    """A federation peer as its forwarder sees it now."""

    hub: str
    circuit: str  # closed | open | half_open
    forwarded: int
    refused: int
    failures: int
    last_contact: float | None  # Unix time of the peer's last answer
    # Failures in a row (hand-overs, or probes while open): the forwarder's back-off grows with it.
    consecutive_failures: int = 0
    # Documents the peer stored whose signed receipt did not verify (handed over again).
    receipts_invalid: int = 0


PEER_CIRCUIT_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True, slots=True)
class PolledPeerSnapshot:
    """A peer this hub polls for what it holds (a national axis's mailbox: it does not push),
    as its poller and the forwarder's transport to it see it now."""

    hub: str
    polls: int
    # Mailbox items fetched, by (messagetype, outcome): stored, refused (for good), deferred.
    fetched: Mapping[tuple[str, str], int]
    # Calls that failed, by (direction: poll | forward, kind: the docaxis error reason).
    errors: Mapping[tuple[str, str], int]
    # The pause before the next poll (0 while items keep coming); None where no poller runs.
    backoff_s: float | None
    last_success: float | None  # Unix time of the last poll the peer answered in full


class _PolledPeerGauges(_ReadAtScrape[PolledPeerSnapshot]):
    """Per-peer series of the pollers (docaxis_peer_polls, _fetched, _errors, _poll_*)."""

    @staticmethod
    def _families(peers: Sequence[PolledPeerSnapshot]) -> list[Metric]:
        polls = CounterMetricFamily(
            "docaxis_peer_polls",
            "Walks of a polled peer's mailboxes (a national axis), failed ones included.",
            labels=["hub"],
        )
        fetched = CounterMetricFamily(
            "docaxis_peer_fetched",
            "Items fetched from a polled peer's mailbox, by messagetype (edoc, status) and "
            "outcome: stored (acknowledged done), refused (for good: acknowledged fail) or "
            "deferred (left there, fetched again later).",
            labels=["hub", "messagetype", "outcome"],
        )
        errors = CounterMetricFamily(
            "docaxis_peer_errors",
            "Calls to a polled peer that failed, by direction (poll: its mailbox; forward: "
            "uploads) and kind (the docaxis reason: UNAVAILABLE and UNAUTHENTICATED are retried, "
            "the others refuse the item for good; INTERNAL: a fault on this side).",
            labels=["hub", "direction", "kind"],
        )
        backoff = GaugeMetricFamily(
            "docaxis_peer_poll_backoff_seconds",
            "The poller's pause before its next poll of the peer: 0 while items keep coming, "
            "growing while the mailbox is empty or the peer fails.",
            labels=["hub"],
        )
        success = GaugeMetricFamily(
            "docaxis_peer_poll_last_success_timestamp_seconds",
            "When a poll of the peer last succeeded, as a Unix time.",
            labels=["hub"],
        )
        for peer in peers:
            polls.add_metric([peer.hub], float(peer.polls))
            for (messagetype, outcome), count in sorted(peer.fetched.items()):
                fetched.add_metric([peer.hub, messagetype, outcome], float(count))
            for (direction, kind), count in sorted(peer.errors.items()):
                errors.add_metric([peer.hub, direction, kind], float(count))
            if peer.backoff_s is not None:
                backoff.add_metric([peer.hub], peer.backoff_s)
            if peer.last_success is not None:
                success.add_metric([peer.hub], peer.last_success)
        return [polls, fetched, errors, backoff, success]


class _PeerGauges(_ReadAtScrape[PeerSnapshot]):
    """Per-peer series of the federation forwarders, read at each scrape."""

    @staticmethod
    def _families(peers: Sequence[PeerSnapshot]) -> list[Metric]:
        circuit = GaugeMetricFamily(
            "docaxis_peer_circuit_state",
            "Each peer hub's circuit breaker: 1 for its current state (open: nothing is taken "
            "from its queue until a probe finds it answering).",
            labels=["hub", "state"],
        )
        handed = CounterMetricFamily(
            "docaxis_peer_items",
            "Items (documents, statuses, recalls) handed over to a peer hub, by outcome: "
            "forwarded (stored there), refused (for good) or receipt_invalid (stored there, but "
            "its signed receipt did not verify: handed over again).",
            labels=["hub", "outcome"],
        )
        failures = CounterMetricFamily(
            "docaxis_peer_failures",
            "Hand-overs that did not reach the peer hub (retried with back-off).",
            labels=["hub"],
        )
        contact = GaugeMetricFamily(
            "docaxis_peer_last_contact_timestamp_seconds",
            "When the peer hub last answered, as a Unix time.",
            labels=["hub"],
        )
        in_a_row = GaugeMetricFamily(
            "docaxis_peer_consecutive_failures",
            "Hand-overs to the peer hub (or probes while its circuit is open) that failed in a "
            "row: the forwarder's back-off grows with it; 0 once the peer answers.",
            labels=["hub"],
        )
        for peer in peers:
            for state in PEER_CIRCUIT_STATES:
                circuit.add_metric([peer.hub, state], 1.0 if peer.circuit == state else 0.0)
            handed.add_metric([peer.hub, "forwarded"], float(peer.forwarded))
            handed.add_metric([peer.hub, "refused"], float(peer.refused))
            handed.add_metric([peer.hub, "receipt_invalid"], float(peer.receipts_invalid))
            failures.add_metric([peer.hub], float(peer.failures))
            in_a_row.add_metric([peer.hub], float(peer.consecutive_failures))
            if peer.last_contact is not None:
                contact.add_metric([peer.hub], peer.last_contact)
        return [circuit, handed, failures, contact, in_a_row]


class _ScrapeGauges(Collector):
    """Gauges of the latest probe snapshots: a probe that failed contributes no samples at all,
    rather than the stale values a plain Gauge would keep showing."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.queues: Sequence[AgencyQueue] | None = None
        self.ledger: LedgerBacklog | None = None
        self.up: dict[str, bool] = {}

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self._clock()))

    def _families(self, now: dt.datetime | None = None) -> list[Metric]:
        up = GaugeMetricFamily(
            "docaxis_metrics_probe_up",
            "1 when the probe's database reads answered at the last scrape, 0 when they did not.",
            labels=["probe"],
        )
        depth = GaugeMetricFamily(
            "docaxis_queue_depth",
            "Deliveries and notices waiting for the recipient agency's acknowledgement.",
            labels=["agency"],
        )
        oldest = GaugeMetricFamily(
            "docaxis_queue_oldest_age_seconds",
            "Age of the oldest item waiting for the recipient agency's acknowledgement.",
            labels=["agency"],
        )
        pending = GaugeMetricFamily(
            "docaxis_ledger_pending_entries", "Events staged for the ledger, not yet sequenced."
        )
        lag = GaugeMetricFamily(
            "docaxis_ledger_lag_seconds",
            "Age of the oldest event not yet sequenced into the ledger (0 when none waits).",
        )
        size = GaugeMetricFamily("docaxis_ledger_tree_size", "Entries in the Merkle log.")
        checkpoint = GaugeMetricFamily(
            "docaxis_ledger_checkpoint_age_seconds", "Age of the latest signed checkpoint."
        )
        families: list[Metric] = [up, depth, oldest, pending, lag, size, checkpoint]
        if now is None:  # describe(): names only
            return families
        for probe, answered in sorted(self.up.items()):
            up.add_metric([probe], 1.0 if answered else 0.0)
        for queue in self.queues or ():
            depth.add_metric([queue.agency], float(queue.depth))
            oldest.add_metric([queue.agency], _age_s(now, queue.oldest))
        if self.ledger is not None:
            pending.add_metric([], float(self.ledger.pending_entries))
            waiting = self.ledger.oldest_pending
            lag.add_metric([], 0.0 if waiting is None else _age_s(now, waiting))
            size.add_metric([], float(self.ledger.tree_size))
            if self.ledger.last_checkpoint is not None:
                checkpoint.add_metric([], _age_s(now, self.ledger.last_checkpoint))
        return families


class _Registries(Collector):
    """Several registries' families as one collector."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            yield from registry.collect()


class AxisMetrics:
    """The process's metrics. Only what this process runs is counted or probed: the composition
    root attaches the probes of the components it serves."""

    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        # What this worker counts itself (its siblings read it: metrics_workers.py) ...
        self._own = CollectorRegistry()
        # ... and what the worker answering a scrape reads from the database, once for all.
        self._probed = CollectorRegistry()
        # Every family this process exposes, both parts (what dashboards and tests look up).
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Registries(self._own, self._probed))
        self._siblings: tuple[str, ...] = ()
        self._clock = clock
        self._probe_timeout_s = probe_timeout_s
        self._submissions = Counter(
            "docaxis_submissions",
            "Submit calls answered with a receipt: accepted (a new document) or replayed (a "
            "repeated consignment, answered with its first receipt).",
            ["outcome"],
            registry=self._own,
        )
        self._rejections = Counter(
            "docaxis_rejections",
            "RPCs that ended with a refusal, by method and google.rpc ErrorInfo reason.",
            ["method", "reason"],
            registry=self._own,
        )
        self._deliveries = Counter(
            "docaxis_deliveries",
            "Deliveries handed to the recipient's DMS (redeliveries included): push on the "
            "Receive stream, pull by Fetch.",
            ["mode"],
            registry=self._own,
        )
        self._acknowledgements = Counter(
            "docaxis_acknowledgements",
            "Deliveries and notices acknowledged by their recipient (repeats not counted).",
            ["kind"],
            registry=self._own,
        )
        self._notices = Counter(
            "docaxis_status_notices",
            "Status notices for senders, by fate: queued; coalesced (queued, replacing the "
            "copy's notice its sender had not been handed yet); suppressed (not queued: the "
            "sender already had DOCAXIS_MAX_PENDING_NOTICES waiting).",
            ["fate"],
            registry=self._own,
        )
        self._latency = Histogram(
            "docaxis_delivery_latency_seconds",
            "From a copy's acceptance to its first hand-over to the recipient's DMS.",
            buckets=LATENCY_BUCKETS_S,
            registry=self._own,
        )
        self._certificates = Gauge(
            "docaxis_certificate_expiry_timestamp_seconds",
            "When the services' own certificates expire (tls_server: gRPC; hub: receipts and "
            "calls between services), as a Unix time.",
            ["certificate"],
            registry=self._own,
        )
        self._forks = Counter(
            "docaxis_ledger_forks",
            "Split-view evidence against the ledger: a witness refused a checkpoint as "
            "inconsistent with one it had cosigned, or a client reported two checkpoints no "
            "consistency proof joins (LedgerService.ReportFork). Any increase needs an "
            "administrator.",
            ["source"],
            registry=self._own,
        )
        self._cosignatures = Counter(
            "docaxis_ledger_cosignatures",
            "Witness cosignatures collected for checkpoints, by witness name.",
            ["witness"],
            registry=self._own,
        )
        self._witness_failures = Counter(
            "docaxis_ledger_witness_failures",
            "add-checkpoint calls that brought no cosignature (unreachable, refused), by witness.",
            ["witness"],
            registry=self._own,
        )
        self._limited = Counter(
            "docaxis_limit_refusals",
            "Calls an abuse limit refused (services/common/limits.py), by limit (submit, other: "
            f"the rates; receive_streams) and agency; past {LIMITED_AGENCY_LABELS} agencies a "
            'process has refused, the others are counted as agency="other".',
            ["limit", "agency"],
            registry=self._own,
        )
        self._limited_agencies: set[str] = set()
        self._receive_streams = Gauge(
            "docaxis_receive_streams_open",
            "Receive and ReceiveStream streams open in this process, every agency together.",
            registry=self._own,
        )
        self._leaders = Gauge(
            "docaxis_leader",
            "1 while this process leads the job that runs once per axis (ledger_sequencer, "
            "outbox_relay, sweeps), 0 while it stands by; absent for jobs it does not run.",
            ["job"],
            registry=self._own,
        )
        for source in ForkSource:
            self._forks.labels(source.value)
        # Every known label value from the start: rate() needs the zero before the first event.
        for outcome in SubmissionOutcome:
            self._submissions.labels(outcome.value)
        for mode in DeliveryMode:
            self._deliveries.labels(mode.value)
        for kind in AcknowledgedKind:
            self._acknowledgements.labels(kind.value)
        for fate in NOTICE_FATES:
            self._notices.labels(fate)
        self._scraped = _ScrapeGauges(clock)
        self._probed.register(self._scraped)
        self._workers_answered = Gauge(
            "docaxis_metrics_workers_answered",
            "Worker processes (DOCAXIS_WORKERS) whose counters, histograms and gauges this "
            "exposition sums: all of them unless one did not answer the scrape in time.",
            registry=self._probed,
        )
        self._queue_probe: QueueProbe | None = None
        self._ledger_probe: LedgerProbe | None = None
        self._lock = asyncio.Lock()

    def submitted(self, outcome: SubmissionOutcome) -> None:
        self._submissions.labels(outcome.value).inc()

    def leadership(self, job: str, leading: bool) -> None:
        self._leaders.labels(job).set(1 if leading else 0)

    def rejected(self, method: str, reason: str) -> None:
        """`method` as gRPC names it ("/docaxis.exchange.v1.ExchangeService/Submit")."""
        self._rejections.labels(method.lstrip("/"), reason).inc()

    def limit_refused(self, limit: str, agency: str) -> None:
        """A call of `agency` refused by `limit`. The agency is a label while few are refused
        (the abusers); past LIMITED_AGENCY_LABELS, a refusal wave across the whole directory
        would make a series per agency, so the rest are counted together."""
        if agency not in self._limited_agencies:
            if len(self._limited_agencies) >= LIMITED_AGENCY_LABELS:
                agency = "other"
            else:
                self._limited_agencies.add(agency)
        self._limited.labels(limit, agency).inc()

    def watch_receive_streams(self, count: Callable[[], int]) -> None:
        self._receive_streams.set_function(count)

    def handed_over(self, mode: DeliveryMode, accepted_at: dt.datetime, *, first: bool) -> None:
        self._deliveries.labels(mode.value).inc()
        if first:
            self._latency.observe(_age_s(self._clock(), accepted_at))

    def acknowledged(self, kind: AcknowledgedKind) -> None:
        self._acknowledgements.labels(kind.value).inc()

    def ledger_fork(self, source: ForkSource) -> None:
        self._forks.labels(source.value).inc()

    def witness_answered(self, witness: str, *, cosigned: bool) -> None:
        (self._cosignatures if cosigned else self._witness_failures).labels(witness).inc()

    def notices(self, fates: Sequence[str]) -> None:
        """The fates of status notices just committed (services/exchange/domain/notices.py)."""
        for fate in fates:
            self._notices.labels(fate).inc()

    def certificate_expires(self, name: str, not_after: dt.datetime) -> None:
        self._certificates.labels(name).set(not_after.timestamp())

    def watch_peers(self, read: Callable[[], Sequence[PeerSnapshot]]) -> None:
        """Federation: the forwarders' per-peer series (docaxis_peer_*)."""
        self._own.register(_PeerGauges(read))

    def watch_polled_peers(self, read: Callable[[], Sequence[PolledPeerSnapshot]]) -> None:
        """The pollers' per-peer series (docaxis_peer_polls, _fetched, _errors, _poll_*)."""
        self._own.register(_PolledPeerGauges(read))

    def watch_queues(self, probe: QueueProbe) -> None:
        self._queue_probe = probe

    def watch_ledger(self, probe: LedgerProbe) -> None:
        self._ledger_probe = probe

    def sum_workers(self, siblings: Sequence[str]) -> None:
        """Scrapes add these sibling workers' expositions to this one's (their sockets:
        metrics_workers.worker_socket)."""
        self._siblings = tuple(siblings)

    def render_worker(self) -> str:
        """This worker's own series, without the database probes: what its siblings add."""
        return generate_latest(self._own).decode("utf-8")

    async def render(self) -> str:
        """The exposition, summed over the process group's workers, with the probes' gauges
        read now."""
        async with self._lock:  # one snapshot per exposition, even with concurrent scrapers
            # Side by side (each on its own pool), so a hanging database costs one deadline.
            (queues, ledger), siblings = await asyncio.gather(
                asyncio.gather(
                    self._probe("queues", self._queue_probe.queues if self._queue_probe else None),
                    self._probe(
                        "ledger", self._ledger_probe.backlog if self._ledger_probe else None
                    ),
                ),
                asyncio.gather(*(read_worker_metrics(name) for name in self._siblings)),
            )
            self._scraped.queues, self._scraped.ledger = queues, ledger
            answered = [text for text in siblings if text is not None]
            self._workers_answered.set(1 + len(answered))
            own = self.render_worker()
            summed = sum_expositions([own, *answered]) if answered else own
            return summed + generate_latest(self._probed).decode("utf-8")

    async def _probe(self, name: str, read: Callable[[], Awaitable[_T]] | None) -> _T | None:
        """`read()` within the probe deadline; None when it failed or no probe is attached."""
        if read is None:
            return None
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                value = await read()
        except (UnavailableError, TimeoutError) as exc:
            log.warning("metrics_probe_failed", probe=name, error=repr(exc))
            self._scraped.up[name] = False
            return None
        self._scraped.up[name] = True
        return value
