"""A sender that never listens: its status notices are coalesced and bounded, and the metrics
say so (`docaxis run` with DOCAXIS_MAX_PENDING_NOTICES=2, DOCAXIS_COALESCE_NOTICES_AFTER=1)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.ops.v1 import metrics_service_pb2 as mpb
from docaxis.ops.v1 import metrics_service_pb2_grpc as mpb_grpc

from docaxis_client.client import open_channel
from docaxis_client.errors import item_error
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess
from tests.exposition import sample
from tests.infra import SuiteServices
from tests.pki import SuitePki

pytestmark = pytest.mark.e2e

BOUND = 2


async def notices_metric(process: AxisProcess, pki: SuitePki, fate: str) -> float | None:
    async with open_channel(process.address, pki.monitor) as channel:
        response = await mpb_grpc.MetricsServiceStub(channel).GetMetrics(
            mpb.GetMetricsRequest(), timeout=10
        )
    return sample(response.exposition, "docaxis_status_notices_total", fate=fate)


async def test_a_sender_not_listening_gets_bounded_coalesced_notices(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    """Three copies acknowledged in one batch: two 01 notices queue, the third is suppressed
    (the status is still in Track). A 03 on a copy whose 01 the sender was never handed
    replaces it. The metrics count each fate."""
    process = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        pki=pki,
        extra_env={
            "DOCAXIS_MAX_PENDING_NOTICES": str(BOUND),
            "DOCAXIS_COALESCE_NOTICES_AFTER": "1",
        },
    )
    await process.start()
    try:
        sender, recipient = await register(process, 2)
        async with process.client(sender) as s, process.client(recipient) as r:
            sent = [
                (await s.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))).receipt
                for _ in range(BOUND + 1)
            ]
            listed = (await r.list_pending()).items
            assert len(listed) == BOUND + 1
            results = await r.acknowledge_batch(
                [pb.AcknowledgeRequest(delivery_id=i.delivery_id) for i in listed]
            )
            assert [item_error(x.error) for x in results] == [None] * (BOUND + 1)
            waiting = (await s.list_pending()).items
            assert len(waiting) == BOUND
            for receipt in sent:  # every 01 is recorded, notice or not
                track = await s.track(receipt.document_uuid)
                assert [x.code for x in track.recipients[0].statuses] == [pb.STATUS_CODE_ARRIVED]
            copy = next(i for i in listed if i.document_uuid == waiting[0].document_uuid)
            await r.report_status(copy.delivery_id, pb.STATUS_CODE_ACCEPTED, status_id="s-03")
            now_waiting = (await s.list_pending()).items
            assert len(now_waiting) == BOUND
            assert waiting[0].notice_id not in {i.notice_id for i in now_waiting}
            replaced = await s.fetch(now_waiting[-1])
            assert replaced.status.status.code == pb.STATUS_CODE_ACCEPTED
            assert await notices_metric(process, pki, "queued") == BOUND
            assert await notices_metric(process, pki, "suppressed") == 1
            assert await notices_metric(process, pki, "coalesced") == 1
    finally:
        code = await process.terminate()
    assert code == 0, process.logs()
