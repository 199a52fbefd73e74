"""OpenTelemetry: SERVER spans and duration histograms per the MCP semantic conventions (extra ``[otel]``).

Spans. With ``"otel"`` among the exporters, the capture middleware runs the exporter's request
hook (:class:`OTelSpans`): it starts a SERVER span named ``{mcp.method.name} {tool or prompt}``,
parented on the ``traceparent`` in ``params._meta`` (so a client's trace continues), and makes
it the current context while the handler runs, so HTTP clients and database drivers
instrumented with OpenTelemetry appear as its children. Only attributes that are safe before
the privacy stage are set on the hot path (a protocol method name). The exporter's processor
puts the span's ids on the sanitized event before the event log writes it; the span is ended
by the exporter, after the privacy stage, with the request's real end time and the *sanitized*
event's attributes: session id and client address are pseudonyms, the error message is
redacted, and arguments (``gen_ai.tool.call.arguments``) only with ``export_arguments=True``,
then the redacted ones. Events without a live span (the proxy) get a span started after the
fact by the processor, from their start time, duration and trace context.

One span per request: the SDK's own ``OpenTelemetryMiddleware`` is taken out of
``server.middleware`` and FastMCP's native telemetry is set to ``off`` (see :func:`take_over`).

Metrics: ``mcp.server.operation.duration`` per request and ``mcp.server.session.duration``
when a session has been idle for :data:`SESSION_IDLE` seconds or the process exits, both in
seconds with the conventions' advised buckets. The client twins (``mcp.client.*``) are not
emitted: mcplens sits on the server side. When another instrumentation on the same meter
provider (a newer SDK, an auto-instrumentation) already registered one of these histograms,
mcplens does not record that one: each measurement is emitted once.

Current MCP conventions (OpenTelemetry GenAI semantic conventions): ``mcp.session.id`` is set
only for sessions of the handshake era; a 2026-07-28-era request has no protocol session, so a
stitched or derived id is never presented as one (and no session duration is recorded for it).
``traceparent``, ``tracestate`` and ``baggage`` in ``params._meta`` are all propagated: the
handler runs with the client's baggage current, with or without a trace context beside it.

Providers. If the application has set an SDK TracerProvider / MeterProvider, mcplens uses it.
Otherwise it builds its own from the standard ``OTEL_*`` variables (OTLP over HTTP/protobuf by
default, gRPC with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``; ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` ...), with ``service.name`` /
``service.version`` defaulting to the server's own, and installs it globally so other
instrumentation reports to the same place.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import extract
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from mcplens import _json
from mcplens import event as ev
from mcplens.capture.sdk import RequestHook
from mcplens.exporters.base import Exporter, ExporterContext, Processor

#: seconds; advised by the MCP semantic conventions for both duration histograms
DURATION_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]
#: a session with no request for this long is considered over (its duration is then recorded)
SESSION_IDLE = 1800.0
INSTRUMENTATION = "mcplens"

#: event fields copied onto the span as they are (after the privacy stage)
_SPAN_FIELDS = (
    ev.METHOD, ev.TOOL_NAME, ev.PROMPT_NAME, ev.OPERATION, ev.REQUEST_ID, ev.RESOURCE_URI, ev.RPC_CODE,
    ev.PROTOCOL_VERSION, ev.SESSION_ID, ev.TRANSPORT, ev.CLIENT_ADDRESS, ev.STATUS, ev.ERROR_CATEGORY,
    ev.REQUEST_SIZE, ev.RESPONSE_SIZE, ev.RESPONSE_TOKENS, ev.CLIENT_NAME, ev.CLIENT_VERSION,
)
#: attributes of the duration histograms (bounded values only)
_METRIC_FIELDS = (ev.METHOD, ev.TOOL_NAME, ev.PROMPT_NAME, ev.OPERATION, ev.TRANSPORT, ev.PROTOCOL_VERSION, ev.RPC_CODE)
ARGUMENTS_ATTR = "gen_ai.tool.call.arguments"


#: the server histograms of the MCP conventions
MCP_HISTOGRAMS = ("mcp.server.operation.duration", "mcp.server.session.duration")
#: the first protocol version of the stateless era: no protocol session, so no ``mcp.session.id``
STATELESS_ERA = "2026-07-28"
_BAGGAGE = W3CBaggagePropagator()


def stateless_era(e: Mapping[str, Any]) -> bool:
    version = e.get(ev.PROTOCOL_VERSION)
    return isinstance(version, str) and version >= STATELESS_ERA


def protocol_session(e: Mapping[str, Any]) -> bool:
    """Whether the event's session is one the protocol has (``mcp.session.id``), not one mcplens derived."""
    return not stateless_era(e) and e.get(ev.SESSION_SOURCE) not in ev.DERIVED_SESSION_SOURCES


