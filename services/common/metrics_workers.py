"""One scrape, every worker: a process group's exposition summed over its worker processes.

`docaxis run` with DOCAXIS_WORKERS=N serves one address from N processes (SO_REUSEPORT), and a
scrape (MetricsService.GetMetrics, the gateway's /metrics) reaches whichever the kernel picks.
Each worker therefore serves its own counters on a local socket (in Linux's abstract namespace,
named after the gRPC port and the worker's index, so nothing is left on disk and only this host
reaches it); the worker that answers a scrape reads its siblings' and adds them to its own. Every
counter, histogram and gauge of the exposition is then the whole process group's: sums, but for
the few gauges where a sum means nothing (a certificate's expiry, a series' creation time), which
take the earliest. A sibling that does not answer within the deadline is left out, and
`docaxis_metrics_workers_answered` says how many were summed.

Replicas on other hosts are separate targets: each replica's own scrape sums its own workers,
and Prometheus (or whoever scrapes) sums the replicas, as for any horizontally scaled service.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

log = structlog.get_logger(__name__)

# A sibling busy for longer than this is left out of the scrape rather than delay it.
SIBLING_TIMEOUT_S = 1.0
# Gauges whose value is the same fact in every worker: the earliest, not the sum.
EARLIEST = frozenset({"docaxis_certificate_expiry_timestamp_seconds"})
# Times of a job elected among the workers: a worker that led it before keeps its own last
# time, so the group's is the latest, not the sum.
LATEST = frozenset(
    {
        "docaxis_peer_last_contact_timestamp_seconds",
        "docaxis_peer_poll_last_success_timestamp_seconds",
    }
)


def worker_socket(port: int, index: int) -> str:
    """The abstract-namespace socket of worker `index` of the process group on `port`."""
    return f"\0docaxis-metrics-{port}-{index}"


def _abstract_socket(name: str, *, listen: bool) -> socket.socket:
    """A Unix socket bound to (listening on) `name`, or unconnected. The socket module does the
    binding and connecting: uvloop (services/common/event_loop.py) takes a path as a C string,
    so it cannot name an abstract socket (EINVAL), but it serves and reads one it is given."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if listen:
            sock.bind(name)
            sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_worker_metrics(name: str, render: Callable[[], str]) -> asyncio.Server:
    """Answers each connection on `name` with this worker's own exposition, then closes it."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(render().encode("utf-8"))
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_unix_server(answer, sock=_abstract_socket(name, listen=True))


async def read_worker_metrics(name: str, timeout_s: float = SIBLING_TIMEOUT_S) -> str | None:
    """A sibling's exposition; None when it did not answer in time (stopping, or stuck)."""
    try:
        async with asyncio.timeout(timeout_s):
            sock = _abstract_socket(name, listen=False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, name)
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            try:
                return (await reader.read()).decode("utf-8")
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        log.warning("metrics_worker_unanswered", worker=name.lstrip("\0"), error=repr(exc))
        return None


def _combine(name: str, sample: Sample, value: float, current: float) -> float:
    if name in EARLIEST or sample.name.endswith("_created"):
        return min(value, current)
    if name in LATEST:
        return max(value, current)
    return value + current


class _Summed(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def sum_expositions(expositions: Sequence[str]) -> str:
    """One exposition whose every series is the sum of that series over `expositions` (text
    format), families and series in the order they first appear."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Sample, float]]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in series:
                    first, current = series[key]
                    series[key] = (first, _combine(family.name, sample, sample.value, current))
                else:
                    series[key] = (sample, sample.value)
    for name, family in families.items():
        for sample, value in values[name].values():
            family.add_sample(sample.name, sample.labels, value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Summed(list(families.values())))
    return generate_latest(registry).decode("utf-8")
