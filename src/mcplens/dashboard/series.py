"""Time series for the dashboard's charts, read from the ``series`` rollup, not from the events.

A chart over seven days of ten million events cannot re-read them on every refresh. Compaction
keeps, per Parquet batch, 5-minute buckets of calls, errors and latency/payload histograms
(``analysis/rollup.py: series_sql``, histograms from :mod:`mcplens.histogram`); a query here sums
the batches' tables and adds the same table computed over the not-yet-compacted segments (the
tail). When some batch has no usable rollups (an older mcplens wrote it; the next compaction
redoes them) the window's events are scanned instead: same rows, just slower.

Charts show whole buckets: a window's ends are widened to the 5-minute grid (the tables, which
must equal the CLI's, come from the exact per-window queries, not from here). Quantiles read back
from a histogram are within ``histogram.REL_ERROR`` (~4.4%) of the exact value.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from mcplens import histogram
from mcplens.analysis import rollup
from mcplens.store.base import TimeWindow

BUCKET: Final = rollup.BUCKET
#: at most this many points per chart: the step grows in whole buckets to keep under it
MAX_POINTS: Final = 288


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Grid:
    """The chart's x axis: buckets ``b0 .. b1`` (of ``BUCKET`` s) in slots of ``step`` buckets."""

    b0: int
    b1: int
    step: int

    @classmethod
    def of(cls, since: float, until: float) -> Grid:
        b0 = math.floor(since / BUCKET)
        b1 = max(b0, math.ceil(until / BUCKET) - 1)
        step = max(1, math.ceil((b1 - b0 + 1) / MAX_POINTS))
        return cls(b0, b1, step)

    @property
    def slots(self) -> int:
        return (self.b1 - self.b0) // self.step + 1

    def times(self) -> list[float]:
        return [(self.b0 + i * self.step) * BUCKET for i in range(self.slots)]

    @property
    def seconds(self) -> float:
        return self.step * BUCKET


def bounds(store: Any, window: TimeWindow | None) -> tuple[float, float]:
    """The window's ends; an open start is the first event's time (one cheap min over the store)."""
    until = window.until if window and window.until is not None else time.time()
    since = window.since if window and window.since is not None else None
    if since is None:
        rows = store.query("SELECT min(time) AS t FROM events WHERE kind = 'request'")
        since = rows[0]["t"] if rows and rows[0]["t"] is not None else until - 3600
    return float(since), float(until)


def _source(run: Any, grid: Grid) -> str:
    """SQL relation of ``series`` rows in the grid: the rollups plus the tail, or a scan."""
    stored = getattr(run, "rollups", None)
    where = f"bucket BETWEEN {grid.b0} AND {grid.b1}"
    if stored and all(rollup.complete(m) for m in stored):
        files = ", ".join(_lit(m["files"]["series"]) for m in stored)
        tail = rollup.series_sql("segment_events") if getattr(run, "has_segments", False) else None
        parts = [f"SELECT * FROM read_parquet([{files}]) WHERE {where}"]
        if tail:
            parts.append(f"SELECT * FROM ({tail}) WHERE {where}")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"
    lo, hi = grid.b0 * BUCKET, (grid.b1 + 1) * BUCKET
    scan = f"(SELECT * FROM events WHERE time >= {lo!r} AND time < {hi!r})"
    return f"({rollup.series_sql(scan)})"


