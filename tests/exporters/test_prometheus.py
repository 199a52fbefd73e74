"""The Prometheus exporter, scraped by a real Prometheus while traffic flows, and checked by promtool."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from tests.conftest import REPO, free_port, http_server, stop

pytest.importorskip("prometheus_client")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="the prometheus/promtool binaries are absent (Debian: apt-get install -y prometheus; `make test` does it)",
)
RULES = REPO / "deploy" / "prometheus" / "mcplens-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "mcplens-dashboard.json"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    body = json.loads(get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
    assert body["status"] == "success", body
    return body["data"]["result"]


@contextlib.contextmanager
def prometheus(tmp: Path, target: str) -> Iterator[str]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: mcplens\n    static_configs:\n      - targets: ['{target}']\n"
    )
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                if "Ready" in get(f"{base}/-/ready"):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus did not get ready")
            time.sleep(0.2)
        yield base
    finally:
        stop(proc)


def buckets(exposition: str, target: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the tools/call duration histogram for ``target``."""
    out = []
    for line in exposition.splitlines():
        if line.startswith("mcp_server_operation_duration_seconds_bucket{") and f'target="{target}"' in line:
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            out.append((float(le), float(value)))
    merged: dict[float, float] = {}
    for le, count in out:  # several status series per target: sum them, as the query does
        merged[le] = merged.get(le, 0.0) + count
    return sorted(merged.items())


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over one histogram's cumulative buckets."""
    total = cumulative[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    raise AssertionError("no bucket reached the rank")


def wait_for(base: str, promql: str, expected: float, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(base, promql)
        if result and float(result[0]["value"][1]) == expected:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{promql} never reached {expected}: {result}")
        time.sleep(0.5)


@needs_prometheus
def test_real_prometheus_scrapes_quantiles_and_error_ratio(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_port = free_port()
    monkeypatch.setenv("MCPLENS_EXPORTERS", "prometheus")
    monkeypatch.setenv("MCPLENS_PROMETHEUS_PORT", str(metrics_port))
    with http_server("tests.exporters.server", home) as url, prometheus(tmp_path, f"127.0.0.1:{metrics_port}") as prom:
        wait_for(prom, 'up{job="mcplens"}', 1.0)

        async def traffic() -> None:
            async with mcp.Client(url, mode="legacy") as c:
                for i in range(20):  # spread over several scrapes
                    await c.call_tool("wait", {"ms": 120})
                    await c.call_tool("add", {"a": i, "b": 1})
                    if i % 2 == 0:
                        await c.call_tool("fail", {"reason": "x"})

        anyio.run(traffic)
        total = 'sum(mcplens_calls_total{method="tools/call"})'
        wait_for(prom, total, 50.0)

        exposition = get(f"http://127.0.0.1:{metrics_port}/metrics")  # traffic is over: what was scraped
        for q in (0.5, 0.99):
            promql = (f'histogram_quantile({q}, sum by (le, target) '
                      '(mcp_server_operation_duration_seconds_bucket{method="tools/call"}))')
            by_tool = {r["metric"]["target"]: float(r["value"][1]) for r in query(prom, promql)}
            assert set(by_tool) == {"wait", "add", "fail"}
            for tool, value in by_tool.items():  # Prometheus's answer is the one the exposed buckets give
                assert value == pytest.approx(quantile(q, buckets(exposition, tool))), (q, tool)
        p50 = {r["metric"]["target"]: float(r["value"][1]) for r in query(
            prom, 'histogram_quantile(0.5, sum by (le, target) (mcp_server_operation_duration_seconds_bucket))')}
        assert 0.1 < p50["wait"] <= 0.2  # every 120 ms call sits in the (0.1, 0.2] bucket
        assert p50["add"] < 0.1 and p50["fail"] < 0.1  # the fast tools stay below it

        ratio = ('sum(mcplens_calls_total{method="tools/call",status!="ok"})'
                 ' / sum(mcplens_calls_total{method="tools/call"})')
        assert float(query(prom, ratio)[0]["value"][1]) == pytest.approx(10 / 50)
        by_type = query(prom, 'sum by (error_type) (mcplens_calls_total{target="fail"})')
        assert [(r["metric"]["error_type"], r["value"][1]) for r in by_type] == [("tool_error", "10")]
        assert float(query(prom, "mcplens_active_sessions")[0]["value"][1]) >= 1
        assert query(prom, 'mcplens_pipeline_events_total{outcome="dropped"}')[0]["value"][1] == "0"
        assert float(query(prom, "process_resident_memory_bytes")[0]["value"][1]) > 0

    check = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for label in ("session", "client", "request_id", "arguments"):
        assert f"{label}=" not in exposition


@needs_prometheus
def test_shipped_rules_pass_promtool() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_dashboard_queries_only_exported_series() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 6
    names = ("mcplens_calls_total", "mcp_server_operation_duration_seconds_bucket",
             "mcplens_response_size_bytes_bucket", "mcplens_pipeline_events_total",
             "mcplens_rate_limited_total", "mcplens_active_sessions")
    for name in names:
        assert any(name in e for e in exprs), name


def test_label_cardinality_is_capped() -> None:
    from mcplens.exporters.prometheus import MAX_TARGETS, OTHER, Metrics

    m = Metrics()
    for i in range(MAX_TARGETS + 50):
        m.observe({"event.kind": "request", "mcp.method.name": "tools/call", "mcplens.target": f"t{i}",
                   "mcplens.status": "ok", "duration_s": 0.001, "mcp.session.id": f"s_{i}"})
    targets = {s.labels["target"] for metric in m.calls.collect() for s in metric.samples}
    assert len(targets) == MAX_TARGETS + 1 and OTHER in targets


def test_rate_limit_counter_takes_no_client_label() -> None:
    from mcplens.exporters import prometheus

    before = prometheus.metrics().rate_limited.labels("search")._value.get()
    prometheus.record_rate_limit("client-42", "search")
    assert prometheus.metrics().rate_limited.labels("search")._value.get() == before + 1
    text = prometheus.metrics().registry.get_sample_value("mcplens_rate_limited_total", {"target": "search"})
    assert text == before + 1