def incoming_context(meta: Any) -> Any:
    """The client's context from ``params._meta``: trace context and baggage (either alone)."""
    if not isinstance(meta, dict) or not ("traceparent" in meta or "baggage" in meta):
        return None
    ctx = extract(meta)
    if "baggage" in meta:  # even if the application's global propagator leaves baggage out
        ctx = _BAGGAGE.extract(meta, context=ctx)
    return ctx


def emitted_elsewhere(meter_provider: Any) -> set[str]:
    """The MCP server histograms another instrumentation registered on this meter provider."""
    names: set[str] = set()
    try:
        for scope, meter in list(getattr(meter_provider, "_meters", {}).items()):
            if getattr(scope, "name", None) == INSTRUMENTATION:
                continue
            for instrument in list(getattr(meter, "_instrument_id_instrument", {}).values()):
                if getattr(instrument, "name", None) in MCP_HISTOGRAMS:
                    names.add(instrument.name)
    except Exception:  # noqa: BLE001 - an SDK without these internals: assume nobody else does
        pass
    return names


#: a protocol method name as the spec spells them (tools/call, notifications/initialized): safe before redaction
_PLAIN_METHOD = re.compile(r"[a-z]{1,20}(?:/[a-zA-Z_]{1,30}){0,2}")


def span_name(method: str, target: Any) -> str:
    return f"{method} {target}" if isinstance(target, str) and target else method


# -- providers ------------------------------------------------------------------------------------
_providers_lock = threading.Lock()
_owned: list[Any] = []
#: exports mcplens's own providers failed (collector down, timeout) and the spans those held
export_failures = {"exports": 0, "spans": 0}


def _counted(exporter: Any) -> Any:
    """``exporter`` with its failed exports counted (``export_failures``), for the health record."""
    if exporter is None:
        return None
    export = exporter.export

    def counting(batch: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = export(batch, *args, **kwargs)
        except Exception:
            result = None
        if getattr(result, "name", None) != "SUCCESS":
            export_failures["exports"] += 1
            export_failures["spans"] += len(batch) if isinstance(batch, list | tuple) else 0
        return result

    exporter.export = counting
    return exporter


def _resource(service_name: str | None, service_version: str | None) -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, str] = {}
    env_attrs = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if service_name and not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in env_attrs:
        attrs["service.name"] = service_name
    if service_version and "service.version=" not in env_attrs:
        attrs["service.version"] = service_version
    return Resource.create(attrs)


def _protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip().lower()


def _span_exporter() -> Any:
    choice = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if choice == "none":
        return None
    if choice == "console":  # never stdout: it belongs to a stdio server's protocol
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if _protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPSpanExporter()


def _metric_exporter() -> Any:
    choice = (os.environ.get("OTEL_METRICS_EXPORTER") or "otlp").strip().lower()
    if choice == "none":
        return None
    if choice == "console":
        import sys

        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stderr)
    if _protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
    return OTLPMetricExporter()


