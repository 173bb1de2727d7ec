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

import datetime as dt
import logging
import sys
import time
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger


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


class IsoUtcStamper:
    """structlog's `TimeStamper(fmt="iso", utc=True)`, byte for byte, at a fraction of its cost:
    it built a datetime and formatted all of it for every line, about 2 us of each
    `rpc_finished` line (docs/perf/README.md, "The call's fixed costs, again"). Here the date
    and time of day are formatted once per second, and a line formats its microseconds only."""

    __slots__ = ("_second",)

    def __init__(self) -> None:
        # The second last formatted and its text ("2026-12-06T21:40:00"): one tuple, replaced
        # whole, so that a thread logging meanwhile (the libraries' records) never pairs one
        # second with another's text.
        self._second: tuple[int, str] = (-1, "")

    def format(self, ns: int) -> str:
        """The instant `ns` (nanoseconds since the epoch) as `datetime.now(UTC).isoformat()`
        with "Z" for "+00:00": to the microsecond, floored as `datetime.now` floors the clock,
        and without a fraction when it is zero, as `isoformat` writes it."""
        second, micros = divmod(ns // 1000, 1_000_000)
        cached = self._second
        if cached[0] != second:
            cached = (second, dt.datetime.fromtimestamp(second, dt.UTC).isoformat()[:-6])
            self._second = cached
        return f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        event_dict["timestamp"] = self.format(time.time_ns())
        return event_dict


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
        IsoUtcStamper(),
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
