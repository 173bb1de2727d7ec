"""Building a gRPC aio server with health, reflection, and the logging and text interceptors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import tracing
from services.common.errors import FieldViolation, ValidationError
from services.common.grpc_errors import abort_with_domain_error, refusal_reason
from services.common.grpc_handlers import Streaming, Unary, rewrapped
from services.common.grpc_limits import LimitsInterceptor, channel_options
from services.common.grpc_unreachable import UnreachableInterceptor
from services.common.limits import LimitSettings
from services.common.text import control_character

log = structlog.get_logger(__name__)

DEFAULT_LIMITS = LimitSettings()


# Told of every refused call: (method, ErrorInfo reason); e.g. AxisMetrics.rejected.
RefusalSink = Callable[[str, str], None]


class LoggingInterceptor(grpc.aio.ServerInterceptor):
    """Binds the RPC name to the log context of everything the call logs, and writes one
    canonical `rpc_finished` line per call with its outcome (status code, and the ErrorInfo
    reason of a refusal) and duration. Each refusal is also reported, once, to `refusals`."""

    def __init__(self, refusals: RefusalSink | None = None) -> None:
        self._refusals = refusals

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        structlog.contextvars.bind_contextvars(rpc=method)
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(_QUIET_PREFIXES):
            return handler
        return _logged(handler, method, self._refusals)


# Health probes and reflection would drown the log in one line per poll.
_QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _outcome(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    # GeneratorExit: grpcio stopped taking a stream's answers and closed its generator, which
    # it does only when the call is over (the client cancelled it or went away); a failure of
    # the server raises its own exception out of the generator instead.
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    # None until the handler set a status (the stubs say StatusCode).
    code = cast("grpc.StatusCode | None", context.code())
    if code is not None:
        return code.name
    return "UNKNOWN" if error is not None else "OK"


def _finished(
    context: grpc.aio.ServicerContext[Any, Any],
    start: float,
    error: BaseException | None,
    method: str,
    refusals: RefusalSink | None,
) -> None:
    outcome = _outcome(context, error)
    fields: dict[str, object] = {
        "outcome": outcome,
        "duration_ms": round((time.monotonic() - start) * 1000, 2),
    }
    reason = refusal_reason()
    if reason is not None:
        fields["reason"] = reason
        if refusals is not None:
            refusals(method, reason)
    if outcome == "UNKNOWN":
        log.error("rpc_finished", **fields, exc_info=error)
    else:
        log.info("rpc_finished", **fields)


def _logged(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, refusals: RefusalSink | None
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, timed and logged once at the end, whatever its shape."""

    def unary(inner: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start, error = time.monotonic(), None
            try:
                with tracing.rpc_span(method, context.invocation_metadata()):
                    return await inner(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                _finished(context, start, error, method, refusals)

        return call

    def streaming(inner: Streaming) -> Streaming:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start, error = time.monotonic(), None
            try:
                with tracing.rpc_span(method, context.invocation_metadata(), streaming=True):
                    async for response in inner(request, context):
                        yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                _finished(context, start, error, method, refusals)

        return stream

    return rewrapped(handler, unary, streaming)


class ControlCharacterInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a request whose text holds a control character (services/common/text.py) with
    VALIDATION and every offending field named, before any servicer or store sees it. Requests
    that stream carry no free text (upload chunks), so unary requests are the ones checked."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or (handler.unary_unary is None and handler.unary_stream is None):
            return handler

        def unary(inner: Unary) -> Unary:
            async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await _refuse_control_characters(request, context)
                return await inner(request, context)

            return call

        def streaming(inner: Streaming) -> Streaming:
            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await _refuse_control_characters(request, context)
                async for response in inner(request, context):
                    yield response

            return stream

        return rewrapped(handler, unary, streaming)


async def _refuse_control_characters(
    request: object, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    if not isinstance(request, Message):
        return  # a handler without a protobuf codec (raw bytes): nothing to walk
    problems = control_problems(request)
    if problems:
        await abort_with_domain_error(
            context, ValidationError("control characters in the request's text", problems)
        )


def control_problems(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every string of `message` (nested messages, repeated fields and maps included) that holds
    a control character, named by its path as the BadRequest field is: `header.subject`,
    `attachments[1].name`."""
    problems: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            items = [(f"{path}[{key!r}]", key) for key in value] + [
                (f"{path}[{key!r}]", item) for key, item in value.items()
            ]
        elif field.is_repeated:
            items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
        else:
            items = [(path, value)]
        for where, item in items:
            if isinstance(item, Message):
                problems += control_problems(item, f"{where}.")
            elif isinstance(item, str) and (found := control_character(item)) is not None:
                problems.append(FieldViolation(where, f"contains the control character {found}"))
    return problems


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.aio.Server], None]],
    service_names: Iterable[str],
    health_servicer: health.aio.HealthServicer,
    *,
    credentials: grpc.ServerCredentials | None = None,
    refusals: RefusalSink | None = None,
    share_port: bool = False,
    limits: LimitSettings = DEFAULT_LIMITS,
    agency_limits: LimitsInterceptor | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A server with our services, grpc.health.v1 and reflection; returns it and its bound port.
    `refusals` is told of every refused call (the metrics count them). `share_port`: several
    worker processes listen on the same address (SO_REUSEPORT; the kernel spreads connections
    among them); otherwise a port already in use is an error. `limits` bounds each connection;
    `agency_limits`, when given, each agency's calls."""
    # Logging first: it sees (and counts) the refusals of the interceptors after it; the limits
    # next, so that a refused call costs nothing more.
    interceptors: list[grpc.aio.ServerInterceptor] = [LoggingInterceptor(refusals)]
    if agency_limits is not None:
        interceptors.append(agency_limits)
    interceptors.append(ControlCharacterInterceptor())
    # Innermost: a handler failing on an unreachable database or broker answers UNAVAILABLE.
    interceptors.append(UnreachableInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[*channel_options(limits), ("grpc.so_reuseport", 1 if share_port else 0)],
    )
    for add in register:
        add(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not available")
    return server, port


async def set_serving(
    health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await health_servicer.set(name, status)