def ensure_providers(service_name: str | None, service_version: str | None) -> tuple[Any, Any]:
    """The global tracer and meter providers; built from ``OTEL_*`` and installed where none is set."""
    with _providers_lock:
        tp = trace.get_tracer_provider()
        if isinstance(tp, trace.ProxyTracerProvider):
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            # not shut down by the SDK's own atexit hook: that runs before mcplens's pipeline has flushed
            # its last events (atexit is last-in, first-out), and an unreachable collector would hold up
            # the exit with its retries (12-15 s); OTelExporter.shutdown shuts it down under the exporters' deadline
            provider = TracerProvider(resource=_resource(service_name, service_version), shutdown_on_exit=False)
            exporter = _counted(_span_exporter())
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            _owned.append(provider)
            tp = trace.get_tracer_provider()
        mp = otel_metrics.get_meter_provider()
        if type(mp).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            exporter = _counted(_metric_exporter())
            readers = [PeriodicExportingMetricReader(exporter)] if exporter is not None else []
            meters = MeterProvider(resource=_resource(service_name, service_version), metric_readers=readers,
                                   shutdown_on_exit=False)
            otel_metrics.set_meter_provider(meters)
            _owned.append(meters)
            mp = otel_metrics.get_meter_provider()
        return tp, mp


def force_flush() -> None:
    """Export what mcplens's own providers hold (the process exits soon, or a test checks)."""
    for provider in list(_owned):
        try:
            provider.force_flush()
        except Exception:  # noqa: BLE001
            pass


_open_sinks = 0


def _sink_opened() -> None:
    global _open_sinks
    with _providers_lock:
        _open_sinks += 1


def _sink_closed() -> None:
    """The last sink out shuts down the providers mcplens built (after flushing them)."""
    global _open_sinks
    with _providers_lock:
        _open_sinks = max(0, _open_sinks - 1)
        if _open_sinks:
            return
        owned = list(_owned)
    for provider in owned:
        try:
            provider.force_flush()
            provider.shutdown()
        except Exception:  # noqa: BLE001
            pass


# -- the request path: a live SERVER span around the handler ----------------------------------------
class OTelSpans(RequestHook):
    """The OTel exporter's part of the in-process request path.

    ``enter`` starts a SERVER span parented on the client's ``_meta`` trace context and makes it
    current while the handler runs; ``exit`` ends nothing, it notes the end time; ``attach`` (on
    the writer thread, once the event is built) parks the span under the event's id for the
    exporter's processor and export to finish. Nothing the client chose (tool, prompt or method
    names) is put on the span before the privacy stage has run.
    """

    __slots__ = ("_tracer", "_exporter")

    def __init__(self, tracer: Any, exporter: OTelExporter) -> None:
        self._tracer = tracer
        self._exporter = exporter

    def enter(self, ctx: Any) -> Any:
        method = ctx.method if isinstance(ctx.method, str) and _PLAIN_METHOD.fullmatch(ctx.method) else "mcp"
        parent = incoming_context(ctx.meta)
        span = self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    def exit(self, token: Any) -> Any:
        end_ns = time.time_ns()
        if token is None:
            return None
        span, attached = token
        otel_context.detach(attached)
        return span, end_ns

    def attach(self, event: dict[str, Any] | None, carried: Any) -> None:
        if carried is None:
            return
        span, end_ns = carried
        if event is None:  # dropped at the queue, an internal dispatch, a builder fault: no event
            span.end(end_ns)
        else:
            self._exporter.park(event[ev.EVENT_ID], span, end_ns)


