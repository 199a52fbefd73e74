"""Prometheus: a ``/metrics`` endpoint fed from sanitized events (extra ``[prometheus]``).

One set of metrics per process, in its own registry (the application's default registry is
left alone). Labels never carry ids, arguments, URIs read or anything else unbounded: the
label values are the method, the target (tool / prompt name or the resource URI *template*),
the status and the error type, and each of these is capped (:data:`MAX_TARGETS` distinct
targets, then ``"other"``).

Exposed series (``duration`` buckets: the MCP semantic conventions' advice)::

    mcp_server_operation_duration_seconds{method,target,status}    histogram
    mcplens_request_size_bytes{method,target}                      histogram
    mcplens_response_size_bytes{method,target}                     histogram
    mcplens_calls_total{method,target,status,error_type}           counter
    mcplens_errors_total{method,target,error_category}             counter (status != ok)
    mcplens_rate_limited_total{target}                             counter
    mcplens_active_sessions                                        gauge (seen in the last 5 min)
    mcplens_pipeline_events_total{outcome=enqueued|dropped|written|faults|write_failures}
    process_cpu_seconds_total, process_resident_memory_bytes, ... (prometheus_client's collectors)

:func:`start_http_server` starts the endpoint (the proxy calls it too); :func:`record_rate_limit`
lets a limiter that records no event count a refusal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from mcplens import event as ev
from mcplens.exporters.base import Exporter, ExporterContext

#: seconds; the OpenTelemetry MCP semantic conventions' advised buckets
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: bytes: 64 B to 16 MB, x4
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
MAX_TARGETS = 200
MAX_METHODS = 64
MAX_ERROR_TYPES = 64
OTHER = "other"
SESSION_WINDOW = 300.0


class Capped:
    """Maps label values to themselves until ``limit`` distinct ones were seen, then to "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        value = str(value)
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(value)
        return value


class Metrics:
    """The process's metric objects and their registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.targets = Capped(MAX_TARGETS)
        self.methods = Capped(MAX_METHODS)
        self.error_types = Capped(MAX_ERROR_TYPES)
        self.duration = Histogram(
            "mcp_server_operation_duration_seconds", "MCP request duration as the server saw it",
            ["method", "target", "status"], buckets=DURATION_BUCKETS, registry=r,
        )
        self.request_size = Histogram(
            "mcplens_request_size_bytes", "Size of the request's params", ["method", "target"],
            buckets=SIZE_BUCKETS, registry=r,
        )
        self.response_size = Histogram(
            "mcplens_response_size_bytes", "Size of the JSON-RPC reply as sent", ["method", "target"],
            buckets=SIZE_BUCKETS, registry=r,
        )
        self.calls = Counter(
            "mcplens_calls", "MCP requests by outcome", ["method", "target", "status", "error_type"], registry=r,
        )
        self.errors = Counter(
            "mcplens_errors", "MCP requests that did not succeed, by where to start debugging",
            ["method", "target", "error_category"], registry=r,
        )
        self.rate_limited = Counter(
            "mcplens_rate_limited", "Requests refused by a rate limiter", ["target"], registry=r,
        )
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}
        self._pipelines: list[Callable[[], dict[str, int]]] = []
        r.register(_StateCollector(self))
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            try:
                collector(registry=r)
            except Exception:  # noqa: BLE001 - a platform without /proc: no process metrics
                pass

    def observe(self, e: Mapping[str, Any]) -> None:
        """Count one sanitized request event."""
        if e.get(ev.EVENT_KIND) != "request":
            return
        method = self.methods(e.get(ev.METHOD))
        target = self.targets(e.get(ev.TARGET) or e.get(ev.METHOD))
        status = str(e.get(ev.STATUS) or "")
        duration = e.get(ev.DURATION)
        if isinstance(duration, int | float):
            self.duration.labels(method, target, status).observe(duration)
        size = e.get(ev.REQUEST_SIZE)
        if isinstance(size, int | float):
            self.request_size.labels(method, target).observe(size)
        size = e.get(ev.RESPONSE_SIZE)
        if isinstance(size, int | float):
            self.response_size.labels(method, target).observe(size)
        self.calls.labels(method, target, status, self.error_types(e.get(ev.ERROR_TYPE))).inc()
        if status != ev.OK:
            self.errors.labels(method, target, str(e.get(ev.ERROR_CATEGORY) or "")).inc()
        if status == ev.RATE_LIMITED:
            self.rate_limited.labels(target).inc()
        session = e.get(ev.SESSION_ID)
        if isinstance(session, str):
            with self._lock:
                self._sessions[session] = time.monotonic()

    def active_sessions(self) -> int:
        cutoff = time.monotonic() - SESSION_WINDOW
        with self._lock:
            for key in [k for k, t in self._sessions.items() if t < cutoff]:
                del self._sessions[key]
            return len(self._sessions)

    def watch(self, counters: Callable[[], dict[str, int]]) -> None:
        """Export a pipeline's own counters (enqueued, dropped, written, faults, write_failures)."""
        self._pipelines.append(counters)


