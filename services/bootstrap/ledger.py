"""The ledger's wiring: its own pools under its narrow roles, the writer loop, LedgerService."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc

from docaxis_client.ledger.policy import WitnessKey
from services.bootstrap.wiring import Wiring
from services.common import postgres
from services.common.leadership import PostgresLeadership, Singleton
from services.common.periodic import every
from services.ledger.adapters.postgres import (
    READER_ROLE,
    SEQUENCER_ROLE,
    PostgresLedgerReader,
    PostgresLedgerWriter,
)
from services.ledger.adapters.postgres_backlog import PostgresLedgerBacklog
from services.ledger.entrypoints import grpc_api as ledger_api
from services.ledger.entrypoints.cosigning import WitnessCollector
from services.ledger.entrypoints.writer import LedgerWriterLoop
from services.ledger.service_layer.handlers import LedgerHandlers


async def wire_ledger(wiring: Wiring) -> None:
    settings = wiring.plan.settings
    sequencer_role = SEQUENCER_ROLE if settings.database_roles else None
    ledger_pool = await postgres.create_pool(
        settings.database_url, min_size=1, max_size=4, role=sequencer_role
    )
    wiring.stack.push_async_callback(ledger_pool.close)
    reader_pool = await postgres.create_pool(
        settings.database_url,
        min_size=1,
        max_size=4,
        role=READER_ROLE if settings.database_roles else None,
    )
    wiring.stack.push_async_callback(reader_pool.close)
    writer = LedgerWriterLoop(
        PostgresLeadership(Singleton.LEDGER_SEQUENCER, settings.database_url, role=sequencer_role),
        PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
        list(wiring.plan.signers),
        checkpoint_interval_s=settings.ledger_checkpoint_interval_s,
        on_leadership=lambda leading: wiring.metrics.leadership(
            Singleton.LEDGER_SEQUENCER.job, leading
        ),
    )
    # Every process (workers, replicas) stands by to sequence; the elected one does.
    wiring.metrics.leadership(Singleton.LEDGER_SEQUENCER.job, False)
    # Stops last: its last batch sequences what the other jobs staged until they stopped (the
    # outbox relay's final pass records the last copies published queued).
    wiring.add_job("ledger-writer", writer.run, stops_last=True)
    if settings.ledger_witnesses:  # one collector per axis: the writer's leader's
        await _wire_witnesses(wiring, ledger_pool, writer.leading)
    # The sequencer's pool: of the narrow roles, only it may read the staging table.
    wiring.metrics.watch_ledger(PostgresLedgerBacklog(ledger_pool))
    handlers = LedgerHandlers(
        PostgresLedgerReader(reader_pool, settings.ledger_witness_quorum),
        settings.ledger_origin,
        witnesses=[WitnessKey(w.verifier) for w in settings.ledger_witnesses],
        quorum=settings.ledger_witness_quorum,
        forks=PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
    )
    servicer = ledger_api.LedgerServicer(
        handlers, wiring.plan.security.callers, metrics=wiring.metrics
    )
    wiring.add_service(
        ledger_api.SERVICE_NAME,
        lambda server: lpb_grpc.add_LedgerServiceServicer_to_server(servicer, server),
    )


async def _wire_witnesses(
    wiring: Wiring, ledger_pool: asyncpg.Pool, leading: asyncio.Event
) -> None:
    settings = wiring.plan.settings
    http = httpx.AsyncClient()
    wiring.stack.push_async_callback(http.aclose)
    collector = WitnessCollector(
        PostgresLedgerReader(ledger_pool),
        PostgresLedgerWriter(ledger_pool, settings.ledger_origin),
        settings.ledger_witnesses,
        http,
        wiring.metrics,
    )

    async def collect_while_leading() -> None:
        if leading.is_set():
            await collector.collect()

    wiring.add_job(
        "witness-cosignatures",
        lambda stop: every(
            settings.ledger_checkpoint_interval_s,
            stop,
            collect_while_leading,
            "witness-cosignatures",
        ),
    )
