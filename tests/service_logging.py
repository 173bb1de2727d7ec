"""Logging configured as a service configures it (services/common/logs.py), for a test: the
test process's own logging (structlog's defaults, pytest's handlers) is restored afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from services.common.logs import configure_logging

_QUIETED = ("aio_pika", "aiormq", "asyncio")

# The JSON lines written so far, parsed.
Lines = Callable[[], list[dict[str, Any]]]


@contextlib.contextmanager
def service_logging(level: str = "INFO") -> Iterator[Lines]:
    """Our lines and the libraries' records as JSON, to a stream of the test's."""
    configured, config = structlog.is_configured(), structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in _QUIETED}
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):  # what configure_logging writes to
        configure_logging(level, json=True)
    # Loggers bound to this configuration would keep it after the test.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        if configured:
            structlog.configure(**config)
        else:
            structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name, quiet in quieted.items():
            logging.getLogger(name).setLevel(quiet)
