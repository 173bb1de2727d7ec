"""Structured logging, configured once per process: JSON off a TTY, readable on one.

Our own lines (structlog) are rendered by structlog alone and written by `_LineWriter`; the
libraries' records (grpc, aio-pika, asyncpg: stdlib logging) go through a stdlib handler with
the same processors and renderer, to the same stream under the same lock. Why not both through
the stdlib handler, as before: every line then also made a LogRecord, looked up its caller's
frame, copied the record in the formatter and formatted it again, which was most of the
`rpc_finished` line every gRPC call writes, about a tenth of a unary call's server CPU
(docs/perf/README.md, "The call's fixed costs, again").
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _LineWriter:
    """structlog's logger: writes each rendered line to the handler's stream, and flushes it
    (a line is out once logged, as with the stdlib handler). `name` is the logger's, for the
    `logger` field. A failed write is dropped, as logging.Handler drops it (handleError): a
    log line never fails the call that logs it."""

    __slots__ = ("_handler", "name")

    def __init__(self, handler: logging.StreamHandler[Any], name: str = "") -> None:
        self._handler = handler
        self.name = name

    def msg(self, message: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(message + "\n")
            handler.stream.flush()
        except (OSError, ValueError):  # a full disk, a closed pipe or file: see the docstring
            # It prints the error and the line (when logging.raiseExceptions is set).
            handler.handleError(logging.makeLogRecord({"name": self.name, "msg": message}))
        finally:
            handler.release()

    # structlog calls the logger's method of the line's level.
    debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Routes structlog and stdlib records (grpc, aio-pika, asyncpg) through one renderer."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(sys.stderr)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=lambda *name: _LineWriter(handler, *name),
        # Fixed at startup, like the level of the process (DOCAXIS_LOG_LEVEL): a line below it
        # costs a call that returns.
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The libraries are chatty at INFO about every reconnect attempt; warnings are what matter.
    for noisy in ("aio_pika", "aiormq", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
