"""Performance detectors: heavy latency tails, bloated replies, where the time goes; and the per-tool
p99 the ``p99_latency`` alert rule reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcplens.analysis.core import _SAME, _SERVED, _r
from mcplens.analysis.findings import INFO, WARNING
from mcplens.store import sql

if TYPE_CHECKING:
    from mcplens.analysis.core import Analysis
    from mcplens.store.source import AnalysisSource


def tool_p99(source: AnalysisSource, since: float) -> list[dict[str, Any]]:
    """Calls and p99 latency (ms) per served tool from ``since``, within the source's window and server
    (the ``p99_latency`` alert rule)."""
    return source(
        f"SELECT {sql.label('method', 'target')} AS tool, count(*) AS calls, "
        "quantile_cont(duration_s, 0.99) * 1000 AS p99 FROM events "
        f"WHERE kind = 'request' AND proxy_direction IS NULL {source.where_literal()} "
        f"AND time >= ? AND method IN {_SERVED} GROUP BY 1",
        [since],
    )


def detect(a: Analysis) -> None:
    th = a.th
    # durations from the events; payload and token percentiles from the rollups' value counts
    sizes = sql.percentiles_sql(
        f"(SELECT {sql.label('method', 'target')} AS tool, * FROM ru_values WHERE method IN {_SERVED})",
        "server, tool",
    )
    rows = a.run(f"""
        WITH d AS (
            SELECT server, {sql.label('method', 'target')} AS tool, calls, mean_ms, lat, total_s FROM (
                SELECT server, method, target, count(*) AS calls, avg(duration_s) * 1000 AS mean_ms,
                       quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS lat, sum(duration_s) AS total_s
                FROM req WHERE method IN {_SERVED} GROUP BY 1, 2, 3)),
        p AS ({sizes})
        SELECT d.*, s.p95 AS p95_bytes, s.vmax AS max_bytes, t.p95 AS p95_tokens, t.vsum AS total_tokens
        FROM d LEFT JOIN p s ON (s.server, s.tool) IS NOT DISTINCT FROM (d.server, d.tool) AND s.measure = 'size'
               LEFT JOIN p t ON (t.server, t.tool) IS NOT DISTINCT FROM (d.server, d.tool) AND t.measure = 'tokens'
        ORDER BY d.server, d.tool""")
    for r in rows:
        if r["lat"] is None:
            continue
        p50, p95, p99 = (x * 1000 for x in r["lat"])
        if (
            r["calls"] >= th.heavy_tail_min_calls
            and p99 >= th.heavy_tail_p99_ms
            and p99 >= th.heavy_tail_ratio * r["mean_ms"]
        ):
            slow = a.run(
                f"SELECT count(*) AS n FROM req WHERE tool = ? AND {_SAME} AND duration_s * 1000 >= ?",
                [r["tool"], r["server"], p99 * 0.5],
            )[0]["n"]
            a.add(
                "heavy_tail",
                WARNING,
                a.scoped(r["server"], r["tool"]),
                f"{r['tool']}: mean {r['mean_ms']:,.0f} ms but p99 {p99:,.0f} ms",
                "some calls block the agent for seconds: add a timeout, find what the slow calls share "
                "(arguments, backend), or make the tool asynchronous",
                calls=int(r["calls"]),
                mean_ms=_r(r["mean_ms"]),
                p50_ms=_r(p50),
                p95_ms=_r(p95),
                p99_ms=_r(p99),
                calls_over_half_p99=int(slow),
            )
        if r["p95_bytes"] is not None and r["p95_bytes"] >= th.payload_p95_bytes:
            a.add(
                "payload_bloat",
                WARNING,
                a.scoped(r["server"], r["tool"]),
                f"{r['tool']} returns {r['p95_bytes'] / 1024:,.1f} KB at p95 (~{r['p95_tokens']:,.0f} tokens)",
                "return less: paginate, filter fields, summarise; each call fills the agent's context",
                server=r["server"],
                calls=int(r["calls"]),
                p95_bytes=int(r["p95_bytes"]),
                max_bytes=int(r["max_bytes"] or 0),
                p95_tokens_est=int(r["p95_tokens"] or 0),
                total_tokens_est=int(r["total_tokens"] or 0),
                threshold_bytes=int(th.payload_p95_bytes),
            )
    by_time = sorted((r for r in rows if r["total_s"]), key=lambda r: -r["total_s"])[:3]
    total = sum(r["total_s"] for r in rows if r["total_s"]) or 1.0
    if by_time:
        a.add(
            "slowest_tools",
            INFO,
            "by total time",
            "most time spent in "
            + ", ".join(f"{a.scoped(r['server'], r['tool'])} ({r['total_s'] / total:.0%})" for r in by_time),
            "speeding these up helps agents most",
            tools=[
                {
                    "tool": a.scoped(r["server"], r["tool"]),
                    "total_s": _r(r["total_s"], 2),
                    "share": _r(r["total_s"] / total, 3),
                    "calls": int(r["calls"]),
                    "mean_ms": _r(r["mean_ms"]),
                }
                for r in by_time
            ],
        )
