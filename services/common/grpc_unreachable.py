"""UNAVAILABLE, not UNKNOWN, for a call that failed because Postgres or RabbitMQ could not be
reached: during a failover (a promoted standby, a lost broker node) or a restart, a DMS is told
to retry shortly instead of seeing a bug."""

from __future__ import annotations

from typing import Any

import grpc
import structlog

from services.common.errors import UnavailableError
from services.common.grpc_errors import abort_with_domain_error
from services.common.postgres import TRANSIENT_ERRORS
from services.common.rabbit import BROKER_ERRORS

log = structlog.get_logger(__name__)

# What a database or broker that is down, restarting or failing over raises. Nothing was
# acknowledged: the call's transaction did not commit, so a retry is safe (Submit and the
# acknowledgements are idempotent).
UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, *BROKER_ERRORS)
RETRY_AFTER_S = 1.0


async def refuse_unreachable(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException
) -> None:
    """Answers UNAVAILABLE for a call whose handler raised one of UNREACHABLE (applied by
    grpc_calls.CallInterceptor)."""
    log.warning("rpc_backend_unreachable", error=repr(exc))
    await abort_with_domain_error(
        context,
        UnavailableError(
            "the database or the message broker is unreachable; retry", retry_after_s=RETRY_AFTER_S
        ),
    )
