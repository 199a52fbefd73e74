"""Local receivers for the exporter tests: an OTLP/HTTP collector and a Sentry ingest endpoint."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    """Raw bodies by path, decoded (uncompressed) as they arrived."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[bytes]:
        with self.lock:
            return [b for p, b in self.bodies if p.startswith(path)]

    def all_bytes(self) -> bytes:
        with self.lock:
            return b"".join(b for _, b in self.bodies)


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]

        return brotli.decompress(body)
    return body


@contextlib.contextmanager
def receiver(status: int = 200, reply: bytes = b"") -> Iterator[tuple[str, Received]]:
    """An HTTP server on 127.0.0.1 that records every POST body (OTLP/HTTP, Sentry envelopes)."""
    got = Received()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length") or 0)
            body = _decode(self.rfile.read(n), self.headers.get("content-encoding"))
            with got.lock:
                got.bodies.append((self.path, body))
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf" if self.path.startswith("/v1/") else
                             "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def _otlp(got: Received, path: str, request: Any, resources: str, scopes: str, items: str) -> list[Any]:
    """(resource attributes, scope name, item) for every item of the OTLP/HTTP exports on ``path``."""
    out = []
    for body in got.on(path):
        req = request()
        req.ParseFromString(body)
        for r in getattr(req, resources):
            resource = {a.key: _value(a.value) for a in r.resource.attributes}
            for scope in getattr(r, scopes):
                out.extend((resource, scope.scope.name, item) for item in getattr(scope, items))
    return out


def otlp_spans(got: Received) -> list[Any]:
    """Every span in the OTLP/HTTP trace exports received, with its resource attributes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return _otlp(got, "/v1/traces", ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans")


def otlp_metrics(got: Received) -> list[Any]:
    """Every metric in the OTLP/HTTP metric exports received, with its resource attributes."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    return _otlp(got, "/v1/metrics", ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics")


def attrs(kvs: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in kvs}


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def sentry_items(got: Received) -> list[tuple[dict[str, Any], Any]]:
    """(item header, payload) of every item in every envelope received."""
    import json

    out = []
    for body in got.on("/api/"):
        lines = body.split(b"\n")
        i = 1  # line 0: the envelope header
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            header = json.loads(lines[i])
            payload = lines[i + 1] if i + 1 < len(lines) else b""
            try:
                out.append((header, json.loads(payload)))
            except ValueError:
                out.append((header, payload))
            i += 2
    return out
