"""Federation's per-peer Prometheus series: circuit state, items by outcome, failures and the
last contact of each peer hub, read from the forwarders at each scrape."""

from __future__ import annotations

from services.common.metrics import AxisMetrics, PeerSnapshot
from services.national.stats import AxisStats
from tests.exposition import sample


async def test_each_peer_has_its_circuit_state_items_failures_and_last_contact() -> None:
    peers = [PeerSnapshot("national", "open", 7, 1, 3, 1_700_000_000.0)]
    metrics = AxisMetrics()
    metrics.watch_peers(lambda: peers)
    text = await metrics.render()
    assert 'docaxis_peer_circuit_state{hub="national",state="open"} 1.0' in text
    assert 'docaxis_peer_circuit_state{hub="national",state="closed"} 0.0' in text
    assert 'docaxis_peer_items_total{hub="national",outcome="forwarded"} 7.0' in text
    assert 'docaxis_peer_items_total{hub="national",outcome="refused"} 1.0' in text
    assert 'docaxis_peer_failures_total{hub="national"} 3.0' in text
    assert 'docaxis_peer_last_contact_timestamp_seconds{hub="national"} 1.7e+09' in text
    peers[0] = PeerSnapshot("national", "closed", 8, 1, 3, None)  # read again at each scrape
    text = await metrics.render()
    assert 'docaxis_peer_circuit_state{hub="national",state="closed"} 1.0' in text
    assert "docaxis_peer_last_contact_timestamp_seconds{" not in text


async def test_a_forwarders_failures_in_a_row_are_its_back_off_state() -> None:
    """docaxis_peer_consecutive_failures: what the forwarder's back-off grows with, 0 again
    once the peer answers."""
    peers = [PeerSnapshot("vdxp", "closed", 0, 0, 2, None, consecutive_failures=2)]
    metrics = AxisMetrics()
    metrics.watch_peers(lambda: peers)
    assert 'docaxis_peer_consecutive_failures{hub="vdxp"} 2.0' in await metrics.render()
    peers[0] = PeerSnapshot("vdxp", "closed", 1, 0, 2, 1_700_000_000.0)
    assert 'docaxis_peer_consecutive_failures{hub="vdxp"} 0.0' in await metrics.render()


async def test_a_polled_peer_has_its_polls_fetches_errors_back_off_and_last_success() -> None:
    """The national axis's poller series, read at each scrape; the back-off and last success
    are left out where no poller runs (another process leads it)."""
    stats = AxisStats("vdxp")
    metrics = AxisMetrics()
    metrics.watch_polled_peers(lambda: [stats.snapshot()])
    text = await metrics.render()
    # Zeros from the start (rate() needs them), and no poller here yet.
    fetched, errors = "docaxis_peer_fetched_total", "docaxis_peer_errors_total"
    assert sample(text, fetched, hub="vdxp", messagetype="edoc", outcome="stored") == 0
    assert sample(text, errors, hub="vdxp", direction="poll", kind="UNAVAILABLE") == 0
    assert sample(text, "docaxis_peer_poll_backoff_seconds", hub="vdxp") is None
    assert sample(text, "docaxis_peer_poll_last_success_timestamp_seconds", hub="vdxp") is None
    stats.polls += 3
    stats.fetched[("status", "refused")] += 1
    stats.errors[("forward", "INVALID_ADDRESSEE")] += 2
    stats.backoff_s = 1.5
    stats.last_poll_success = 1_700_000_000.0
    text = await metrics.render()
    assert sample(text, "docaxis_peer_polls_total", hub="vdxp") == 3
    assert sample(text, fetched, hub="vdxp", messagetype="status", outcome="refused") == 1
    assert sample(text, errors, hub="vdxp", direction="forward", kind="INVALID_ADDRESSEE") == 2
    assert sample(text, "docaxis_peer_poll_backoff_seconds", hub="vdxp") == 1.5
    last = "docaxis_peer_poll_last_success_timestamp_seconds"
    assert sample(text, last, hub="vdxp") == 1_700_000_000.0
