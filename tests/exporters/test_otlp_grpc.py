"""OTLP over gRPC, end to end: a real gRPC collector on 127.0.0.1 receives the server's spans and metrics."""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from tests.conftest import http_server
from tests.exporters.helpers import attrs

grpc = pytest.importorskip("grpc")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402


class Collector(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """Both OTLP services: each has one method, Export, told apart by the request's type."""

    def __init__(self) -> None:
        self.traces: list[Any] = []
        self.metrics: list[Any] = []

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            self.traces.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()
        self.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_spans_and_metrics_arrive_over_grpc(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        for k, v in {
            "MCPLENS_EXPORTERS": "otel", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500",
        }.items():
            monkeypatch.setenv(k, v)
        with http_server("tests.exporters.server", home) as url:

            async def main() -> None:
                async with mcp.Client(url, mode="legacy") as c:
                    await c.call_tool("add", {"a": 1, "b": 2})
                    await c.call_tool("add", {"a": 3, "b": 4})

            anyio.run(main)
        deadline = time.monotonic() + 10
        while not (collector.traces and collector.metrics) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop(grace=None)
    spans = [s for req in collector.traces for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    calls = [s for s in spans if s.name == "tools/call add"]
    assert len(calls) == 2
    assert attrs(calls[0].attributes)["gen_ai.tool.name"] == "add"
    assert attrs(calls[0].attributes)["mcp.method.name"] == "tools/call"
    names = {m.name for req in collector.metrics for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert "mcp.server.operation.duration" in names
