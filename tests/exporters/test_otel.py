"""OpenTelemetry exporter in process: semconv spans and histograms, one span per request,
trace continuation from the client, and downstream calls as children of the server span."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import mcplens
from mcplens.pipeline import pipelines
from tests.exporters import server as exporter_server
from tests.exporters.conftest import Memory
from tests.servers import fastmcp_server

EXPORTERS = {"exporters": ["otel"]}


def sink() -> Any:
    (p,) = [p for p in pipelines() if not p._closed and "otel" in getattr(p, "_mcplens_exporters", {})][-1:]
    return p._mcplens_exporters["otel"]


def server_spans(otel: Memory) -> list[Any]:
    return [s for s in otel.spans.get_finished_spans() if s.kind == SpanKind.SERVER]


def test_spans_follow_the_conventions_and_continue_the_client_trace(home: Path, otel: Memory) -> None:
    server = exporter_server.build()
    mcplens.instrument(server, **EXPORTERS)
    low = server._lowlevel_server
    assert not any(type(m).__name__ == "OpenTelemetryMiddleware" for m in low.middleware)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            with otel.tracer.start_as_current_span("agent step"):
                await c.call_tool("add", {"a": 1, "b": 2})
                await c.call_tool("fail", {"reason": "hunter2hunter2"})

    anyio.run(main)
    mcplens.flush()
    spans = otel.spans.get_finished_spans()
    root = next(s for s in spans if s.name == "agent step")
    by_name = {s.name: s for s in server_spans(otel)}
    assert set(by_name) >= {"initialize", "tools/call add", "tools/call fail"}
    # one SERVER span per request although the SDK's own OpenTelemetryMiddleware was installed
    assert [s.name for s in server_spans(otel)].count("tools/call add") == 1
    assert {s.instrumentation_scope.name for s in server_spans(otel)} == {"mcplens"}

    add = by_name["tools/call add"]
    assert add.instrumentation_scope.name == "mcplens"
    attrs = dict(add.attributes)
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.tool.name"] == "add"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["jsonrpc.request.id"].isdigit()
    assert attrs["mcp.protocol.version"] == "2025-11-25"
    assert attrs["network.transport"] == "inproc"
    assert attrs["mcp.session.id"].startswith("s_")  # pseudonymous
    assert "error.type" not in attrs and add.status.status_code == StatusCode.UNSET
    assert "gen_ai.tool.call.arguments" not in attrs  # opt-in only

    # one trace: the client's step -> the SDK client's CLIENT span -> mcplens's SERVER span
    client = next(s for s in spans if s.kind == SpanKind.CLIENT and s.name.endswith("tools/call add"))
    assert add.context.trace_id == root.context.trace_id == client.context.trace_id
    assert add.parent.span_id == client.context.span_id and client.parent.span_id == root.context.span_id

    fail = by_name["tools/call fail"]
    assert fail.attributes["error.type"] == "tool_error"
    assert fail.attributes["mcplens.error.category"] == "backend_timeout"
    assert fail.status.status_code == StatusCode.ERROR

    # the local event carries the same trace and span ids
    from tests.conftest import read_events

    e = next(e for e in read_events(home) if e.get("gen_ai.tool.name") == "add")
    assert e["trace_id"] == f"{add.context.trace_id:032x}" and e["span_id"] == f"{add.context.span_id:016x}"


def test_duration_histograms_use_the_advised_buckets(home: Path, otel: Memory) -> None:
    from mcplens.exporters.otel import DURATION_BUCKETS

    server = exporter_server.build()
    mcplens.instrument(server, **EXPORTERS)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("wait", {"ms": 30})

    anyio.run(main)
    mcplens.flush()
    sink()._sweep(everything=True)  # what process exit does: sessions end
    points = [p for p in otel.metric_points("mcp.server.operation.duration")
              if dict(p.attributes).get("gen_ai.tool.name") == "wait"]
    assert points and list(points[0].explicit_bounds) == DURATION_BUCKETS
    assert dict(points[0].attributes) == {
        "mcp.method.name": "tools/call", "gen_ai.tool.name": "wait", "gen_ai.operation.name": "execute_tool",
        "network.transport": "inproc", "mcp.protocol.version": "2025-11-25",
    }
    # the call's own duration (30 ms asked; more on a loaded machine) falls in the bucket counted
    from bisect import bisect_left

    from tests.conftest import read_events

    took = next(e for e in read_events(home) if e.get("gen_ai.tool.name") == "wait")["duration_s"]
    assert took >= 0.03
    bucket = bisect_left(DURATION_BUCKETS, took)  # OTel buckets are (previous bound, bound]
    assert points[0].count == 1 and points[0].bucket_counts[bucket] == 1, (took, list(points[0].bucket_counts))
    sessions = otel.metric_points("mcp.server.session.duration")
    assert sessions and list(sessions[0].explicit_bounds) == DURATION_BUCKETS and sessions[0].count >= 1


def test_arguments_only_when_allowed_and_then_redacted(home: Path, otel: Memory) -> None:
    server = exporter_server.build()
    mcplens.instrument(server, exporters=["otel"], export_arguments=True)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("lookup", {"payload": {"q": "weather", "password": "hunter2hunter2"}})

    anyio.run(main)
    mcplens.flush()
    span = next(s for s in server_spans(otel) if s.name == "tools/call lookup")
    args = span.attributes["gen_ai.tool.call.arguments"]
    assert "weather" in args and "hunter2" not in args and "[REDACTED:" in args


def test_fastmcp_native_telemetry_gives_way_one_server_span(home: Path, otel: Memory) -> None:
    import fastmcp

    before = fastmcp.settings.telemetry_mode
    server = fastmcp_server.build()
    try:
        mcplens.instrument(server, **EXPORTERS)

        async def main() -> None:
            async with fastmcp.Client(server) as c:
                await c.call_tool("add", {"a": 1, "b": 2})
                await c.list_tools()

        anyio.run(main)
        mcplens.flush()
    finally:
        fastmcp.settings.telemetry_mode = before
    from tests.conftest import read_events

    servers = server_spans(otel)
    assert {s.instrumentation_scope.name for s in servers} == {"mcplens"}  # none from FastMCP or the SDK
    # exactly one SERVER span per request the server handled, and it is the event's span
    events = read_events(home)
    assert len(servers) == len(events) and [s.name for s in servers].count("tools/call add") == 1
    assert {f"{s.context.span_id:016x}" for s in servers} == {e["span_id"] for e in events}


@contextlib.contextmanager
def local_http() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"pong"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ping"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_downstream_http_call_is_a_child_of_the_server_span(home: Path, otel: Memory) -> None:
    pytest.importorskip("opentelemetry.instrumentation.urllib")
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor

    server = exporter_server.build()
    mcplens.instrument(server, **EXPORTERS)
    URLLibInstrumentor().instrument()
    try:
        with local_http() as url:

            async def main() -> Any:
                async with mcp.Client(server, mode="legacy") as c:
                    return await c.call_tool("fetch", {"url": url})

            result = anyio.run(main)
    finally:
        URLLibInstrumentor().uninstrument()
    assert "pong" in str(result)
    mcplens.flush()
    tool = next(s for s in server_spans(otel) if s.name == "tools/call fetch")
    get = [s for s in otel.spans.get_finished_spans() if s.kind == SpanKind.CLIENT and s.name == "GET"]
    assert len(get) == 1
    assert get[0].parent.span_id == tool.context.span_id and get[0].context.trace_id == tool.context.trace_id


def test_otlp_protocol_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcplens.exporters import otel

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert type(otel._span_exporter()).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert type(otel._metric_exporter()).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otel._span_exporter() is None


def test_events_without_a_live_span_get_one_after_the_fact(otel: Memory) -> None:
    from mcplens.exporters.otel import OTelExporter

    exporter = OTelExporter()
    exporter.setup()
    e = {"event.id": "e1", "event.kind": "request", "time": 1795471200.0, "duration_s": 0.25,
         "mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcplens.status": "exception",
         "error.type": "0", "mcplens.error.message": "backend [EMAIL] unreachable", "network.transport": "pipe",
         "trace_id": "0af7651916cd43dd8448eb211c80319c", "parent_span_id": "b7ad6b7169203331"}
    enriched = exporter.processor()(dict(e))  # the processor, before any sink
    exporter.export([enriched])  # after it: ends the span with the event's attributes
    (span,) = [s for s in server_spans(otel) if s.name == "tools/call search"]
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C and span.parent.span_id == 0xB7AD6B7169203331
    assert span.start_time == 1795471200 * 10**9 and span.end_time - span.start_time == 250_000_000
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "backend [EMAIL] unreachable"
    assert span.attributes["error.type"] == "0" and enriched["span_id"] == f"{span.context.span_id:016x}"
    assert enriched["trace_id"] == e["trace_id"]


def test_span_name_and_attributes_carry_the_redacted_tool_name(home: Path, otel: Memory) -> None:
    """A client may call an unknown tool by any name: the exported span never has it in clear."""
    server = exporter_server.build()
    mcplens.instrument(server, **EXPORTERS)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("notify-kim.lee@example.com", {})

    anyio.run(main)
    mcplens.flush()
    [span] = [s for s in server_spans(otel) if s.name.startswith("tools/call")]
    assert "kim.lee" not in span.name and "kim.lee" not in str(dict(span.attributes))
    assert span.name == "tools/call [EMAIL]"


# ---- issue 13, item 12 ------------------------------------------------------------------------


def _otlp_env(otlp: str) -> dict[str, str]:
    return {"MCPLENS_EXPORTERS": "otel", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "60000"}


def test_a_stdio_server_exiting_exports_session_durations_without_shutdown_noise(home: Path) -> None:
    """A stdio server ends on stdin EOF through atexit: the session histogram must still go out,
    and nothing may be handed to an exporter the SDK's own atexit hook already shut down."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO, subprocess_env
    from tests.exporters.helpers import otlp_metrics, otlp_spans, receiver

    with receiver() as (otlp, got):
        proc = subprocess.Popen([sys.executable, "-m", "tests.exporters.server"], cwd=REPO,
                                env=subprocess_env(home, **_otlp_env(otlp)), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        messages = [
            {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            *({"jsonrpc": "2.0", "id": i, "method": "tools/call",
               "params": {"name": "add", "arguments": {"a": i, "b": 1}}} for i in range(1, 4)),
        ]
        for m in messages:
            proc.stdin.write(json.dumps(m).encode() + b"\n")
            proc.stdin.flush()
            if "id" in m:
                assert json.loads(proc.stdout.readline())["id"] == m["id"]
        _, err = proc.communicate(timeout=60)  # closes stdin: the server exits on EOF
        assert proc.returncode == 0, err.decode()[-2000:]
        metrics = {m.name: m for _, _, m in otlp_metrics(got)}
        spans = [sp.name for _, _, sp in otlp_spans(got)]
    assert b"already shutdown" not in err and b"Traceback" not in err, err.decode()[-2000:]
    assert spans.count("tools/call add") == 3
    session = metrics["mcp.server.session.duration"]
    [point] = session.histogram.data_points
    assert point.count == 1 and session.unit == "s"
    assert sum(p.count for p in metrics["mcp.server.operation.duration"].histogram.data_points) == 4


@pytest.mark.parametrize("with_trace", [False, True])
def test_baggage_in_meta_is_current_in_the_handler(home: Path, with_trace: bool) -> None:
    """A raw client (no OpenTelemetry of its own, so nothing else in ``_meta``): baggage alone is
    propagated, as the conventions say, and beside a traceparent too."""
    from tests.conftest import RawStdioClient

    meta: dict[str, Any] = {"baggage": "tenant=acme,plan=pro"}
    if with_trace:
        meta["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    client = RawStdioClient.module("tests.exporters.server", home, MCPLENS_EXPORTERS="otel",
                                   OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    try:
        client.handshake()
        reply = client.ask("tools/call", {"name": "bag", "arguments": {}, "_meta": meta})
        client.close_stdin()
        assert client.wait() == 0
    finally:
        client.kill()
    assert reply["result"]["content"][0]["text"] == "plan=pro,tenant=acme"


def test_no_session_id_attribute_in_the_stateless_era(home: Path, otel: Memory) -> None:
    server = exporter_server.build()
    mcplens.instrument(server, **EXPORTERS)

    async def main() -> None:
        async with mcp.Client(server) as c:  # auto: the 2026-07-28 era against a 2.x server
            await c.call_tool("add", {"a": 1, "b": 2})
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("wait", {"ms": 1})

    anyio.run(main)
    mcplens.flush()
    sink()._sweep(everything=True)
    by_name = {s.name: dict(s.attributes) for s in server_spans(otel)}
    modern, legacy = by_name["tools/call add"], by_name["tools/call wait"]
    assert modern["mcp.protocol.version"] >= "2026-07-28" and "mcp.session.id" not in modern
    assert legacy["mcp.protocol.version"] == "2025-11-25" and legacy["mcp.session.id"].startswith("s_")
    sessions = otel.metric_points("mcp.server.session.duration")
    assert all(dict(p.attributes).get("mcp.protocol.version") != modern["mcp.protocol.version"] for p in sessions)


DOUBLE = """
import anyio, mcp, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import mcplens
from tests.exporters import server as exporter_server

reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
metrics.set_meter_provider(provider)
# what an SDK that emits the MCP histograms itself registers (the name of its scope is its own)
sdk_meter = provider.get_meter("mcp.server")
op = sdk_meter.create_histogram("mcp.server.operation.duration", unit="s")
server = exporter_server.build()
mcplens.instrument(server, exporters=["otel"], home=sys.argv[1])

async def main():
    async with mcp.Client(server, mode="legacy") as c:
        for i in range(3):
            await c.call_tool("add", {"a": i, "b": 1})
            op.record(0.001, {"mcp.method.name": "tools/call"})  # the SDK's own measurement

anyio.run(main)
mcplens.flush()
from mcplens.pipeline import pipelines
for p in pipelines():
    p.close()  # what exit does: sessions end, their durations are recorded
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            print(sm.scope.name, m.name, sum(dp.count for dp in m.data.data_points))
"""


def test_histograms_another_instrumentation_emits_are_not_emitted_twice(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO, subprocess_env

    proc = subprocess.run([sys.executable, "-c", DOUBLE, str(tmp_path / "home")], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=subprocess_env(tmp_path / "home", OTEL_TRACES_EXPORTER="none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines()]
    emitters = {(scope, name): int(n) for scope, name, n in rows}
    assert emitters[("mcp.server", "mcp.server.operation.duration")] == 3
    assert ("mcplens", "mcp.server.operation.duration") not in emitters  # once, by the SDK
    assert emitters[("mcplens", "mcp.server.session.duration")] == 1  # the one the SDK does not emit
