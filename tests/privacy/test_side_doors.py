"""Outputs that could bypass the privacy stage: OTel spans opened on the request path, a Prometheus
counter fed by the caller, mcplens's own log lines, the CLI. Each gets a client-chosen name that
carries personal data, on a path where the stage never sees the event (a processor dropped it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

import mcplens
from mcplens.pipeline import pipelines
from tests.privacy import leak_server

pytest.importorskip("opentelemetry.sdk")

SECRET_TOOL = "notify-kim.lee@example.com"


class Recorder:
    """A span processor that keeps what every span looked like when it started and when it ended."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.ended: list[tuple[str, dict[str, Any]]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.instrumentation_scope.name == "mcplens":  # the client library makes spans of its own
            self.started.append((span.name, dict(span.attributes or {})))

    def on_end(self, span: Any) -> None:
        if span.instrumentation_scope.name == "mcplens":
            self.ended.append((span.name, dict(span.attributes or {})))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def _on_ending(self, span: Any) -> None:  # newer SDKs call it
        pass


@pytest.fixture
def recorder() -> Recorder:
    """The in-memory OTel providers of tests/exporters (one per process: a second MeterProvider cannot be
    set), with a processor of ours added to see every span as it starts and ends."""
    from opentelemetry import trace

    from tests.exporters import conftest as sinks

    if sinks._memory is None:
        sinks._memory = sinks.Memory()
    rec = Recorder()
    trace.get_tracer_provider().add_span_processor(rec)  # type: ignore[attr-defined]
    return rec


def test_spans_never_carry_a_client_chosen_name_before_the_stage(
    home: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mcplens")

    def drop_tool_calls(e: dict[str, Any]) -> dict[str, Any] | None:
        return None if e.get("mcp.method.name") == "tools/call" else e

    server = leak_server.build_sdk()
    mcplens.instrument(server, exporters=["otel"], processors=[drop_tool_calls])

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool(SECRET_TOOL, {})
            await c.call_tool("lookup", {"payload": {"to": "kim.lee@example.com"}})

    anyio.run(main)
    mcplens.flush()
    for p in pipelines():  # ends the spans whose event a processor dropped
        if Path(p.settings.home) == home:
            p.close()
    spans = recorder.started + recorder.ended
    assert any(name.startswith("tools/call") for name, _ in recorder.ended), spans
    text = repr(spans) + "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mcplens"))
    assert "kim.lee" not in text and "example.com" not in text, text[:2000]


def test_rate_limit_counter_labels_are_redacted() -> None:
    pytest.importorskip("prometheus_client")
    from mcplens.exporters import prometheus

    prometheus.record_rate_limit(client="alice", tool=SECRET_TOOL)
    from prometheus_client import generate_latest

    exposed = generate_latest(prometheus.metrics().registry).decode()
    assert "kim.lee" not in exposed
    assert "[EMAIL]" in exposed
