"""A channel asked for while the broker connection is between nodes is a broker error."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.common.rabbit import BROKER_ERRORS, BrokerNotConnectedError, open_channel


class Reconnecting:
    """What aio-pika's robust connection does while it reconnects."""

    async def channel(self, **_: Any) -> None:
        raise RuntimeError("Connection was not opened")


class Broken:
    async def channel(self, **_: Any) -> None:
        raise RuntimeError("something else")


async def test_a_connection_between_nodes_raises_a_broker_error_the_callers_retry() -> None:
    with pytest.raises(BrokerNotConnectedError) as raised:
        await open_channel(cast(AbstractRobustConnection, Reconnecting()))
    assert isinstance(raised.value, BROKER_ERRORS)


async def test_another_runtime_error_is_not_taken_for_one() -> None:
    with pytest.raises(RuntimeError, match="something else"):
        await open_channel(cast(AbstractRobustConnection, Broken()))
