"""An exchange over fakes: a directory of a few agencies, an in-memory store, a fixed clock."""

from __future__ import annotations

import pytest

from services.directory.domain.codes import code_problem
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.exchange.builders import (
    CLOSED,
    EDUCATION,
    HEALTH,
    LIMIT,
    OUTSIDER,
    SENDER,
    SUCCESSOR,
    fixed_clock,
)


@pytest.fixture
def store() -> FakeDocumentStore:
    return FakeDocumentStore(clock=fixed_clock)


@pytest.fixture
def directory() -> FakeDirectoryLookup:
    lookup = FakeDirectoryLookup(SENDER, HEALTH, EDUCATION, OUTSIDER, SUCCESSOR)
    lookup.close(CLOSED, SUCCESSOR)
    return lookup


@pytest.fixture
def exchange(store: FakeDocumentStore, directory: FakeDirectoryLookup) -> ExchangeHandlers:
    return ExchangeHandlers(
        store,
        directory,
        code_problem,
        Limits(max_attachment_bytes=LIMIT),
        clock=fixed_clock,
    )