# -- the exporter ------------------------------------------------------------------------------
class OTelExporter(Exporter):
    """Spans and MCP duration histograms from sanitized events.

    Its :meth:`processor` (writer thread, after the privacy stage, before any sink) puts the span's trace and span
    ids on each request event, starting a span after the fact for events captured without a
    live one (the proxies); :meth:`export` only reads: it ends each span with the sanitized
    event's attributes and records the metrics.
    """

    name = "otel"
    extra = "otel"

    def __init__(self, *, service_name: str | None = None, service_version: str | None = None,
                 export_arguments: bool = False) -> None:
        self.service_name = service_name
        self.service_version = service_version
        self.export_arguments = export_arguments
        self._pending: dict[str, tuple[Any, int, float]] = {}
        self._lock = threading.Lock()
        self._sessions: dict[str, list[Any]] = {}  # id -> [first start, last end, attributes]
        self._closed = False
        self._started = False

    @classmethod
    def from_settings(cls, settings: Any) -> OTelExporter:
        return cls(export_arguments=settings.export_arguments)

    def setup(self, ctx: ExporterContext | None = None) -> None:
        """The tracer and meter (building providers from ``OTEL_*`` where the app set none)."""
        if ctx is not None:
            self.service_name = self.service_name or ctx.service_name
            self.service_version = self.service_version or ctx.service_version
        tp, mp = ensure_providers(self.service_name, self.service_version)
        from mcplens import __version__

        self.tracer = tp.get_tracer(INSTRUMENTATION, __version__)
        self._meter_provider = mp
        self.elsewhere = emitted_elsewhere(mp)
        meter = mp.get_meter(INSTRUMENTATION, __version__)
        self.operation = meter.create_histogram(
            "mcp.server.operation.duration", unit="s", description="MCP request duration as the server saw it",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.session = meter.create_histogram(
            "mcp.server.session.duration", unit="s", description="MCP session duration as the server saw it",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        if not self._started:
            self._started = True
            _sink_opened()

    # -- hooks ----------------------------------------------------------------------------------
    def request_hook(self) -> OTelSpans:
        return OTelSpans(self.tracer, self)

    def processor(self) -> Processor:
        return self.enrich

    def instrumenting(self, lowlevel_server: Any, framework: str) -> None:
        take_over(lowlevel_server, framework == "fastmcp")

    def park(self, event_id: str, span: Any, end_ns: int) -> None:
        with self._lock:
            self._pending[event_id] = (span, end_ns, time.monotonic())

    def enrich(self, e: dict[str, Any]) -> dict[str, Any]:
        """The processor: the span's trace and span ids on the sanitized event, before any sink.

        An event captured without a live span (the proxies) gets one started now, after the fact,
        from its start time and trace context, under a name safe before redaction; export
        renames it from the sanitized event and ends it at start + duration.
        """
        if e.get(ev.EVENT_KIND) not in ("request", "notification"):
            return e
        event_id = e.get(ev.EVENT_ID)
        if not isinstance(event_id, str):
            return e
        with self._lock:
            parked = self._pending.get(event_id)
        span = parked[0] if parked is not None else self._after_the_fact(e, event_id)
        if span is not None:
            sc = span.get_span_context()
            if sc.is_valid:
                e[ev.TRACE_ID] = f"{sc.trace_id:032x}"
                e[ev.SPAN_ID] = f"{sc.span_id:016x}"
        return e

    def _after_the_fact(self, e: dict[str, Any], event_id: str) -> Any:
        """A span for an event captured without one (the proxy): start, duration, trace context."""
        start = e.get(ev.TIME)
        if not isinstance(start, int | float):
            return None
        parent = None
        try:
            trace_id = int(str(e.get(ev.TRACE_ID)), 16)
            parent_id = int(str(e.get(ev.PARENT_SPAN_ID)), 16) if e.get(ev.PARENT_SPAN_ID) else 0
            if trace_id and parent_id:
                parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                    trace_id, parent_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        except ValueError:
            pass
        start_ns = int(start * 1e9)
        duration = e.get(ev.DURATION)
        end_ns = start_ns + int((duration if isinstance(duration, int | float) else 0) * 1e9)
        method = e.get(ev.METHOD)
        name = method if isinstance(method, str) and _PLAIN_METHOD.fullmatch(method) else "mcp"
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, start_time=start_ns)
        self.park(event_id, span, end_ns)
        return span

    def attributes(self, e: Mapping[str, Any]) -> dict[str, Any]:
        attrs = {k: e[k] for k in _SPAN_FIELDS if isinstance(e.get(k), str | int | float | bool)}
        if not protocol_session(e):
            attrs.pop(ev.SESSION_ID, None)
        if e.get(ev.STATUS) not in (None, ev.OK) and e.get(ev.ERROR_TYPE) is not None:
            attrs[ev.ERROR_TYPE] = str(e[ev.ERROR_TYPE])
        if self.export_arguments and e.get(ev.ARGUMENTS) is not None:
            attrs[ARGUMENTS_ATTR] = _json.compact(e[ev.ARGUMENTS])
        return attrs

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        """End each event's span with its sanitized attributes; record the metrics. Reads only."""
        if len(self.elsewhere) < len(MCP_HISTOGRAMS):  # another instrumentation may register late
            self.elsewhere |= emitted_elsewhere(self._meter_provider)
        for e in events:
            kind = e.get(ev.EVENT_KIND)
            if kind not in ("request", "notification"):
                continue
            with self._lock:
                parked = self._pending.pop(e.get(ev.EVENT_ID), None)  # type: ignore[arg-type]
            if parked is not None:
                span, end_ns, _ = parked
                self._finish(span, e, self.attributes(e), end_ns)
            if kind == "request":
                self._metrics(e)
        self._sweep()

    def _finish(self, span: Any, e: Mapping[str, Any], attrs: dict[str, Any], end_ns: int) -> None:
        # a live span was named on the request path, before the privacy stage, from what was safe then
        span.update_name(span_name(str(e.get(ev.METHOD)), e.get(ev.TOOL_NAME) or e.get(ev.PROMPT_NAME)))
        span.set_attributes(attrs)
        if e.get(ev.STATUS) not in (None, ev.OK, ev.CANCELLED):
            message = e.get(ev.ERROR_MESSAGE)
            span.set_status(Status(StatusCode.ERROR, message if isinstance(message, str) else None))
        span.end(end_ns)

    def _metrics(self, e: Mapping[str, Any]) -> None:
        duration = e.get(ev.DURATION)
        attrs = {k: e[k] for k in _METRIC_FIELDS if isinstance(e.get(k), str)}
        if e.get(ev.STATUS) not in (None, ev.OK) and e.get(ev.ERROR_TYPE) is not None:
            attrs[ev.ERROR_TYPE] = str(e[ev.ERROR_TYPE])
        if isinstance(duration, int | float) and MCP_HISTOGRAMS[0] not in self.elsewhere:
            self.operation.record(duration, attrs)
        session = e.get(ev.SESSION_ID)
        start = e.get(ev.TIME)
        if isinstance(session, str) and isinstance(start, int | float) and protocol_session(e):
            end = start + (duration if isinstance(duration, int | float) else 0.0)
            with self._lock:
                s = self._sessions.get(session)
                if s is None:
                    self._sessions[session] = [start, end, {
                        k: e[k] for k in (ev.TRANSPORT, ev.PROTOCOL_VERSION) if isinstance(e.get(k), str)
                    }]
                else:
                    s[0], s[1] = min(s[0], start), max(s[1], end)

    def _sweep(self, *, everything: bool = False) -> None:
        """Record sessions idle past SESSION_IDLE; end spans whose event a processor dropped."""
        now_wall, now = time.time(), time.monotonic()
        with self._lock:
            over = [k for k, s in self._sessions.items() if everything or now_wall - s[1] > SESSION_IDLE]
            ended = [self._sessions.pop(k) for k in over]
            stale = [k for k, p in self._pending.items() if everything or now - p[2] > 30.0]
            spans = [self._pending.pop(k) for k in stale]
        for first, last, attrs in ended:
            if MCP_HISTOGRAMS[1] not in self.elsewhere:
                self.session.record(max(0.0, last - first), attrs)
        for span, end_ns, _ in spans:
            span.end(end_ns)

    def lost(self) -> int:
        """Spans the exporters failed to deliver (the pipeline counts them as exporter drops)."""
        return export_failures["spans"]

    def flush(self) -> None:
        force_flush()

    def shutdown(self) -> None:
        self._sweep(everything=True)
        force_flush()  # the pipeline runs this under the exporters' deadline and moves on
        if not self._closed and self._started:
            self._closed = True
            _sink_closed()


def take_over(low: Any, fastmcp_server: bool) -> list[Any]:
    """Make mcplens's span the only SERVER span per request; returns the SDK middleware removed.

    The SDK seeds ``OpenTelemetryMiddleware`` into ``Server.middleware``; FastMCP removes it and
    opens its own spans unless ``fastmcp.settings.telemetry_mode`` is ``off`` (its
    ``propagation_only`` mode would re-attach the client's context under our span, and tool
    spans would become siblings of ours instead of children).
    """
    removed = [m for m in low.middleware if type(m).__name__ == "OpenTelemetryMiddleware"]
    for m in removed:
        low.middleware.remove(m)
    if fastmcp_server:
        try:
            import fastmcp

            fastmcp.settings.telemetry_mode = "off"
        except Exception:  # noqa: BLE001
            pass
    return removed
