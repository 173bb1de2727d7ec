"""The basic.ack frames the inbox channels write below aiormq (adapters/rabbit_deliveries.py):
packed by hand, byte for byte what pamqp marshals, which the broker parses."""

from __future__ import annotations

import pamqp.frame
import pytest
from pamqp import commands as spec

from services.exchange.adapters.rabbit_deliveries import ack_frame


@pytest.mark.parametrize(
    ("channel", "tag", "multiple"),
    [(1, 1, False), (7, 5, True), (2047, 2**40 + 3, False), (65535, 2**63 - 1, True)],
)
def test_an_ack_frame_is_what_pamqp_marshals(channel: int, tag: int, *, multiple: bool) -> None:
    """Channel, delivery tag and `multiple` in the places pamqp puts them, and back."""
    frame = ack_frame(channel, tag, multiple=multiple)
    assert frame == pamqp.frame.marshal(
        spec.Basic.Ack(delivery_tag=tag, multiple=multiple), channel
    )
    consumed, number, parsed = pamqp.frame.unmarshal(frame)
    assert (consumed, number) == (len(frame), channel)
    assert isinstance(parsed, spec.Basic.Ack)
    assert (parsed.delivery_tag, parsed.multiple) == (tag, multiple)
