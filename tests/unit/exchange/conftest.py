"""An exchange over fakes: a directory of a few agencies, an in-memory store, a fixed clock."""

from __future__ import annotations

from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from docaxis_client.trust import pdf as pdf_module
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


@pytest.fixture
def pdf_readings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times pyHanko's reader has opened a PDF's bytes since (one count, in a list):
    the one name the PDF module opens them through, replaced by a counting subclass."""
    readings = [0]

    class CountedReader(PdfFileReader):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            readings[0] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pdf_module, "PdfFileReader", CountedReader)
    return readings
