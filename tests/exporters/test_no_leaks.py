"""All four exporters on, in a real server process over HTTP, with arguments exported (the worst
case): no secret of the privacy corpus reaches the log file, the OTLP/HTTP payloads, /metrics or
the Sentry envelopes. The OTLP export is checked against the conventions on the way."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from tests.conftest import free_port, http_server
from tests.exporters.helpers import attrs, otlp_metrics, otlp_spans, receiver, sentry_items
from tests.privacy.corpus import ARGS, ERROR, JSON_STRING, SECRETS, Item
from tests.privacy.scan import unmeasured_lines
from tests.privacy.test_no_leaks import fragments

pytest.importorskip("prometheus_client")
pytest.importorskip("sentry_sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

#: every third item, each placement: a subset that still spans every kind
SUBSET = SECRETS[::3]


def entry(item: Item) -> dict[str, Any]:
    return {item.key or "note": item.value}


def test_no_secret_reaches_any_exporter(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = tmp_path / "mcplens.jsonl"
    metrics_port = free_port()
    with receiver() as (otlp, got_otlp), receiver() as (sentry, got_sentry):
        for k, v in {
            "MCPLENS_EXPORTERS": "log,otel,prometheus,sentry", "MCPLENS_EXPORT_ARGUMENTS": "1",
            "MCPLENS_LOG_FILE": str(log_file), "MCPLENS_PROMETHEUS_PORT": str(metrics_port),
            "MCPLENS_SENTRY_DSN": sentry.replace("http://", "http://publickey@") + "/1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        }.items():
            monkeypatch.setenv(k, v)
        with http_server("tests.exporters.server", home) as url:

            async def main() -> None:
                async with mcp.Client(url, mode="legacy") as c:
                    args = [i for i in SUBSET if ARGS in i.places]
                    for k in range(0, len(args), 20):
                        await c.call_tool("lookup", {"payload": {"items": [entry(i) for i in args[k:k + 20]]}})
                    blob = [i for i in SUBSET if JSON_STRING in i.places]
                    await c.call_tool("lookup", {"payload": {"blob": json.dumps([entry(i) for i in blob])}})
                    errors = [i for i in SUBSET if ERROR in i.places]
                    for k in range(0, len(errors), 20):
                        await c.call_tool("lookup", {"payload": {"rows": [entry(i) for i in errors[k:k + 20]]},
                                                     "fail": True})
                    await c.call_tool("add", {"a": 1, "b": 2})

            anyio.run(main)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                metrics_text = r.read()
        # SIGTERM: the server flushed every exporter before exiting
        outputs = {
            "log": log_file.read_bytes(), "otlp": got_otlp.all_bytes(), "metrics": metrics_text,
            "sentry": b"".join(json.dumps(p).encode() if not isinstance(p, bytes) else p
                               for _, p in sentry_items(got_sentry)),
        }
        spans = otlp_spans(got_otlp)
        metrics = otlp_metrics(got_otlp)

    for name, data in outputs.items():
        assert data, f"{name}: nothing exported"
        text = unmeasured_lines(data.decode("utf-8", errors="replace"))  # see tests/privacy/scan.py
        leaks = [(i.kind, f) for i in SUBSET for f in fragments(i.secret) if f in text]
        assert not leaks, f"{name}: {len(leaks)} fragments leaked, e.g. {leaks[:5]}"
    assert b"[REDACTED:" in outputs["otlp"] and b"[REDACTED:" in outputs["sentry"]  # arguments were exported

    # the real OTLP/HTTP export, attribute by attribute
    resource, scope, add = next((r, s, sp) for r, s, sp in spans if sp.name == "tools/call add")
    assert resource["service.name"] == "exporter-fixture" and resource["service.version"] == "2.0.1"
    assert resource["deployment.environment"] == "test" and scope == "mcplens"
    assert add.kind == 2  # SPAN_KIND_SERVER
    a = attrs(add.attributes)
    assert {k: a[k] for k in ("mcp.method.name", "gen_ai.tool.name", "gen_ai.operation.name", "network.transport",
                              "mcp.protocol.version")} == {
        "mcp.method.name": "tools/call", "gen_ai.tool.name": "add", "gen_ai.operation.name": "execute_tool",
        "network.transport": "tcp", "mcp.protocol.version": "2025-11-25"}
    assert a["mcp.session.id"].startswith("s_") and a["client.address"].startswith("ip_")
    assert json.loads(a["gen_ai.tool.call.arguments"]) == {"a": 1, "b": 2}
    failed = [sp for _, _, sp in spans if sp.name == "tools/call lookup" and sp.status.code == 2]
    assert failed and all(attrs(sp.attributes)["error.type"] == "tool_error" for sp in failed)
    names = {m.name: m for _, _, m in metrics}
    op = names["mcp.server.operation.duration"]
    assert op.unit == "s" and list(op.histogram.data_points[0].explicit_bounds) == [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]
    assert "mcp.server.session.duration" in names  # recorded when the process ended its sessions
