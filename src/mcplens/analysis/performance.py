"""Performance detectors: heavy latency tails, bloated replies, where the time goes; and the per-tool
p99 the ``p99_latency`` alert rule reads."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mcplens import histogram
from mcplens.analysis.core import _SERVED, _r
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


#: a histogram as (bucket index, count, least value, largest value) per bucket, by index
Hist = list[tuple[int, int, int, int]]


def _at(hist: Hist, rank: int) -> float:
    """The value of 0-based ``rank``: exact where the bucket tells it (one distinct value, its least or
    largest rank), else the bucket's representative value kept within what the bucket holds."""
    seen = 0
    for idx, n, lo, hi in hist:
        if rank < seen + n:
            if lo == hi or rank == seen:
                return float(lo)
            if rank == seen + n - 1:
                return float(hi)
            return min(max(histogram.value(idx), float(lo)), float(hi))
        seen += n
    return float(hist[-1][3])


def quantile(hist: Hist, q: float) -> float:
    """``quantile_cont`` over the histogram: the same positions ``q * (n - 1)`` and interpolation
    between the two closest ranks, each rank's value from :func:`_at` (exact when its bucket holds one
    value; else within ``histogram.REL_ERROR``)."""
    total = sum(n for _, n, _, _ in hist)
    h = q * (total - 1)
    lo, hi = _at(hist, math.floor(h)), _at(hist, math.ceil(h))
    return lo + (h - math.floor(h)) * (hi - lo)


def _tools(a: Analysis) -> list[dict[str, Any]]:
    """Per served target: calls, mean and total duration, latency percentiles, payload and token p95,
    from the rollups' histograms (``mcplens.histogram`` with each bucket's least and largest value), so
    a week of events is read as a few thousand rows. Counts, sums and maxima are exact."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in a.run(f"SELECT server, method, target, {sql.label('method', 'target')} AS tool, measure, idx, n, vsum, "
                   "vmin, vmax FROM ru_perf ORDER BY server, tool, method, target, measure, idx"):
        row = out.setdefault((r["server"], r["method"], r["target"]),
                             {"server": r["server"], "tool": r["tool"], "calls": 0, "hist": {}, "sum": {}})
        m = r["measure"]
        if m == "calls":
            row["calls"] += int(r["n"])
            continue
        row["hist"].setdefault(m, []).append((int(r["idx"]), int(r["n"]), int(r["vmin"]), int(r["vmax"])))
        row["sum"][m] = row["sum"].get(m, 0) + int(r["vsum"] or 0)
    rows = []
    for row in out.values():
        lat, size, tokens = (row["hist"].get(m) for m in ("duration", "size", "tokens"))
        n_lat = sum(n for _, n, _, _ in lat) if lat else 0
        rows.append({
            "server": row["server"], "tool": row["tool"], "calls": row["calls"], "lat_hist": lat,
            "mean_ms": row["sum"]["duration"] / n_lat / 1000 if lat else None,
            "lat": [quantile(lat, q) / 1e6 for q in (0.5, 0.95, 0.99)] if lat else None,
            "total_s": row["sum"]["duration"] / 1e6 if lat else None,
            "p95_bytes": quantile(size, 0.95) if size else None,
            "max_bytes": size[-1][3] if size else None,
            "p95_tokens": quantile(tokens, 0.95) if tokens else None,
            "total_tokens": row["sum"].get("tokens") if tokens else None,
        })
    return sorted(rows, key=lambda r: (str(r["server"]), str(r["tool"])))


def detect(a: Analysis) -> None:
    th = a.th
    rows = _tools(a)
    for r in rows:
        if r["lat"] is None:
            continue
        p50, p95, p99 = (x * 1000 for x in r["lat"])
        if (
            r["calls"] >= th.heavy_tail_min_calls
            and p99 >= th.heavy_tail_p99_ms
            and p99 >= th.heavy_tail_ratio * r["mean_ms"]
        ):
            # from the histogram too: the calls in buckets whose least value is at least half the p99
            slow = sum(n for _, n, lo, _ in r["lat_hist"] if lo >= p99 * 0.5 * 1000)
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
                f"{r['tool']} returns {r['p95_bytes'] / 1024:,.1f} KB at p95 (~{r['p95_tokens'] or 0:,.0f} tokens)",
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


#: the area's detectors, in the order of their findings (one here)
DETECTORS = (detect,)
