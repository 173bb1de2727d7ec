"""Every server-side concern of a gRPC call in one interceptor, each in turn: the log context
and the canonical `rpc_finished` line (with the call's trace span), the per-agency limits, the
control-character check of requests, and UNAVAILABLE for an unreachable database or broker.

Why one layer: as four interceptors, each call awaited four `intercept_service`s, rebuilt four
method handlers, and ran through four nested coroutines (four async generators per streamed
message); together about 40 % of the server's CPU for a bare unary call (docs/perf/README.md,
"The call's fixed costs"). Here a method's handler is wrapped once, on its first call, and each
call runs through one coroutine (or generator) of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import Message

from services.common import tracing
from services.common.errors import ValidationError
from services.common.grpc_errors import abort_with_domain_error, refusal_reason
from services.common.grpc_handlers import Streaming, Unary, rewrapped
from services.common.grpc_limits import AgencyCallLimits
from services.common.grpc_text import control_problems
from services.common.grpc_unreachable import UNREACHABLE, refuse_unreachable
from services.common.limits import Slots

log = structlog.get_logger(__name__)

# Told of every refused call: (method, ErrorInfo reason); e.g. AxisMetrics.rejected.
RefusalSink = Callable[[str, str], None]

# Health probes and reflection would drown the log in one line per poll.
_QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What applies to the calls of one method, decided once."""

    method: str
    logged: bool
    limits: AgencyCallLimits | None
    # Requests that stream (uploads, ReceiveStream) carry no free text; unary ones are checked.
    check_text: bool


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Binds the RPC name to the log context of everything the call logs and writes one
    `rpc_finished` line per call with its outcome (status code, and the ErrorInfo reason of a
    refusal) and duration, reporting each refusal once to `refusals`; then refuses an agency's
    call past its limits (`limits`), a request whose text holds a control character
    (VALIDATION, every offending field named), and answers UNAVAILABLE instead of UNKNOWN when
    the handler could not reach Postgres or RabbitMQ."""

    def __init__(
        self, refusals: RefusalSink | None = None, limits: AgencyCallLimits | None = None
    ) -> None:
        self._refusals = refusals
        self._limits = limits
        # method -> (the server's handler, ours around it): the server answers the same handler
        # object for every call of a method, so it is wrapped once.
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

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
        if handler is None:
            return None
        kept = self._wrapped.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        limits = self._limits
        plan = _Plan(
            method=method,
            logged=not method.startswith(_QUIET_PREFIXES),
            limits=limits if limits is not None and limits.applies_to(method) else None,
            check_text=handler.unary_unary is not None or handler.unary_stream is not None,
        )
        return rewrapped(
            handler,
            lambda inner: self._unary(inner, plan),
            lambda inner: self._streaming(inner, plan),
        )

    def _span(
        self, plan: _Plan, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool
    ) -> contextlib.AbstractContextManager[object]:
        if not plan.logged:
            return contextlib.nullcontext()
        return tracing.rpc_span(plan.method, context.invocation_metadata(), streaming=streaming)

    def _unary(self, inner: Unary, plan: _Plan) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start, error = time.monotonic(), None
            try:
                with self._span(plan, context, streaming=False):
                    held = await _admitted(plan, request, context, streaming=False)
                    try:
                        return await inner(request, context)
                    except UNREACHABLE as exc:
                        await refuse_unreachable(context, exc)
                    finally:
                        if held is not None:
                            held[0].release(held[1])
            except BaseException as exc:
                error = exc
                raise
            finally:
                if plan.logged:
                    _finished(context, start, error, plan.method, self._refusals)
                error = None  # as in _streaming: no cycle through this frame

        return call

    def _streaming(self, inner: Streaming, plan: _Plan) -> Streaming:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start, error = time.monotonic(), None
            try:
                with self._span(plan, context, streaming=True):
                    held = await _admitted(plan, request, context, streaming=True)
                    try:
                        async for response in inner(request, context):
                            yield response
                    except UNREACHABLE as exc:
                        await refuse_unreachable(context, exc)
                    finally:
                        # However the stream ends: closed, cancelled, or its connection found
                        # dead.
                        if held is not None:
                            held[0].release(held[1])
            except BaseException as exc:
                error = exc
                raise
            finally:
                if plan.logged:
                    _finished(context, start, error, plan.method, self._refusals)
                # The exception's traceback holds this frame: left here, it is a reference
                # cycle that keeps the ended call's objects for the cyclic collector.
                error = None

        return stream


async def _admitted(
    plan: _Plan, request: Any, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool
) -> tuple[Slots, str] | None:
    """Admits the call past its agency's limits and checks its request's text, or refuses it;
    the slot it holds (to release once it ends), if any. A unary answer to a client stream is an
    upload, drained before a refusal (grpc_handlers.drain_requests)."""
    held = None
    if plan.limits is not None:
        upload = request if not streaming and isinstance(request, AsyncIterator) else None
        agency = await plan.limits.admit(
            plan.method, request, context, uploading=upload is not None
        )
        if agency is not None:
            slots = plan.limits.slots(plan.method, streaming=streaming)
            await plan.limits.hold(slots, agency, context, upload)
            held = (slots, agency)
    if plan.check_text:
        try:
            await _refuse_control_characters(request, context)
        except BaseException:
            if held is not None:
                held[0].release(held[1])
            raise
    return held


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
