"""Federation's per-peer Prometheus series: circuit state, items by outcome, failures and the
last contact of each peer hub, read from the forwarders at each scrape."""

from __future__ import annotations

from services.common.metrics import AxisMetrics, PeerSnapshot


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
