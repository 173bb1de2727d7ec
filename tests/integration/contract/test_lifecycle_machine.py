"""The exchange's lifecycle as a hypothesis state machine (lifecycle_machine.py), over the fakes
and over Postgres: the same rules, the same model, the same invariants.

`make test` runs a fixed, derandomised number of runs (DOCAXIS_STATEFUL_RUNS, default below) of
at most DOCAXIS_STATEFUL_STEPS steps; `make stateful` runs many more with a fresh seed
(DOCAXIS_STATEFUL_RANDOM=1), like `make fuzz`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from services.bootstrap.migrations import migrate
from services.common import postgres
from services.common.postgres import recreate_database
from services.exchange.adapters.postgres import PostgresDocumentStore, PostgresOutbox
from services.exchange.adapters.postgres_admin import PostgresAdminStore
from services.exchange.adapters.postgres_lifecycle import PostgresLifecycleStore
from services.exchange.adapters.postgres_reroute import PostgresRerouteStore
from services.exchange.adapters.rabbit import OutboundMessage
from tests.delivery_fakes import FakeAdminStore, FakeRerouteStore
from tests.fakes import FakeDocumentStore
from tests.integration.contract.lifecycle_machine import Clock, Loop, World, bound_machine
from tests.integration.contract.test_document_store_contract import FakeProbe, PostgresProbe
from tests.lifecycle_fakes import FakeLifecycleStore

# Runs per adapter in `make test`: Postgres takes some 30 times longer per step.
FAKE_RUNS = int(os.environ.get("DOCAXIS_STATEFUL_RUNS", "150"))
POSTGRES_RUNS = int(os.environ.get("DOCAXIS_STATEFUL_RUNS", "50"))
STEPS = int(os.environ.get("DOCAXIS_STATEFUL_STEPS", "50"))
RANDOM = os.environ.get("DOCAXIS_STATEFUL_RANDOM") == "1"


# Paths the runs must have taken (LifecycleMachine.seen): a search that no longer reaches one of
# them tests less than it claims, and fails.
REACHED = frozenset(
    {
        "push PushItem pull=False",
        "push PushItem pull=True",
        "push DeadLetter pull=False",
        "acknowledged dead_lettered",
        "status 01 repeated",
        "status 03 recorded",
        "status 15 recorded",
        "status 16 recorded",
        "refused CopyWithdrawnError",
        "refused IllegalTransitionError",
        "refused StatusConflictError",
        "refused NotDeadLetteredError",
        "withdrawn before receipt",
        "recall again",
        "submitted UPDATE",
        "submitted REPLACE",
        "submitted REVOKE",
        "resent MAX_PUSHES_EXCEEDED",
        "resent RECIPIENT_CLOSED",
        "copy rerouted",
        "routed to a successor",
        "refused RejectedError",
        "copy of a closed recipient dead-lettered",
        "notice taken status",
        "notice taken recall",
    }
)


def assert_reached(seen: Counter[str]) -> None:
    missed = REACHED - set(seen)
    assert not missed, (sorted(missed), sorted(seen.items()))


def machine_settings(runs: int) -> settings:
    return settings(
        max_examples=runs,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture
def loop() -> Iterator[Loop]:
    """The machine's own event loop: its rules are synchronous."""
    own = Loop()
    yield own
    own.close()


def fake_world(clock: Clock) -> World:
    documents = FakeDocumentStore(clock=clock)
    lifecycle = FakeLifecycleStore(documents)

    async def relay() -> None:
        documents.relay_outbox()

    return World(
        documents,
        lifecycle,
        FakeAdminStore(documents),
        FakeRerouteStore(lifecycle),
        FakeProbe(documents),
        relay,
    )


def test_the_lifecycle_over_the_fakes(loop: Loop) -> None:
    seen: Counter[str] = Counter()
    run_state_machine_as_test(
        bound_machine(loop, fake_world, seen, check_everything=True),
        settings=machine_settings(FAKE_RUNS),
    )
    assert_reached(seen)


@pytest.fixture(scope="session")
async def stateful_database_url(database_url: str) -> str:
    """A migrated database of the machine's own: its relay publishes the whole outbox, which
    would take rows from under the contract tests' feet."""
    url = await recreate_database(database_url, "docaxis_stateful")
    await migrate(url)
    return url


async def _published(messages: Sequence[OutboundMessage]) -> None:
    """The broker's confirmation: what the relay does after publishing is under test, not the
    broker (tests/integration covers the relay with RabbitMQ)."""


def postgres_world(pool: asyncpg.Pool) -> Callable[[Clock], World]:
    # The model's relay marks every copy it publishes queued at once: so does this one, with no
    # stream's claim to leave them to (SETTLE_AFTER_S).
    outbox = PostgresOutbox(pool, settle_after_s=0)

    async def relay() -> None:
        while await outbox.relay_batch(1000, _published):
            pass

    def make(clock: Clock) -> World:
        del clock  # Postgres stores take the time from the use cases, or keep their own
        return World(
            PostgresDocumentStore(pool),
            PostgresLifecycleStore(pool),
            PostgresAdminStore(pool),
            PostgresRerouteStore(pool),
            PostgresProbe(pool),
            relay,
        )

    return make


@pytest.mark.integration
def test_the_lifecycle_over_postgres(loop: Loop, stateful_database_url: str) -> None:
    seen: Counter[str] = Counter()
    pool = loop.run(postgres.create_pool(stateful_database_url, min_size=1, max_size=4))
    try:
        make = postgres_world(pool)
        run_state_machine_as_test(
            bound_machine(loop, make, seen, check_everything=False),
            settings=machine_settings(POSTGRES_RUNS),
        )
    finally:
        loop.run(pool.close())
    assert_reached(seen)
