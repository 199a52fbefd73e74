#!/usr/bin/env python
"""Cost per event of each exporter (log, otel, prometheus, sentry), against no exporter, in one run.

Two measurements:

1. **Sink alone** (writer thread): real sanitized events, captured once from an in-memory server,
   are handed to each exporter's ``write_batch`` in batches of 100; contenders interleaved in a
   fresh random order every round; figure = median over rounds of this thread's CPU µs per event.
   OTel here is the path of an event without a live span (the proxy's): span built after the fact
   and the histogram recorded; its export thread's work is not in this figure (see 2).
2. **Whole process** (request path + writer + export threads): a child process per variant runs
   an ``MCPServer`` with ``mcp.Client`` in memory (legacy handshake) and calls a trivial tool in
   blocks; per block, process CPU time (all threads) ÷ calls, each block ending with a flush of
   mcplens, the OTel providers and Sentry, so deferred work is counted. Exports go to a local
   receiver in the parent (OTLP/HTTP and a Sentry DSN on 127.0.0.1); Prometheus serves no scrape.
   Variants run in a fresh random order every round; figure = median over blocks, *added* =
   median minus the ``none`` variant's median.

Run ``.venv/bin/python bench/exporters.py`` (needs the ``otel``, ``prometheus`` and ``sentry``
extras plus ``opentelemetry-exporter-otlp-proto-http``); ``--write-results`` appends a section to
``bench/RESULTS.md`` with the date and machine.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from time import thread_time_ns
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

RESULTS = HERE / "RESULTS.md"
VARIANTS = ("none", "log", "prometheus", "otel", "sentry", "all")


# -- 1. sink alone ---------------------------------------------------------------------------------
def capture_events(n: int) -> list[dict[str, Any]]:
    """Sanitized events from a real in-memory server: tools/call add, with a few failures."""
    import anyio
    import mcp
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    import mcplens
    from mcplens.pipeline import pipelines

    server = MCPServer("bench", version="1.0")

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    def fail(q: str) -> str:
        raise ToolError("backend timed out")

    mcplens.instrument(server)
    (pipeline,) = pipelines()
    kept: list[dict[str, Any]] = []

    class Keep:
        name = "keep"

        def export(self, events: list[dict[str, Any]]) -> None:
            kept.extend(e for e in events if e.get("mcp.method.name") == "tools/call")

        def shutdown(self) -> None:
            pass

        def lost(self) -> int:
            return 0

    pipeline.add_exporter(Keep())

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            for i in range(n):
                if i % 10 == 9:
                    await c.call_tool("fail", {"q": "weather in Paris"})
                else:
                    await c.call_tool("add", {"a": i, "b": 1})

    anyio.run(main)
    mcplens.flush()
    return kept


def sink_costs(rounds: int, batch: int = 100) -> dict[str, float]:
    import copy
    import logging

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    import sentry_sdk
    from sentry_sdk.transport import Transport

    class Drop(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            envelope.serialize()  # what a real transport does before sending

    sentry_sdk.init(dsn="http://k@127.0.0.1:9/1", transport=Drop, traces_sample_rate=1.0,
                    auto_enabling_integrations=False)

    from mcplens.exporters.log import LogExporter
    from mcplens.exporters.otel import OTelExporter
    from mcplens.exporters.prometheus import PrometheusExporter
    from mcplens.exporters.sentry import SentryExporter
    from mcplens.privacy.redact import Redactor

    events = capture_events(batch)
    tmp = Path(tempfile.mkdtemp(prefix="mcplens-bench-"))
    log = logging.getLogger("bench.mcplens.events")
    sinks: dict[str, Any] = {
        "none": None, "log": LogExporter(tmp / "events.jsonl", logger=log), "prometheus": PrometheusExporter(),
        "otel": OTelExporter(service_name="bench"), "sentry": SentryExporter(Redactor()),
    }
    for exporter in sinks.values():
        if exporter is not None:
            exporter.setup()
    samples: dict[str, list[float]] = {k: [] for k in sinks}
    rng = random.Random(1)
    for r in range(rounds + 3):
        order = list(sinks)
        rng.shuffle(order)
        for name in order:
            b = [copy.copy(e) for e in events]
            sink = sinks[name]
            t0 = thread_time_ns()
            if sink is not None:
                process = sink.processor()  # the OTel span is started and its ids stamped here now
                if process is not None:
                    b = [process(e) for e in b]
                sink.export(b)
            dt = thread_time_ns() - t0
            if r >= 3:
                samples[name].append(dt / 1000 / len(b))
    return {k: statistics.median(v) for k, v in samples.items()}


# -- 2. whole process --------------------------------------------------------------------------------
CHILD = r"""
import os, sys, time, json
sys.path.insert(0, {src!r})
import anyio, mcp
from mcp.server import MCPServer
import mcplens
server = MCPServer("bench", version="1.0")

