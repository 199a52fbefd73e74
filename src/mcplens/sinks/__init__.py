"""Sinks: the local event log, and the opt-in exporters fed after the privacy stage.

Exporters are isolated from each other and from the event log (see ``mcplens.pipeline``): each
runs on its own thread behind a bounded queue, drops and counts when it falls behind, and gets
a share of one shutdown deadline (``exporter_shutdown_timeout``, 2 s by default).

``exporters=["log", "otel", "prometheus", "sentry"]`` (or ``MCPLENS_EXPORTERS=log,otel``) turns
them on; each lives in its own module and imports its third-party package only when enabled.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("mcplens")

_INSTALLED = "_mcplens_exporters"


def setup(pipeline: Any, settings: Any, *, service_name: str | None = None,
          service_version: str | None = None) -> dict[str, Any]:
    """Add the sinks ``settings.exporters`` names to ``pipeline`` (once per pipeline).

    Returns the installed sinks by name. An exporter whose package is missing is skipped with a
    warning naming the extra to install: monitoring never stops a server from starting.
    """
    installed: dict[str, Any] = getattr(pipeline, _INSTALLED, None) or {}
    setattr(pipeline, _INSTALLED, installed)
    for name in settings.exporters:
        if name in installed:
            continue
        try:
            installed[name] = sink = _make(name, pipeline, settings, service_name, service_version)
        except ImportError as exc:
            logger.warning("mcplens: the %s exporter needs `pip install \"mcplens[%s]\"` (%s); skipped",
                           name, name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - fail open
            pipeline.fault(f"starting the {name} exporter", exc)
            continue
        # The OTel sink runs inline, first, on the writer thread: it stamps the span's trace and
        # span ids on the event before the event log and the others see it, and only hands spans
        # to the SDK's own bounded export queue and thread. Every other exporter gets a thread and
        # a bounded queue of its own (pipeline.SinkWorker): a blocked one drops and counts.
        if name == "otel":
            sink.inline = True
            pipeline.add_sink(sink, first=True)
        else:
            pipeline.add_sink(sink)
    return installed


def _make(name: str, pipeline: Any, settings: Any, service_name: str | None, service_version: str | None) -> Any:
    if name == "log":
        from mcplens.sinks.log import LogSink

        return LogSink(settings.log_file)
    if name == "prometheus":
        from mcplens.sinks import prometheus

        sink = prometheus.PrometheusSink(lambda: dict(pipeline.counters))
        if settings.prometheus_port:
            host, port = prometheus.start_http_server(settings.prometheus_port, settings.prometheus_host)
            logger.info("mcplens: Prometheus metrics on http://%s:%d/metrics", host, port)
        return sink
    if name == "otel":
        from mcplens.sinks.otel import OTelSink

        return OTelSink(service_name=service_name, service_version=service_version,
                        export_arguments=settings.export_arguments)
    if name == "sentry":
        from mcplens.sinks.sentry import SentrySink

        return SentrySink(pipeline.privacy.redactor(None), dsn=settings.sentry_dsn,
                          export_arguments=settings.export_arguments)
    raise ValueError(name)


def capture_middleware(pipeline: Any, build: Any, low: Any, capture: str, installed: dict[str, Any]) -> Any:
    """The SDK middleware to insert: the OTel one (span per request) when that exporter runs."""
    from mcplens.capture.sdk import CaptureMiddleware

    otel = installed.get("otel")
    if otel is None:
        return CaptureMiddleware(pipeline, build)
    from mcplens.sinks.otel import OTelBuilder, OTelCaptureMiddleware, take_over

    take_over(low, capture == "fastmcp")
    return OTelCaptureMiddleware(pipeline, OTelBuilder(build, otel), otel.tracer)
