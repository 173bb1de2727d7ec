"""Two real witnesses (HTTP servers) and the log in real Postgres: checkpoints get cosigned,
only cosigned checkpoints are served, and a log that shows a witness another history is
refused and counted as a fork."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from docaxis_client.ledger.note import NoteSigner
from docaxis_client.ledger.policy import LogKey, TrustPolicy, WitnessKey
from services.common import postgres
from services.common.metrics import AxisMetrics
from services.ledger.adapters.postgres import (
    SEQUENCER_ROLE,
    PostgresLedgerReader,
    PostgresLedgerWriter,
)
from services.ledger.audit.verify import audit_export
from services.ledger.entrypoints.cosigning import WitnessCollector
from services.ledger.witnesses import WitnessEndpoint
from services.witness.domain import Witness
from services.witness.server import serve_witness
from services.witness.state import FileWitnessStore
from tests.exposition import sample
from tests.infra import SuiteServices
from tests.integration.test_ledger_guards import (
    ORIGIN,
    export,
    fresh_database,
    sequence_all,
    stage,
)
from tests.unit.ledger.synthetic import WITNESSES

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running_witnesses(
    tmp_path: Path, signer: NoteSigner
) -> AsyncIterator[list[WitnessEndpoint]]:
    """The two synthetic witnesses as HTTP servers on free loopback ports."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    endpoints: list[WitnessEndpoint] = []
    try:
        for cosigner in WITNESSES:
            ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            witness = Witness(
                cosigner,
                {ORIGIN: [signer.verifier]},
                FileWitnessStore(tmp_path / cosigner.name.replace("/", "_")),
            )
            tasks.append(
                asyncio.create_task(serve_witness(witness, "127.0.0.1", 0, stop, ready.set_result))
            )
            port = await asyncio.wait_for(ready, 10)
            endpoints.append(WitnessEndpoint(f"http://127.0.0.1:{port}", cosigner.verifier))
        yield endpoints
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def policy(signer: NoteSigner, quorum: int = 2) -> TrustPolicy:
    witnesses = tuple(WitnessKey(c.verifier) for c in WITNESSES)
    return TrustPolicy(ORIGIN, (LogKey(signer.verifier),), witnesses, quorum)


async def collector_for(
    url: str, endpoints: list[WitnessEndpoint], http: httpx.AsyncClient, metrics: AxisMetrics
) -> tuple[WitnessCollector, asyncpg.Pool]:
    pool = await postgres.create_pool(url, min_size=1, max_size=2, role=SEQUENCER_ROLE)
    collector = WitnessCollector(
        PostgresLedgerReader(pool), PostgresLedgerWriter(pool, ORIGIN), endpoints, http, metrics
    )
    return collector, pool


async def test_checkpoints_are_cosigned_by_both_witnesses_and_only_then_served(
    services: SuiteServices, tmp_path: Path
) -> None:
    signer = NoteSigner.generate(ORIGIN)
    url = await fresh_database(services, "docaxis_witnessed")
    metrics = AxisMetrics()
    superuser = await asyncpg.connect(url)
    async with running_witnesses(tmp_path, signer) as endpoints, httpx.AsyncClient() as http:
        collector, pool = await collector_for(url, endpoints, http, metrics)
        served = PostgresLedgerReader(pool, quorum=2)
        try:
            await stage(superuser, 20)
            first = await sequence_all(url, signer)
            assert await served.latest_checkpoint() is None  # signed, not yet witnessed
            await collector.collect()
            latest = await served.latest_checkpoint()
            assert latest is not None
            trusted = policy(signer).open(latest.note)
            assert trusted.checkpoint.size == first
            assert set(trusted.cosigned_at) == {c.name for c in WITNESSES}

            # Growth: a fresh collector (as after a restart) learns each witness's size from
            # its 409 and sends the consistency proof from there.
            await stage(superuser, 300)
            second = await sequence_all(url, signer)
            restarted, restarted_pool = await collector_for(url, endpoints, http, metrics)
            await restarted.collect()
            await restarted_pool.close()
            latest = await served.latest_checkpoint()
            assert latest is not None
            assert policy(signer).open(latest.note).checkpoint.size == second > first
        finally:
            await pool.close()
            await superuser.close()

        # The auditor's export carries the cosignatures; the quorum policy accepts it.
        report = audit_export(await export(url, tmp_path / "export"), policy=policy(signer))
        assert report.ok, report.to_json()
        assert report.details["last_witnessed_at"] is not None

        # Another history under the same key and origin (a split view, or a restore that lost
        # entries) shown to the same witnesses: refused, counted as a fork, never served.
        other = await fresh_database(services, "docaxis_split_view")
        other_db = await asyncpg.connect(other)
        try:
            await stage(other_db, 400)
            await sequence_all(other, signer)
        finally:
            await other_db.close()
        split, split_pool = await collector_for(other, endpoints, http, metrics)
        try:
            await split.collect()
            assert await PostgresLedgerReader(split_pool, quorum=1).latest_checkpoint() is None
        finally:
            await split_pool.close()
    forks = sample(await metrics.render(), "docaxis_ledger_forks_total", source="witness")
    assert forks == 2.0
    for name in (tmp_path / c.name.replace("/", "_") for c in WITNESSES):
        assert len(list((name / "forks").iterdir())) == 1
