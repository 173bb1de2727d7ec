"""The services' metrics: what AxisMetrics counts and probes, and MetricsService through a real
grpc.aio server (who may read them; every refusal counted once)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc
from grpc_health.v1 import health

from docaxis_client.delegation import ON_BEHALF_HEADER
from services.common.errors import UnavailableError
from services.common.grpc_errors import error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.common.metrics import (
    AcknowledgedKind,
    AgencyQueue,
    AxisMetrics,
    DeliveryMode,
    LedgerBacklog,
    SubmissionOutcome,
)
from services.common.metrics_api import SERVICE_NAME, MetricsServicer
from tests.exposition import family_names, sample
from tests.waiting import eventually

NOW = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
AGENCY = "000.00.13.H45"


def at(seconds_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds_ago)


class FixedQueues:
    def __init__(self, queues: Sequence[AgencyQueue]) -> None:
        self.answer = list(queues)

    async def queues(self) -> Sequence[AgencyQueue]:
        return self.answer


class DownQueues:
    async def queues(self) -> Sequence[AgencyQueue]:
        raise UnavailableError("the database did not answer")


class HangingQueues:
    async def queues(self) -> Sequence[AgencyQueue]:
        await asyncio.Event().wait()  # never set: only the probe deadline ends this
        raise AssertionError("unreachable")


class FixedLedger:
    def __init__(self, backlog: LedgerBacklog) -> None:
        self.answer = backlog

    async def backlog(self) -> LedgerBacklog:
        return self.answer


def metrics() -> AxisMetrics:
    return AxisMetrics(clock=lambda: NOW)


async def test_counters_and_the_latency_of_first_hand_overs() -> None:
    axis = metrics()
    axis.submitted(SubmissionOutcome.ACCEPTED)
    axis.submitted(SubmissionOutcome.ACCEPTED)
    axis.submitted(SubmissionOutcome.REPLAYED)
    axis.handed_over(DeliveryMode.PUSH, at(0.02), first=True)
    axis.handed_over(DeliveryMode.PUSH, at(90), first=False)  # a redelivery: no latency
    axis.handed_over(DeliveryMode.PULL, at(7200), first=True)
    axis.acknowledged(AcknowledgedKind.DELIVERY)
    axis.rejected("/docaxis.exchange.v1.ExchangeService/Submit", "SENDER_MISMATCH")
    axis.certificate_expires("hub", dt.datetime(2027, 1, 1, tzinfo=dt.UTC))

    text = await axis.render()

    assert sample(text, "docaxis_submissions_total", outcome="accepted") == 2
    assert sample(text, "docaxis_submissions_total", outcome="replayed") == 1
    assert sample(text, "docaxis_deliveries_total", mode="push") == 2
    assert sample(text, "docaxis_deliveries_total", mode="pull") == 1
    assert sample(text, "docaxis_acknowledgements_total", kind="delivery") == 1
    assert sample(text, "docaxis_acknowledgements_total", kind="notice") == 0
    rejected = {"method": "docaxis.exchange.v1.ExchangeService/Submit", "reason": "SENDER_MISMATCH"}
    assert sample(text, "docaxis_rejections_total", **rejected) == 1
    assert sample(text, "docaxis_delivery_latency_seconds_count") == 2
    assert sample(text, "docaxis_delivery_latency_seconds_bucket", le="0.025") == 1
    assert sample(text, "docaxis_delivery_latency_seconds_bucket", le="3600.0") == 1
    assert sample(text, "docaxis_delivery_latency_seconds_bucket", le="+Inf") == 2
    assert sample(text, "docaxis_certificate_expiry_timestamp_seconds", certificate="hub") == (
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    )
    # Without probes (a process serving neither exchange nor ledger) no database gauge exists.
    assert "docaxis_queue_depth" not in family_names(text)
    assert "docaxis_ledger_lag_seconds" not in family_names(text)


async def test_the_probes_gauges_are_read_at_each_scrape() -> None:
    axis = metrics()
    queues = FixedQueues([AgencyQueue(AGENCY, 3, at(60))])
    ledger = FixedLedger(
        LedgerBacklog(pending_entries=4, oldest_pending=at(2.5), tree_size=99, last_checkpoint=None)
    )
    axis.watch_queues(queues)
    axis.watch_ledger(ledger)

    text = await axis.render()
    assert sample(text, "docaxis_queue_depth", agency=AGENCY) == 3
    assert sample(text, "docaxis_queue_oldest_age_seconds", agency=AGENCY) == 60
    assert sample(text, "docaxis_ledger_pending_entries") == 4
    assert sample(text, "docaxis_ledger_lag_seconds") == 2.5
    assert sample(text, "docaxis_ledger_tree_size") == 99
    assert sample(text, "docaxis_ledger_checkpoint_age_seconds") is None  # none signed yet
    assert sample(text, "docaxis_metrics_probe_up", probe="queues") == 1

    # The queue drained and the sequencer caught up: no stale agency, a lag of 0.
    queues.answer = []
    ledger.answer = LedgerBacklog(0, None, 103, last_checkpoint=at(1))
    text = await axis.render()
    assert sample(text, "docaxis_queue_depth", agency=AGENCY) is None
    assert sample(text, "docaxis_ledger_lag_seconds") == 0
    assert sample(text, "docaxis_ledger_checkpoint_age_seconds") == 1


@pytest.mark.parametrize("probe", [DownQueues(), HangingQueues()])
async def test_a_probe_that_does_not_answer_costs_only_its_own_gauges(
    probe: DownQueues | HangingQueues,
) -> None:
    axis = AxisMetrics(clock=lambda: NOW, probe_timeout_s=0.05)
    axis.watch_queues(probe)
    axis.watch_ledger(FixedLedger(LedgerBacklog(0, None, 7, None)))
    axis.submitted(SubmissionOutcome.ACCEPTED)

    text = await axis.render()

    assert sample(text, "docaxis_metrics_probe_up", probe="queues") == 0
    assert sample(text, "docaxis_metrics_probe_up", probe="ledger") == 1
    assert "docaxis_queue_depth" not in family_names(text)
    assert sample(text, "docaxis_ledger_tree_size") == 7
    assert sample(text, "docaxis_submissions_total", outcome="accepted") == 1


async def test_no_family_collides_with_the_gateways() -> None:
    axis = metrics()
    axis.watch_queues(FixedQueues([AgencyQueue(AGENCY, 1, NOW)]))
    axis.watch_ledger(FixedLedger(LedgerBacklog(1, NOW, 1, NOW)))
    axis.rejected("/x.v1.S/M", "VALIDATION")
    names = family_names(await axis.render())
    assert names
    assert all(n.startswith("docaxis_") and not n.startswith("docaxis_gateway_") for n in names)


# --- MetricsService: operators only --------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[mpb_grpc.MetricsServiceAsyncStub, AxisMetrics]]:
    """MetricsService on a real server whose refusals are counted by the same metrics."""
    axis = metrics()
    servicer = MetricsServicer(axis, HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: mpb_grpc.add_MetricsServiceServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
        refusals=axis.rejected,
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield mpb_grpc.MetricsServiceStub(channel), axis
    await server.stop(None)


@pytest.mark.parametrize("role", [Role.MONITOR, Role.ADMIN, Role.GATEWAY])
async def test_operators_and_the_gateway_as_itself_read_the_metrics(
    served: tuple[mpb_grpc.MetricsServiceAsyncStub, AxisMetrics], role: Role
) -> None:
    stub, _ = served
    response = await stub.GetMetrics(
        mpb.GetMetricsRequest(), metadata=role_metadata(role), timeout=5
    )
    assert sample(response.exposition, "docaxis_submissions_total", outcome="accepted") == 0
    assert response.content_type.startswith("text/plain")


@pytest.mark.parametrize(
    "metadata",
    [
        agency_metadata(AGENCY),
        role_metadata(Role.HUB),
        (*role_metadata(Role.GATEWAY), (ON_BEHALF_HEADER, AGENCY)),
    ],
    ids=["agency", "hub", "gateway-on-behalf-of-an-agency"],
)
async def test_everyone_else_is_refused_and_the_refusal_is_counted_once(
    served: tuple[mpb_grpc.MetricsServiceAsyncStub, AxisMetrics],
    metadata: tuple[tuple[str, str], ...],
) -> None:
    stub, axis = served
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.GetMetrics(mpb.GetMetricsRequest(), metadata=metadata, timeout=5)
    details = error_details(failure.value)
    assert details.code is grpc.StatusCode.PERMISSION_DENIED
    assert details.reason == "PERMISSION_DENIED"

    async def rejections() -> float | None:
        return sample(
            await axis.render(),
            "docaxis_rejections_total",
            method="docaxis.ops.v1.MetricsService/GetMetrics",
            reason="PERMISSION_DENIED",
        )

    # Counted as the server-side call ends, which may be just after the client has its answer.
    assert await eventually(rejections, lambda counted: counted is not None) == 1
