"""The one small base every exporter implements, and what an exporter is given when it starts.

An exporter reads finished, sanitized events: the pipeline hands it batches after the privacy
stage, on a thread and behind a bounded queue of its own (``mcplens.pipeline.ExporterWorker``),
so a slow or failing exporter drops and counts its own overflow and never delays the event log
or another exporter. It never changes an event: whatever an exporter needs to add to one (OTel
trace ids) it adds in its :meth:`Exporter.processor`, which runs on the writer thread before the
privacy stage, so the event log and every exporter see the same event.

Everything an exporter hooks into lives in its own class:

- :meth:`Exporter.processor`: an enrichment step on the sanitized event, before any sink;
- :meth:`Exporter.request_hook`: a part of the in-process request path
  (:class:`mcplens.capture.sdk.RequestHook`), e.g. a live SERVER span;
- :meth:`Exporter.instrumenting`: called once when ``instrument()`` hooks a server (the OTel
  exporter takes the SDK's own tracing middleware out there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mcplens.capture.sdk import RequestHook

if TYPE_CHECKING:
    from mcplens.config import Settings

#: an enrichment step: takes the event as built, returns it (changed) or None to drop it
Processor = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def _no_counters() -> dict[str, int]:
    return {}


def _no_fault(where: str, exc: BaseException | None = None) -> None:
    return None


@dataclass
class ExporterContext:
    """What the pipeline gives an exporter at :meth:`Exporter.setup`."""

    #: ``service.name`` / ``service.version``: the server's own unless the settings say otherwise
    service_name: str | None = None
    service_version: str | None = None
    #: the pipeline's own counters (enqueued, dropped, written ...), read when a scrape asks
    counters: Callable[[], dict[str, int]] = _no_counters
    #: the privacy stage's redactor for free text (``Redactor.text``), for what an exporter's
    #: library adds on its own (Sentry's request data, breadcrumbs)
    redactor: Any = None
    #: count one of the exporter's own failures (never raised to the server)
    fault: Callable[..., None] = _no_fault
    extra: dict[str, Any] = field(default_factory=dict)


class Exporter:
    """Base of every exporter: ``name``, ``setup``, ``export``, ``flush``, ``shutdown``."""

    #: the name ``exporters=[...]`` / ``MCPLENS_EXPORTERS`` uses
    name: ClassVar[str] = ""
    #: the ``pip install "mcplens[<extra>]"`` that brings its third-party package ("": none)
    extra: ClassVar[str] = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Exporter:
        """The exporter as the settings configure it (not started: see :meth:`setup`)."""
        return cls()

    def setup(self, ctx: ExporterContext) -> None:
        """Start: providers, handlers, clients, an HTTP endpoint. Called once, before any export."""

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Send a batch of sanitized events. Read them, never change them."""
        raise NotImplementedError

    def flush(self) -> None:
        """Push out what the exporter's own library still buffers (tests, shutdown)."""

    def shutdown(self) -> None:
        """Flush and release everything; the pipeline calls it once, under a deadline."""
        self.flush()

    def lost(self) -> int:
        """Events the exporter itself failed to deliver so far (counted as exporter drops)."""
        return 0

    # -- optional hooks: none by default ----------------------------------------------------------
    def processor(self) -> Processor | None:
        """An enrichment step run on every sanitized event before any sink sees it (writer thread)."""
        return None

    def request_hook(self) -> RequestHook | None:
        """A part of the in-process request path (see :class:`RequestHook`)."""
        return None

    def instrumenting(self, lowlevel_server: Any, framework: str) -> None:
        """``instrument()`` is hooking ``lowlevel_server`` (``framework``: "sdk" or "fastmcp")."""
