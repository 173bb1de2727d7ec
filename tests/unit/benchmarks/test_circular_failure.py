"""A circular that fails (a commune's stream refused before Submit, say) is reported as not
timed, with why, instead of ending the whole bench."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc

from benchmarks.__main__ import _circular


async def _failing_circular(*_args: Any, **_kwargs: Any) -> Any:
    raise grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "the message broker dropped this stream; reconnect",
    )


async def test_a_failed_circular_is_reported_not_timed() -> None:
    axis: Any = SimpleNamespace(address="127.0.0.1:1", pid=0)
    none: Any = None
    result = await _circular(_failing_circular, axis, none, none, none, ["a", "b"], none)
    assert result.mode == "pull"
    assert result.recipients == 2
    assert result.acknowledged == 0
    assert result.refused == (
        "failed: UNAVAILABLE: the message broker dropped this stream; reconnect"
    )
