"""The logging of a service (services/common/logs.py): our lines and the libraries' records as
JSON lines on one stream, the level applied to both, and a log line never failing its caller."""

from __future__ import annotations

import logging

import pytest
import structlog

from tests.service_logging import service_logging


def test_our_lines_and_the_libraries_records_share_the_stream_and_the_level() -> None:
    log = structlog.get_logger("services.test")
    with service_logging("WARNING") as lines:
        structlog.contextvars.bind_contextvars(rpc="/test/Call")
        log.info("below_the_level")
        log.warning("ours", count=1)
        logging.getLogger("grpc.test").info("below the level too")
        logging.getLogger("grpc.test").warning("theirs")
        ours, theirs = lines()
    assert {key: ours[key] for key in ("event", "count", "rpc", "level", "logger")} == {
        "event": "ours",
        "count": 1,
        "rpc": "/test/Call",
        "level": "warning",
        "logger": "services.test",
    }
    assert {key: theirs[key] for key in ("event", "rpc", "level", "logger")} == {
        "event": "theirs",
        "rpc": "/test/Call",
        "level": "warning",
        "logger": "grpc.test",
    }
    assert ours["timestamp"].endswith("Z")
    assert theirs["timestamp"].endswith("Z")


class _Full:
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_line_that_cannot_be_written_does_not_fail_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError then says nothing
    with service_logging():
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        monkeypatch.setattr(handler, "stream", _Full())
        structlog.get_logger("services.test").info("lost", reason="the disk is full")
