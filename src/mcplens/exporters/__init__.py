"""Exporters: the opt-in destinations fed after the privacy stage, and the registry that names them.

``exporters=["log", "otel", "prometheus", "sentry"]`` (or ``MCPLENS_EXPORTERS=log,otel``) turns
them on; each lives in its own module, subclasses :class:`mcplens.exporters.base.Exporter`, and
imports its third-party package only when enabled. A new exporter is one module here and one
line in :data:`REGISTRY`.

Exporters are isolated from each other and from the event log (see ``mcplens.pipeline``): each
runs on its own thread behind a bounded queue, drops and counts when it falls behind, and gets
a share of one shutdown deadline (``exporter_shutdown_timeout``, 2 s by default).

This module is imported by the wiring (``mcplens.instrument`` and ``mcplens proxy``), never by
the capture, the pipeline or the privacy stage.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcplens.config import Settings
    from mcplens.exporters.base import Exporter
    from mcplens.pipeline import Pipeline

logger = logging.getLogger("mcplens")

#: config name -> "module:class"; the module is imported only when the exporter is enabled
REGISTRY: dict[str, str] = {
    "log": "mcplens.exporters.log:LogExporter",
    "otel": "mcplens.exporters.otel:OTelExporter",
    "prometheus": "mcplens.exporters.prometheus:PrometheusExporter",
    "sentry": "mcplens.exporters.sentry:SentryExporter",
}

_INSTALLED = "_mcplens_exporters"


def exporter_class(name: str) -> type[Exporter]:
    """The class registered as ``name`` (imports its module, and so its third-party package)."""
    module, _, cls = REGISTRY[name].partition(":")
    found: type[Exporter] = getattr(importlib.import_module(module), cls)
    return found


def start(pipeline: Pipeline, settings: Settings, *, service_name: str | None = None,
          service_version: str | None = None) -> dict[str, Exporter]:
    """Start the exporters ``settings.exporters`` names on ``pipeline`` (each once per pipeline).

    Returns every exporter installed on the pipeline, by name. One whose package is missing is
    skipped with a warning naming the extra to install, one that fails to start is counted:
    monitoring never stops a server from starting.
    """
    from mcplens.exporters.base import ExporterContext

    installed: dict[str, Exporter] = getattr(pipeline, _INSTALLED, None) or {}
    setattr(pipeline, _INSTALLED, installed)
    for name in settings.exporters:
        if name in installed:
            continue
        try:
            exporter = exporter_class(name).from_settings(settings)
            exporter.setup(ExporterContext(
                service_name=service_name, service_version=service_version,
                counters=lambda: dict(pipeline.counters), redactor=pipeline.privacy.redactor(None),
                fault=pipeline.fault,
            ))
        except ImportError as exc:
            logger.warning("mcplens: the %s exporter needs `pip install \"mcplens[%s]\"` (%s); skipped",
                           name, name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - fail open
            pipeline.fault(f"starting the {name} exporter", exc)
            continue
        installed[name] = exporter
        processor = exporter.processor()
        if processor is not None:
            pipeline.add_processor(processor)
        pipeline.add_exporter(exporter)
    return installed


def pipeline_with_exporters(settings: Settings) -> Pipeline:
    """The pipeline for a way in that has no server object (the proxies), with the exporters
    ``settings.exporters`` names (``MCPLENS_EXPORTERS``) started, as ``instrument()`` does."""
    from mcplens.pipeline import get_pipeline

    pipeline = get_pipeline(settings)
    if settings.exporters:
        start(pipeline, settings, service_name=settings.server_name, service_version=settings.server_version)
    return pipeline


def installed(pipeline: Any) -> dict[str, Exporter]:
    """The exporters started on ``pipeline`` so far, by name."""
    found: dict[str, Exporter] = getattr(pipeline, _INSTALLED, None) or {}
    return found
