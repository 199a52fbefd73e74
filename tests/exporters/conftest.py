"""In-memory OpenTelemetry providers for the in-process exporter tests.

A process has one global tracer/meter provider, set once: this session fixture installs SDK
providers with an in-memory span exporter and metric reader, which mcplens then uses (it only
builds providers of its own from ``OTEL_*`` where none is set; the subprocess tests cover that).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")


class Memory:
    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tp = trace.get_tracer_provider()
        if isinstance(tp, trace.ProxyTracerProvider):
            tp = TracerProvider()
            trace.set_tracer_provider(tp)
        tp.add_span_processor(SimpleSpanProcessor(self.spans))  # type: ignore[attr-defined]
        mp = metrics.get_meter_provider()
        if type(mp).__name__ != "MeterProvider":
            metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))
        else:  # pragma: no cover - another suite installed one: it cannot take a reader now
            pytest.skip("a MeterProvider without our reader is already installed")
        self.tracer = trace.get_tracer("tests")

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend(m.data.data_points)
        return out


_memory: Memory | None = None


@pytest.fixture
def otel() -> Iterator[Memory]:
    global _memory
    if _memory is None:
        _memory = Memory()
    _memory.spans.clear()
    yield _memory
    _memory.spans.clear()


@pytest.fixture(autouse=True)
def _close_new_pipelines() -> Iterator[None]:
    """Close the pipelines a test created, so its exporters (a log handler ...) do not outlive it."""
    from mcplens.pipeline import pipelines

    before = {id(p) for p in pipelines()}
    yield
    for p in pipelines():
        if id(p) not in before:
            p.close()
