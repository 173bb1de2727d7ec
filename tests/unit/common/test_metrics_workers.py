"""One scrape sums the worker processes' series (services/common/metrics_workers.py), over real
local sockets between AxisMetrics instances standing for the workers."""

from __future__ import annotations

import datetime as dt
import functools
import uuid

import pytest

from services.common import event_loop
from services.common.event_loop import EVENT_LOOPS
from services.common.metrics import AxisMetrics, DeliveryMode, PeerSnapshot, SubmissionOutcome
from services.common.metrics_workers import serve_worker_metrics, sum_expositions, worker_socket
from tests.exposition import sample

ACCEPTED = {"outcome": "accepted"}


def a_worker(submitted: int, expires: dt.datetime) -> AxisMetrics:
    metrics = AxisMetrics()
    for _ in range(submitted):
        metrics.submitted(SubmissionOutcome.ACCEPTED)
    metrics.handed_over(DeliveryMode.PUSH, dt.datetime.now(dt.UTC), first=True)
    metrics.certificate_expires("hub", expires)
    return metrics


def test_counters_and_histograms_are_summed_and_an_expiry_is_the_earliest() -> None:
    soon, later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    one, two = a_worker(2, later), a_worker(3, soon)
    summed = sum_expositions([one.render_worker(), two.render_worker()])
    assert sample(summed, "docaxis_submissions_total", **ACCEPTED) == 5
    assert sample(summed, "docaxis_submissions_total", outcome="replayed") == 0
    assert sample(summed, "docaxis_delivery_latency_seconds_count") == 2
    assert sample(summed, "docaxis_delivery_latency_seconds_bucket", le="+Inf") == 2
    assert sample(summed, "docaxis_deliveries_total", mode="push") == 2
    expiry = "docaxis_certificate_expiry_timestamp_seconds"
    assert sample(summed, expiry, certificate="hub") == soon.timestamp()


def test_a_peers_last_contact_is_the_latest_of_the_workers_that_led_its_jobs() -> None:
    """A forwarder or poller elected among the workers: one that led it before keeps its own
    last time, and the group shows the latest one, not their sum."""
    workers = []
    for contact in (1_700_000_000.0, 1_700_000_500.0):
        metrics = AxisMetrics()
        metrics.watch_peers(
            functools.partial(list, [PeerSnapshot("vdxp", "closed", 1, 0, 0, contact)])
        )
        workers.append(metrics.render_worker())
    summed = sum_expositions(workers)
    last = "docaxis_peer_last_contact_timestamp_seconds"
    assert sample(summed, last, hub="vdxp") == 1_700_000_500.0
    assert sample(summed, "docaxis_peer_items_total", hub="vdxp", outcome="forwarded") == 2


@pytest.mark.parametrize("loop", EVENT_LOOPS)
def test_a_scrape_of_one_worker_shows_the_sum_over_every_worker(loop: str) -> None:
    """On both event loops: uvloop cannot name an abstract socket by itself."""
    event_loop.run(_a_scrape_of_one_worker(), env={"DOCAXIS_EVENT_LOOP": loop})


async def _a_scrape_of_one_worker() -> None:
    port = 20000 + uuid.uuid4().int % 7000  # only names a socket: nothing listens on it
    names = [worker_socket(port, index) for index in range(3)]
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    workers = [a_worker(n, expires) for n in (1, 2, 4)]
    servers = [
        await serve_worker_metrics(name, worker.render_worker)
        for name, worker in zip(names[1:], workers[1:], strict=True)
    ]
    try:
        workers[0].sum_workers(names[1:])
        text = await workers[0].render()
        assert sample(text, "docaxis_submissions_total", **ACCEPTED) == 7
        assert sample(text, "docaxis_metrics_workers_answered") == 3
        # A worker that is gone is left out, and the scrape says so.
        servers.pop().close()
        text = await workers[0].render()
        assert sample(text, "docaxis_submissions_total", **ACCEPTED) == 3
        assert sample(text, "docaxis_metrics_workers_answered") == 2
    finally:
        for server in servers:
            server.close()


async def test_a_single_process_exposes_its_own_series() -> None:
    text = await a_worker(2, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)).render()
    assert sample(text, "docaxis_submissions_total", **ACCEPTED) == 2
    assert sample(text, "docaxis_metrics_workers_answered") == 1
