"""What an operator sees of a federation peer: its one-word state, what waits for it and for how
long, its throughput (services/exchange/service_layer/peers.py), and `docaxis peers`' table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any, cast

from docaxis.exchange.v1 import admin_service_pb2 as apb

from services.exchange.domain.peering import CircuitState
from services.exchange.entrypoints.admin_api import peer_to_pb
from services.exchange.service_layer.federation_ports import PeerTransport
from services.exchange.service_layer.forwarding import Forwarder, PeerStats
from services.exchange.service_layer.peers import (
    PeerQueue,
    PeerReport,
    PeerState,
    PeerStates,
    peer_views,
)
from services.peers_cli import duration, format_peers

NOW = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)
UP = PeerReport(
    hub="national",
    kind="docaxis",
    address="10.0.0.1:50051",
    circuit=CircuitState.CLOSED,
    consecutive_failures=0,
    last_contact=NOW - dt.timedelta(seconds=12),
    last_failure_at=None,
    last_error="",
    forwarded=40,
    refused=1,
    failures=0,
    forwarded_per_minute=6.5,
    reported_at=NOW,
)


def test_a_peers_state_follows_its_circuit_failures_and_contact() -> None:
    cases = [
        (UP, PeerState.UP),
        (dataclasses.replace(UP, consecutive_failures=2), PeerState.RETRYING),
        (dataclasses.replace(UP, circuit=CircuitState.OPEN), PeerState.DOWN),
        (dataclasses.replace(UP, circuit=CircuitState.HALF_OPEN), PeerState.DOWN),
        (dataclasses.replace(UP, last_contact=None), PeerState.NOT_CONTACTED),
    ]
    for report, state in cases:
        (view,) = peer_views([report], [], NOW)
        assert view.state is state, report


def test_every_reported_peer_and_every_hub_something_waits_for_is_listed() -> None:
    """A hub no forwarder reports but copies wait for (removed from the settings) is listed as
    not configured, with the age of its oldest waiting item; inbound copies give a rate."""
    queues = [
        PeerQueue("national", depth=3, oldest_queued_at=NOW - dt.timedelta(minutes=2)),
        PeerQueue("province-z", depth=1, oldest_queued_at=NOW - dt.timedelta(hours=3)),
        PeerQueue("province-b", received_recently=10, dead_letters=2),
    ]
    views = peer_views([UP], queues, NOW)
    assert [(v.hub, v.state) for v in views] == [
        ("national", PeerState.UP),
        ("province-b", PeerState.NOT_CONFIGURED),
        ("province-z", PeerState.NOT_CONFIGURED),
    ]
    national, b, z = views
    assert national.oldest_age_s == 120.0
    assert national.queue.depth == 3
    assert b.received_per_minute == 2.0  # 10 in the 5-minute window
    assert b.oldest_age_s == 0.0
    assert z.oldest_age_s == 3 * 3600.0


def test_the_forwarders_throughput_counts_only_the_last_five_minutes() -> None:
    stats = PeerStats()
    stats.handed_over(100, now=1000.0)
    stats.handed_over(50, now=1200.0)
    assert stats.forwarded == 150
    assert stats.per_minute(now=1250.0) == 30.0  # 150 over 5 minutes
    assert stats.per_minute(now=1350.0) == 10.0  # the first batch left the window
    assert stats.forwarded == 150  # the total stays


def test_docaxis_peers_prints_one_row_per_peer_and_the_last_error_of_a_down_one() -> None:
    down = dataclasses.replace(
        UP,
        hub="province-b",
        circuit=CircuitState.OPEN,
        consecutive_failures=6,
        last_failure_at=NOW - dt.timedelta(seconds=30),
        last_error="peer hub province-b: UNAVAILABLE failed to connect",
    )
    queues = [PeerQueue("province-b", depth=7, oldest_queued_at=NOW - dt.timedelta(seconds=3725))]
    listed = apb.ListPeersResponse(
        peers=[peer_to_pb(v) for v in peer_views([UP, down], queues, NOW)]
    )
    lines = format_peers(listed, NOW)
    assert lines[0].split() == [
        *("peer", "kind", "state", "circuit", "queue", "oldest", "dead", "last", "contact"),
        *("out/min", "in/min"),
    ]
    assert lines[1].split() == [
        *("national", "docaxis", "up", "closed", "0", "-", "0", "12s", "ago", "6.5", "0.0")
    ]
    assert lines[2].split()[:7] == ["province-b", "docaxis", "DOWN", "open", "7", "1h02m", "0"]
    assert lines[3] == "  last error (30s ago): peer hub province-b: UNAVAILABLE failed to connect"
    assert format_peers(apb.ListPeersResponse(), NOW)[1].startswith("(no peers")


def test_durations_read_short() -> None:
    assert [duration(s) for s in (0, 42, 425, 11520, 187200)] == [
        "0s",
        "42s",
        "7m05s",
        "3h12m",
        "2d04h",
    ]


class StoredReports:
    """The PeerStates port as far as a forwarder's breaker uses it."""

    def __init__(self, reports: list[PeerReport]) -> None:
        self.stored = {r.hub: r for r in reports}

    async def record(self, report: PeerReport) -> None:
        self.stored[report.hub] = report

    async def reports(self) -> list[PeerReport]:
        return list(self.stored.values())


class Peer:
    hub_code = "national"


async def test_a_restarted_forwarder_takes_its_open_circuit_over_from_the_stored_report() -> None:
    """The breaker survives a restart (and a takeover by another replica): a peer that was
    down stays open, with its failures, until its back-off passed; not closed by the restart."""
    down = dataclasses.replace(
        UP,
        circuit=CircuitState.OPEN,
        consecutive_failures=9,
        last_failure_at=dt.datetime.now(dt.UTC),
        last_error="UNAVAILABLE",
    )
    reports = StoredReports([down, dataclasses.replace(UP, hub="province-b")])
    unused: Any = None
    forwarder = Forwarder(
        "province-a",
        cast(PeerTransport, Peer()),
        unused,
        unused,
        unused,
        unused,
        reports=cast(PeerStates, reports),
    )
    await forwarder.resume()
    breaker = forwarder.stats.breaker
    assert (breaker.state, breaker.failures) == (CircuitState.OPEN, 9)
    assert not breaker.may_probe(time.monotonic())
    await forwarder.write_report()
    stored = reports.stored["national"]
    assert (stored.circuit, stored.consecutive_failures, stored.last_error) == (
        CircuitState.OPEN,
        9,
        "UNAVAILABLE",
    )
