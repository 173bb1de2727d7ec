"""Answers a servicer serialized itself, handed to the wire as they are.

A server-streaming method whose answers repeat one large part (the copies of a circular share
a 49 KB delivery whose header names all 3,000 recipients) can serialize that part once and
answer each call with its own few fields before it: protobuf merges a message's concatenated
fields. The generated registration gives every method its message's SerializeToString, which
takes no bytes; `passing_serialized` wraps the server the generated code registers on, so that
the named methods' answers go out as they are when they are bytes and serialized as usual
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import grpc

Serializer = Callable[[Any], bytes]


class Registering(Protocol):
    """What a generated `add_..._to_server` calls on its server."""

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None: ...

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None: ...


# A serialized message in parts, in order: what goes to the wire is their join, made once where
# it goes (each join of a circular's 49 KB copy is a copy of it into fresh memory).
Parts = tuple[bytes, ...]


def delimited(field_number: int, *parts: bytes) -> Parts:
    """`parts` (together, a serialized message) as the field `field_number` of an enclosing
    message, in protobuf's wire format, still in parts: the field's key (wire type 2) and the
    payload's length, both as varints, then the payload."""
    size = sum(len(part) for part in parts)
    return (_varint(field_number << 3 | 2), _varint(size), *parts)


def length_delimited(field_number: int, *parts: bytes) -> bytes:
    """:func:`delimited`, joined once (each `+` of a 49 KB payload copied it into fresh memory
    again: three of them cost three times the join)."""
    return b"".join(delimited(field_number, *parts))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _passing(serialize: Serializer | None) -> Serializer | None:
    if serialize is None:
        return None
    inner = serialize

    def passing(answer: Any) -> bytes:
        return answer if isinstance(answer, bytes) else inner(answer)

    return passing


def _with_passing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    codec: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": _passing(handler.response_serializer),
    }
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(handler.unary_stream, **codec)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(handler.stream_stream, **codec)
    raise ValueError("only methods that stream their answers pass them serialized")


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, methods: frozenset[str]) -> None:
        self._inner = inner
        self._methods = methods

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None or handler_call_details.method not in self._methods:
            return handler
        return _with_passing(handler)


class _PassingServer:
    def __init__(self, server: Registering, service: str, methods: frozenset[str]) -> None:
        self._server = server
        self._service = service
        self._methods = methods

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        paths = frozenset(f"/{self._service}/{m}" for m in self._methods)
        self._server.add_generic_rpc_handlers(
            tuple(_Generic(handler, paths) for handler in generic_rpc_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {
                method: _with_passing(handler)
                if service_name == self._service and method in self._methods
                else handler
                for method, handler in method_handlers.items()
            },
        )


def passing_serialized(server: Registering, service: str, methods: Sequence[str]) -> Any:
    """`server`, for a generated `add_..._to_server` of `service` (its full name) to register
    on: `methods` (names within the service, each streaming its answers) pass bytes answers
    to the wire as they are."""
    return _PassingServer(server, service, frozenset(methods))
