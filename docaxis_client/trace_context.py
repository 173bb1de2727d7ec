"""The caller's trace, handed to docaxis with each call when the application uses OpenTelemetry.

docaxis continues a call's trace when its metadata carries a W3C ``traceparent``, so that a
DMS's own spans and docaxis's (the Submit, and the publish, push and acknowledgement of each
copy) form one trace in the DMS's tracing tool. OpenTelemetry is optional: without it, or
outside any span, nothing is added.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def _propagate() -> ModuleType | None:
    try:
        from opentelemetry import propagate
    except ImportError:  # the application does not use OpenTelemetry
        return None
    return propagate


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current span's context as call metadata (``traceparent``, and whatever else the
    application's OpenTelemetry propagators carry); empty without OpenTelemetry or a span."""
    propagate = _propagate()
    if propagate is None:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())