@server.tool()
def add(a: int, b: int) -> int:
    return a + b

mcplens.instrument(server)

def flush_all():
    mcplens.flush()
    try:
        from mcplens.exporters import otel
        otel.force_flush()
    except Exception:
        pass
    try:
        import sentry_sdk
        sentry_sdk.get_client().flush(timeout=5)
    except Exception:
        pass

out = []
async def main():
    async with mcp.Client(server, mode="legacy") as c:
        for i in range({warmup}):
            await c.call_tool("add", {{"a": i, "b": 1}})
        flush_all()
        for _ in range({blocks}):
            t0 = time.process_time()
            for i in range({calls}):
                await c.call_tool("add", {{"a": i, "b": 1}})
            flush_all()
            out.append((time.process_time() - t0) / {calls} * 1e6)
anyio.run(main)
print(json.dumps(out))
"""


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def whole_process(rounds: int, blocks: int, calls: int, warmup: int) -> dict[str, list[float]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    code = CHILD.format(src=str(HERE.parent / "src"), warmup=warmup, blocks=blocks, calls=calls)
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rng = random.Random(2)
    try:
        for _ in range(rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for variant in order:
                with tempfile.TemporaryDirectory(prefix="mcplens-bench-") as tmp:
                    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPLENS_", "OTEL_", "SENTRY_"))}
                    env.update({
                        "MCPLENS_HOME": tmp, "MCPLENS_LOG_FILE": str(Path(tmp) / "events.jsonl"),
                        "MCPLENS_PROMETHEUS_PORT": "0", "MCPLENS_SENTRY_DSN": base.replace("//", "//k@") + "/1",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                    })
                    if variant != "none":
                        env["MCPLENS_EXPORTERS"] = "log,otel,prometheus,sentry" if variant == "all" else variant
                    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=600)
                    if proc.returncode != 0:
                        raise RuntimeError(f"{variant}: {proc.stderr.decode()[-2000:]}")
                    samples[variant].extend(json.loads(proc.stdout.decode().strip().splitlines()[-1]))
    finally:
        httpd.shutdown()
    return samples


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = " ".join(platform.uname()[i] for i in (0, 2, 4))
    return f"`{uname}`, nproc {os.cpu_count()}, {cpu}; CPython {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sink-rounds", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="whole-process rounds (one child per variant each)")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()

    whole = whole_process(args.rounds, args.blocks, args.calls, args.warmup)
    sinks = sink_costs(args.sink_rounds)  # after the children: this process's globals are set here
    base = statistics.median(whole["none"])
    lines = [
        f"### Exporters (`bench/exporters.py`) — run {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        "",
        f"- Machine: {machine()}",
        f"- Sink alone: {args.sink_rounds} rounds × 100 real `tools/call` events (10% failures), thread CPU µs per "
        "event, median over rounds. Whole process: in-memory `mcp.Client` (legacy) → `MCPServer`, "
        f"{args.rounds} rounds × {args.blocks} blocks × {args.calls} calls per variant, process CPU (all threads) "
        "per call with every exporter flushed at the end of each block; exports to a local receiver.",
        "",
        "| exporter | sink alone µs/event | whole process µs/call | added vs none µs/call |",
        "|---|---:|---:|---:|",
    ]
    for v in VARIANTS:
        med = statistics.median(whole[v])
        sink = sinks.get(v)
        sink_txt = f"{sink:.2f}" if sink is not None else "—"
        added = "—" if v == "none" else f"{med - base:+.1f}"
        lines.append(f"| {v} | {sink_txt} | {med:.1f} | {added} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
