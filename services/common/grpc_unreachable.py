"""UNAVAILABLE, not UNKNOWN, for a call that failed because Postgres or RabbitMQ could not be
reached: during a failover (a promoted standby, a lost broker node) or a restart, a DMS is told
to retry shortly instead of seeing a bug."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from services.common.errors import UnavailableError
from services.common.grpc_errors import abort_with_domain_error
from services.common.grpc_handlers import Streaming, Unary, rewrapped
from services.common.postgres import TRANSIENT_ERRORS
from services.common.rabbit import BROKER_ERRORS

log = structlog.get_logger(__name__)

# What a database or broker that is down, restarting or failing over raises. Nothing was
# acknowledged: the call's transaction did not commit, so a retry is safe (Submit and the
# acknowledgements are idempotent).
UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, *BROKER_ERRORS)
RETRY_AFTER_S = 1.0


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    log.warning("rpc_backend_unreachable", error=repr(exc))
    await abort_with_domain_error(
        context,
        UnavailableError(
            "the database or the message broker is unreachable; retry", retry_after_s=RETRY_AFTER_S
        ),
    )


class UnreachableInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        def unary(inner: Unary) -> Unary:
            async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    return await inner(request, context)
                except UNREACHABLE as exc:
                    await _refuse(context, exc)

            return call

        def streaming(inner: Streaming) -> Streaming:
            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    async for response in inner(request, context):
                        yield response
                except UNREACHABLE as exc:
                    await _refuse(context, exc)

            return stream

        return rewrapped(handler, unary, streaming)