def query(store: Any, window: TimeWindow | None, sql: str, params: list[Any] | None = None,
          attempts: int = 5) -> tuple[Grid, list[dict[str, Any]]]:
    """Run ``sql`` (with ``{src}`` the series rows and ``{step}``/``{b0}`` the grid) over the window."""
    since, until = bounds(store, window)
    grid = Grid.of(since, until)
    for attempt in range(attempts):
        try:
            with store.reader(since=grid.b0 * BUCKET) as run:
                src = _source(run, grid)
                return grid, run(sql.format(src=src, step=grid.step, b0=grid.b0), params or [])
        except Exception as e:  # noqa: BLE001 - a compaction committed meanwhile: read again
            if attempt + 1 >= attempts or type(e).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _filters(server: str | None, tool: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if server is not None:
        clauses.append("server = ?")
        params.append(server)
    if tool is not None:
        clauses.append("coalesce(target, method) = ?")
        params.append(tool)
    return "".join(f" AND {c}" for c in clauses), params


def traffic(store: Any, window: TimeWindow | None, server: str | None = None,
            tool: str | None = None) -> dict[str, Any]:
    """Per slot: calls, errors, error rate, mean and p50/p95/p99 latency (ms), p95 payload (bytes);
    and the window's latency and payload histograms (for the Tools page)."""
    where, params = _filters(server, tool)
    sql = f"""
        SELECT (bucket - {{b0}}) // {{step}} AS slot, measure, idx, sum(n)::BIGINT AS n,
               sum(errors)::BIGINT AS errors, sum(vsum) AS vsum
        FROM {{src}} WHERE measure IN ('calls', 'duration', 'size') {where}
        GROUP BY ALL"""
    grid, rows = query(store, window, sql, params)
    n = grid.slots
    calls, errors, vsum = [0] * n, [0] * n, [0.0] * n
    hists: dict[str, list[dict[int, int]]] = {"duration": [{} for _ in range(n)], "size": [{} for _ in range(n)]}
    for r in rows:
        s = int(r["slot"])
        if not 0 <= s < n:
            continue
        if r["measure"] == "calls":
            calls[s] += r["n"]
            errors[s] += r["errors"] or 0
            vsum[s] += r["vsum"] or 0.0
        else:
            h = hists[r["measure"]][s]
            h[int(r["idx"])] = h.get(int(r["idx"]), 0) + r["n"]

    def q(h: dict[int, int], p: float, scale: float = 1.0) -> float | None:
        v = histogram.quantile(h, p) if h else None
        return None if v is None else round(v * scale, 3)

    dur, size = hists["duration"], hists["size"]
    out = {
        "step_s": grid.seconds,
        "time": grid.times(),
        "calls": calls,
        "errors": errors,
        "error_rate": [e / c if c else None for e, c in zip(errors, calls, strict=True)],
        "mean_ms": [round(v / c * 1000, 3) if c and v else None for v, c in zip(vsum, calls, strict=True)],
        "p50_ms": [q(h, 0.5, 1e-3) for h in dur],
        "p95_ms": [q(h, 0.95, 1e-3) for h in dur],
        "p99_ms": [q(h, 0.99, 1e-3) for h in dur],
        "payload_p95_bytes": [q(h, 0.95) for h in size],
    }
    if tool is not None:
        out["latency_histogram"] = _bars(histogram.merge(dur), 1e-3)
        out["payload_histogram"] = _bars(histogram.merge(size), 1.0)
    return out


def _bars(counts: dict[int, int], scale: float) -> list[dict[str, Any]]:
    """Histogram bars: [lower, upper) in display units (ms or bytes) and the count."""
    return [{"lo": round(histogram.bounds(i)[0] * scale, 4), "hi": round(histogram.bounds(i)[1] * scale, 4),
             "n": counts[i]} for i in sorted(counts)]


def clients(store: Any, window: TimeWindow | None, server: str | None = None) -> dict[str, Any]:
    """Per client: calls per slot, totals by status; and its rate in the window before (the baseline)."""
    where, params = _filters(server, None)
    sql = f"""
        SELECT client, (bucket - {{b0}}) // {{step}} AS slot, status, sum(n)::BIGINT AS n,
               sum(errors)::BIGINT AS errors
        FROM {{src}} WHERE measure = 'client' {where} GROUP BY ALL"""
    grid, rows = query(store, window, sql, params)
    since, until = grid.b0 * BUCKET, (grid.b1 + 1) * BUCKET
    # the baseline: the same length of time just before the window
    prev = TimeWindow(since - (until - since), since)
    _, before = query(store, prev, "SELECT client, sum(n)::BIGINT AS n FROM {src} WHERE measure = 'client'"
                      + where + " GROUP BY ALL", params)
    base = {r["client"]: r["n"] for r in before}
    per: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"calls": 0, "errors": 0, "statuses": defaultdict(int), "series": [0] * grid.slots})
    for r in rows:
        c = per[r["client"]]
        c["calls"] += r["n"]
        c["errors"] += r["errors"] or 0
        c["statuses"][r["status"] or "-"] += r["n"]
        s = int(r["slot"])
        if 0 <= s < grid.slots:
            c["series"][s] += r["n"]
    hours = (until - since) / 3600
    out = []
    for name, c in per.items():
        b = base.get(name, 0)
        out.append({
            "client": name, "calls": c["calls"], "errors": c["errors"],
            "rate_per_h": round(c["calls"] / hours, 3), "baseline_per_h": round(b / hours, 3),
            "vs_baseline": round(c["calls"] / b, 3) if b else None,
            "rate_limited": c["statuses"].get("rate_limited", 0), "unauthorized": c["statuses"].get("unauthorized", 0),
            "statuses": dict(sorted(c["statuses"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "series": c["series"],
        })
    out.sort(key=lambda r: (-r["calls"], r["client"] or ""))
    return {"step_s": grid.seconds, "time": grid.times(), "clients": out}
