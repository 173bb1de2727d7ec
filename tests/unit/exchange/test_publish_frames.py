"""A relay message's frames (rabbit_publishing.marshal_publish): the bytes pamqp writes for
Basic.Publish, its content header and its body frames, whatever the properties, headers,
routing key, body size or channel; and the relay's own shape of message packed without pamqp's
generic walk (about 200 Python calls a message, four a bench document)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace

import pamqp.body
import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.base import BasicProperties
from pamqp.header import ContentHeader

from services.exchange.adapters.rabbit_publishing import marshal_publish

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _channel(number: int = 3, frame_max: int = 131072) -> SimpleNamespace:
    # What marshal_publish reads of an aiormq Channel.
    return SimpleNamespace(number=number, max_content_size=frame_max - 8)


@dataclass(frozen=True)
class _Message:
    channel: SimpleNamespace
    exchange: str
    routing_key: str
    properties: spec.Basic.Properties
    body: bytes


def _pamqps(m: _Message) -> bytes:
    """The frames as aiormq's basic_publish has pamqp marshal them."""
    number = m.channel.number
    frames = [
        pamqp.frame.marshal(
            spec.Basic.Publish(exchange=m.exchange, routing_key=m.routing_key, mandatory=True),
            number,
        ),
        pamqp.frame.marshal(ContentHeader(body_size=len(m.body), properties=m.properties), number),
    ]
    largest = m.channel.max_content_size
    for start in range(0, len(m.body), largest):
        chunk = pamqp.body.ContentBody(m.body[start : start + largest])
        frames.append(pamqp.frame.marshal(chunk, number))
    return b"".join(frames)


def _ours(m: _Message) -> bytes:
    parts: list[bytes] = []
    marshal_publish(
        m.channel,  # type: ignore[arg-type]  # duck-typed Channel
        parts,
        exchange=m.exchange,
        routing_key=m.routing_key,
        properties=m.properties,
        body=m.body,
    )
    return b"".join(parts)


def _relays(message_id: str = "3f1c2e4a-1b2c-4d5e-8f90-123456789abc") -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type="application/x-protobuf",
        headers={"traceparent": TRACEPARENT, "x-docaxis-published-at": 1765151234567890},
        delivery_mode=2,
        priority=0,
        message_id=message_id,
        message_type="docaxis.exchange.v1.CopyQueued",
    )


_TEXT = st.text(max_size=20)
_HEADER_VALUES = (
    st.text(max_size=40)
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from([-129, -128, 127, 128, 32767, 32768, 65535, 65536, 2**31, 2**32])
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)


@settings(database=None, deadline=None, max_examples=300)
@given(
    content_type=st.none() | _TEXT,
    headers=st.none() | st.dictionaries(st.text(max_size=12), _HEADER_VALUES, max_size=4),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 255),
    message_id=st.none() | _TEXT,
    message_type=st.none() | _TEXT,
    app_id=st.none() | st.just("docaxis"),
    routing_key=st.text(max_size=60),
    body=st.binary(max_size=300),
    number=st.integers(1, 2047),
    frame_max=st.sampled_from([4096, 131072]),
)
def test_the_frames_are_pamqps(
    content_type: str | None,
    headers: dict[str, object] | None,
    delivery_mode: int | None,
    priority: int | None,
    message_id: str | None,
    message_type: str | None,
    app_id: str | None,
    routing_key: str,
    body: bytes,
    number: int,
    frame_max: int,
) -> None:
    properties = spec.Basic.Properties(
        content_type=content_type,
        headers=headers,  # type: ignore[arg-type]
        delivery_mode=delivery_mode,
        priority=priority,
        message_id=message_id,
        message_type=message_type,
        app_id=app_id,
    )
    message = _Message(_channel(number, frame_max), "docaxis.inbox", routing_key, properties, body)
    try:
        want = _pamqps(message)
    except Exception as refused:  # noqa: BLE001  # whatever pamqp raises, ours must too
        with pytest.raises(type(refused)):
            _ours(message)
    else:
        assert _ours(message) == want


@pytest.mark.parametrize(
    ("routing_key", "body_size", "frame_max"),
    [
        ("inbox.000.00.02.H29", 600, 131072),
        ("inbox.xã-tân-an", 0, 131072),  # no body frame
        ("k" * 255, 20_000, 4096),  # the longest key; the body in five frames
    ],
)
def test_the_relays_messages_are_pamqps_bytes(
    routing_key: str, body_size: int, frame_max: int
) -> None:
    body = bytes(range(256)) * (body_size // 256) + b"x" * (body_size % 256)
    message = _Message(_channel(frame_max=frame_max), "docaxis.inbox", routing_key, _relays(), body)
    assert _ours(message) == _pamqps(message)


def test_other_properties_go_through_pamqp() -> None:
    properties = spec.Basic.Properties(
        content_type="text/plain",
        timestamp=dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
        headers={"nested": {"a": 1}, "flag": True, "n": None},
        cluster_id="",
    )
    message = _Message(_channel(), "docaxis.inbox", "k", properties, b"body")
    assert _ours(message) == _pamqps(message)


@pytest.mark.parametrize(
    ("exchange", "routing_key", "error"),
    [("bad exchange!", "k", ValueError), ("docaxis.inbox", "k" * 256, TypeError)],
)
def test_what_pamqp_refuses_is_refused(exchange: str, routing_key: str, error: type) -> None:
    with pytest.raises(error):
        _ours(_Message(_channel(), exchange, routing_key, _relays(), b"body"))


def test_the_relays_shape_is_packed_without_pamqps_marshalling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def generic(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("went through pamqp's generic marshalling")

    message = _Message(_channel(), "docaxis.inbox", "inbox.a", _relays("m-1"), b"payload")
    expected = _pamqps(message)
    monkeypatch.setattr(pamqp.frame, "marshal", generic)
    monkeypatch.setattr(BasicProperties, "marshal", generic)
    monkeypatch.setattr(spec.Basic.Publish, "marshal", generic)
    assert _ours(message) == expected