class _StateCollector:
    """Values read at scrape time: active sessions and the pipelines' counters."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        g = GaugeMetricFamily("mcplens_active_sessions", "Distinct sessions seen in the last 5 minutes")
        g.add_metric([], self._m.active_sessions())
        yield g
        c = CounterMetricFamily(
            "mcplens_pipeline_events", "The capture pipeline's own counters (dropped: queue full)", labels=["outcome"],
        )
        totals: dict[str, int] = {}
        for read in list(self._m._pipelines):
            for key, value in read().items():
                totals[key] = totals.get(key, 0) + value
        for key in ("enqueued", "dropped", "written", "faults", "write_failures"):
            c.add_metric([key], totals.get(key, 0))
        yield c


logger = logging.getLogger("mcplens")

_metrics: Metrics | None = None
_servers: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics, created on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def start_http_server(port: int = 9464, host: str = "127.0.0.1") -> tuple[str, int]:
    """Serve ``/metrics`` for this process's metrics on ``host:port`` (a daemon thread); idempotent.

    Returns the bound ``(host, port)``; ``port=0`` picks a free one. The proxy calls this too.
    """
    m = metrics()
    with _lock:
        for (h, p), _server in _servers.items():
            if h == host and (p == port or port == 0):
                return h, p
        server, _thread = _start_http_server(port, addr=host, registry=m.registry)
        bound = (host, int(server.server_address[1]))
        _servers[bound] = server
        return bound


def record_rate_limit(client: Any = None, tool: str | None = None) -> None:
    """Count one refused call for a limiter that records no event of its own.

    ``client`` is accepted for the caller's convenience and never becomes a label (ids are
    unbounded and personal). Events with status ``rate_limited`` are counted already: call this
    only for refusals that produce no event, or they count twice.
    """
    m = metrics()
    if tool:  # the caller's name for it came from a request: through the same redaction as every event
        from mcplens.privacy.redact import redact_text

        tool = redact_text(str(tool))[0]
    m.rate_limited.labels(m.targets(tool) or OTHER).inc()


class PrometheusExporter(Exporter):
    """Updates the process's metrics from each sanitized batch; serves ``/metrics`` if given a port."""

    name = "prometheus"

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.metrics = metrics()

    @classmethod
    def from_settings(cls, settings: Any) -> PrometheusExporter:
        return cls(settings.prometheus_port or None, settings.prometheus_host)

    def setup(self, ctx: ExporterContext | None = None) -> None:
        if ctx is not None:
            self.metrics.watch(ctx.counters)
        if self.port:
            host, port = start_http_server(self.port, self.host)
            logger.info("mcplens: Prometheus metrics on http://%s:%d/metrics", host, port)

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        observe = self.metrics.observe
        for e in events:
            observe(e)
