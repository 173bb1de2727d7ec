"""The per-agency limits (services/common/limits.py) on every gRPC call, and the per-connection
ones as the server's channel options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from docaxis.exchange.v1 import exchange_service_pb2 as xpb

from services.common.errors import DomainError, LimitExceededError
from services.common.grpc_errors import abort_with_domain_error
from services.common.grpc_handlers import drain_requests
from services.common.limits import AgencyLimits, CallClass, LimitSettings, Slots

_EXCHANGE = xpb.DESCRIPTOR.services_by_name["ExchangeService"].full_name
SUBMIT_METHODS = frozenset(
    f"/{_EXCHANGE}/{name}" for name in ("Submit", "SubmitBatch", "Recall", "ReportStatus")
)
SUBMIT_BATCH = f"/{_EXCHANGE}/SubmitBatch"
RECEIVE_METHODS = frozenset(f"/{_EXCHANGE}/{name}" for name in ("Receive", "ReceiveStream"))
# Probes and discovery are cheap and answered for anyone; the limits are for agencies' work.
_UNLIMITED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

# The agency a call acts for (its own certificate, or the gateway's delegation), or None when it
# acts for none or its credentials are refused (the servicer then answers the refusal).
AgencyOf = Callable[[grpc.aio.ServicerContext[Any, Any]], str | None]
# Told of every call a limit refused: (limit, agency), e.g. AxisMetrics.limit_refused.
LimitSink = Callable[[str, str], None]


def channel_options(settings: LimitSettings) -> list[tuple[str, int]]:
    """The gRPC core options that bound each connection (limits.py's docstring)."""

    def ms(seconds: float) -> int:
        return round(seconds * 1000)

    never = 2**31 - 1  # gRPC core's "infinite" for these durations
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_metadata_size", settings.max_metadata_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.keepalive_time_ms", ms(settings.keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_s)),
        # What gRPC core (1.85) actually waits for a ping's answer before it closes the
        # transport; without it an unanswered keepalive ping never ends a half-open connection.
        ("grpc.http2.ping_timeout_ms", ms(settings.keepalive_timeout_s)),
        # The server's own keepalive pings go on while a Receive stream sends nothing: a DMS
        # that vanished is found even when no mail is waiting for it.
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.min_client_ping_interval_s)),
        ("grpc.max_connection_idle_ms", ms(settings.max_connection_idle_s) or never),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age_s) or never),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_s)),
        ("grpc.server_handshake_timeout_ms", ms(settings.handshake_timeout_s)),
    ]


class AgencyCallLimits:
    """Refuses an agency's call past its rate, and its Receive stream past its cap, with
    RESOURCE_EXHAUSTED before any servicer sees the call (applied by grpc_calls.CallInterceptor)."""

    def __init__(
        self, limits: AgencyLimits, agency_of: AgencyOf, refused: LimitSink | None = None
    ) -> None:
        self._limits = limits
        self._agency_of = agency_of
        self._refused = refused

    @staticmethod
    def applies_to(method: str) -> bool:
        return not method.startswith(_UNLIMITED_PREFIXES)

    def slots(self, method: str, *, streaming: bool) -> Slots:
        """What a call of `method` holds while it runs: a Receive stream, or a call in flight."""
        return (
            self._limits.streams if streaming and method in RECEIVE_METHODS else self._limits.calls
        )

    async def admit(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        uploading: bool = False,
    ) -> str | None:
        """Takes the call's tokens; the agency it acts for (None: not limited). `uploading`: the
        request is a client stream that ends (an upload, not the ReceiveStream of a DMS)."""
        try:
            agency = self._agency_of(context)
        except DomainError:
            return None  # refused by the servicer, which authenticates every call
        if agency is None:
            return None
        call = CallClass.SUBMIT if method in SUBMIT_METHODS else CallClass.OTHER
        cost = len(request.documents) if method == SUBMIT_BATCH else 1
        try:
            self._limits.rates.take(agency, call, max(cost, 1))
        except LimitExceededError as exc:
            await self._refuse(context, agency, exc, request if uploading else None)
        return agency

    async def hold(
        self,
        slots: Slots,
        agency: str,
        context: grpc.aio.ServicerContext[Any, Any],
        upload: AsyncIterator[Any] | None = None,
    ) -> None:
        """A slot of `slots` for this call, or its refusal (the caller releases the slot)."""
        try:
            slots.acquire(agency)
        except LimitExceededError as exc:
            await self._refuse(context, agency, exc, upload)

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        agency: str,
        exc: LimitExceededError,
        upload: AsyncIterator[Any] | None = None,
    ) -> None:
        """Refuses the call; an `upload` once its client has sent it all (drain_requests)."""
        if self._refused is not None:
            self._refused(exc.limit, agency)
        if upload is not None:
            await drain_requests(upload)
        await abort_with_domain_error(context, exc)
