"""Time series for the dashboard's charts, read from the ``series`` rollup, not from the events.

A chart over seven days of ten million events cannot re-read them on every refresh. Compaction
keeps, per Parquet batch, 5-minute buckets of calls, errors and latency/payload histograms
(``store/rollup.py: series_sql``, histograms from :mod:`mcplens.histogram`); a query here sums
the batches' tables and adds the same table computed over the not-yet-compacted segments (the
tail; cached per segment version by ``store.local.windows.TAIL``). When some batch has no usable
rollups (an older mcplens wrote it; the next compaction redoes them) the window's events are
scanned instead: same rows, just slower.

Charts show whole buckets: a window's ends are widened to the 5-minute grid (the tables, which
must equal the CLI's, come from store/local/windows.py, exact at any edge, not from here). Quantiles read back
from a histogram are within ``histogram.REL_ERROR`` (~4.4%) of the exact value.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from mcplens import histogram
from mcplens.store import rollup
from mcplens.store.base import TimeWindow
from mcplens.store.local import windows

BUCKET: Final = rollup.BUCKET
HOUR: Final = rollup.HOUR
#: at most this many points per chart: the step grows in whole buckets to keep under it
MAX_POINTS: Final = 300


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
        if step > 1:  # slots of whole hours, on the hour: they read the hourly histograms
            step = HOUR * math.ceil(step / HOUR)
            b0 -= b0 % HOUR
        return cls(b0, b1, step)

    @property
    def hourly(self) -> bool:
        return self.step % HOUR == 0 and self.b0 % HOUR == 0

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


_EMPTY = ("(SELECT NULL::VARCHAR AS server, NULL::VARCHAR AS method, NULL::VARCHAR AS target, NULL::VARCHAR AS client, "
          "NULL::BIGINT AS bucket, NULL::VARCHAR AS status, NULL::VARCHAR AS measure, NULL::INTEGER AS idx, "
          "NULL::BIGINT AS n, NULL::BIGINT AS errors, NULL::BIGINT AS vsum WHERE false)")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def query(store: Any, window: TimeWindow | None, sql: str | list[str], params: list[Any] | None = None,
          attempts: int = 5, rows: tuple[tuple[str, ...], str, list[Any]] | None = None) -> tuple[Grid, Any]:
    """Run ``sql`` (with ``{src}`` the series rows and ``{step}``/``{b0}`` the grid) over the window;
    a list of statements runs on one snapshot and returns a list of row lists. ``rows``: (measures,
    filter, params) that every statement's rows meet, read once for all (see :func:`_from_rollups`).

    From one snapshot: every batch's stored ``series`` plus the segments' rows (cached), or, when
    some batch has no usable rollups, a scan of the window's events.
    """
    since, until = bounds(store, window)
    grid = Grid.of(since, until)
    where = f"bucket BETWEEN {grid.b0} AND {grid.b1}"
    for attempt in range(attempts):
        try:
            # as every local read lists them: closed segments as the readers' Parquet copies
            snap = store._snapshot_since(grid.b0 * BUCKET - 2.0) if hasattr(store, "_snapshot_since") else None
            sqls = [sql] if isinstance(sql, str) else sql
            if snap is not None and snap.rollups is not None and all(rollup.complete(m) for m in snap.rollups):
                out = _from_rollups(snap, grid, where, sqls, params or [], rows)
            else:
                with store.reader(since=grid.b0 * BUCKET) as run:
                    lo, hi = grid.b0 * BUCKET, (grid.b1 + 1) * BUCKET
                    scan = f"(SELECT * FROM events WHERE time >= {lo!r} AND time < {hi!r})"
                    run(f"CREATE OR REPLACE TEMP TABLE dash_series AS {rollup.series_sql(scan)}")
                    out = [run(q.format(src="dash_series", step=grid.step, b0=grid.b0), params or []) for q in sqls]
            return grid, (out[0] if isinstance(sql, str) else out)
        except Exception as e:  # noqa: BLE001 - a compaction committed meanwhile: list and read again
            if attempt + 1 >= attempts or not (isinstance(e, FileNotFoundError)
                                               or type(e).__module__.split(".")[0] in ("duckdb", "_duckdb")):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _from_rollups(snap: Any, grid: Grid, where: str, sqls: list[str], params: list[Any],
                  rows: tuple[tuple[str, ...], str, list[Any]] | None = None) -> list[list[dict[str, Any]]]:
    """``sqls`` over the stored rows of the grid's buckets. With ``rows`` (measures, filter, its
    params), the rows of those measures that pass the filter are read from the files once, into a
    temporary table the statements then share, instead of each statement reading every file."""
    with windows.connection() as con:  # kept: its object cache holds the files' footers
        files = [m["files"]["series"] for m in snap.rollups]
        # each segment's rows, cached with its Parquet copy (made once per file version)
        files += [str(c.tables["series"]) for c in windows.TAIL.files(con, list(snap.segments))]
        src = _EMPTY
        if files:
            listed = ", ".join(_lit(f) for f in files)
            src = f"(SELECT * FROM read_parquet([{listed}], union_by_name=true) WHERE {where})"
            if rows is not None:
                measures, extra, extra_params = rows
                wanted = ", ".join(_lit(m) for m in measures)
                con.execute(f"CREATE OR REPLACE TEMP TABLE dash_rows AS SELECT * FROM {src} "
                            f"WHERE measure IN ({wanted}) {extra}", extra_params)
                src = "dash_rows"
        out = []
        try:
            for sql in sqls:
                cur = con.execute(sql.format(src=src, step=grid.step, b0=grid.b0), params)
                names = [d[0] for d in cur.description]
                out.append([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
        finally:
            if src == "dash_rows":
                con.execute("DROP TABLE IF EXISTS dash_rows")
        return out


def _filters(server: str | None, tool: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if server is not None:
        clauses.append("server = ?")
        params.append(server)
    if tool is not None:
        clauses.append("coalesce(target, method) = ?")
        params.append(tool)
    return "".join(f" AND {c}" for c in clauses), params


def volume(store: Any, window: TimeWindow | None, server: str | None = None) -> dict[str, Any]:
    """Calls per slot only (``step_s``, ``time``, ``calls``: the same as :func:`traffic`'s): the
    Health page's volume beside CPU and memory needs no errors, sessions or quantiles, and those
    are most of :func:`traffic`'s reading."""
    where, params = _filters(server, None)
    since, until = bounds(store, window)
    h = "_h" if Grid.of(since, until).hourly else ""
    sql = f"""SELECT (bucket - {{b0}}) // {{step}} AS slot, sum(n)::BIGINT AS n
              FROM {{src}} WHERE measure = 'calls{h}' {where} GROUP BY ALL"""
    grid, rows = query(store, TimeWindow(since, until), sql, params)
    calls = [0] * grid.slots
    for r in rows:
        if 0 <= r["slot"] < grid.slots:
            calls[r["slot"]] = r["n"]
    return {"step_s": grid.seconds, "time": grid.times(), "calls": calls}


def traffic(store: Any, window: TimeWindow | None, server: str | None = None,
            tool: str | None = None) -> dict[str, Any]:
    """Per slot: calls, errors, error rate, mean and p50/p95/p99 latency (ms), p95 payload (bytes);
    and the window's latency and payload histograms (for the Tools page)."""
    where, params = _filters(server, tool)
    since, until = bounds(store, window)
    h = "_h" if Grid.of(since, until).hourly else ""
    slot = "(bucket - {b0}) // {step}"
    counts = f"""
        SELECT {slot} AS slot, sum(n)::BIGINT AS n, sum(errors)::BIGINT AS errors, sum(vsum)::BIGINT AS vsum
        FROM {{src}} WHERE measure = 'calls{h}' {where} GROUP BY ALL"""
    busiest = f"""
        SELECT slot, max(n) AS n FROM (SELECT {slot} AS slot, bucket, sum(n) AS n FROM {{src}}
                                       WHERE measure = 'sessions' {where} GROUP BY ALL) GROUP BY ALL"""
    # nearest-rank quantiles of each slot's histogram, in SQL: the first bucket whose running count
    # reaches ceil(q * total) (as histogram.quantile does), so only one row per slot comes back
    ranks = ", ".join(f"min(idx) FILTER (WHERE cum >= greatest(1, ceil({q} * tot))) AS q{int(q * 100)}"
                      for q in (0.5, 0.95, 0.99))
    quantiles = f"""
        WITH hh AS (SELECT {slot} AS slot, measure, idx, sum(n) AS n FROM {{src}}
                    WHERE measure IN ('duration{h}', 'size{h}') {where} GROUP BY ALL),
             c AS (SELECT *, sum(n) OVER (PARTITION BY slot, measure ORDER BY idx) AS cum,
                          sum(n) OVER (PARTITION BY slot, measure) AS tot FROM hh)
        SELECT slot, measure, {ranks} FROM c GROUP BY ALL"""
    sqls = [counts, busiest, quantiles]
    if tool is not None:  # the whole window's histograms
        sqls.append(f"SELECT measure, idx, sum(n)::BIGINT AS n FROM {{src}} WHERE measure IN ('duration{h}', 'size{h}')"
                    f" {where} GROUP BY ALL ORDER BY measure, idx")
    # one tool's rows are few: read them once for every statement (all tools' rows are many, and each
    # statement's own read of the files, pruned by measure, costs less than copying them all)
    rows = ((f"calls{h}", "sessions", f"duration{h}", f"size{h}"), where, params) if tool is not None else None
    grid, results = query(store, TimeWindow(since, until), sqls, params, rows=rows)
    n = grid.slots
    calls, errors, vsum, sessions = [0] * n, [0] * n, [0] * n, [0] * n
    pct: dict[str, list[float | None]] = {k: [None] * n for k in ("p50_ms", "p95_ms", "p99_ms", "payload_p95_bytes")}
    for r in results[0]:
        if 0 <= r["slot"] < n:
            calls[r["slot"]], errors[r["slot"]], vsum[r["slot"]] = r["n"], r["errors"] or 0, r["vsum"] or 0
    for r in results[1]:
        if 0 <= r["slot"] < n:  # the busiest 5 minutes of the slot
            sessions[r["slot"]] = r["n"]
    for r in results[2]:
        s = r["slot"]
        if not 0 <= s < n:
            continue
        if r["measure"].startswith("duration"):
            for k, col in (("p50_ms", "q50"), ("p95_ms", "q95"), ("p99_ms", "q99")):
                pct[k][s] = round(histogram.value(r[col]) * 1e-3, 3)
        else:
            pct["payload_p95_bytes"][s] = round(histogram.value(r["q95"]), 3)
    out = {
        "step_s": grid.seconds,
        "time": grid.times(),
        "calls": calls,
        "errors": errors,
        "error_rate": [e / c if c else None for e, c in zip(errors, calls, strict=True)],
        "mean_ms": [round(v / c / 1000, 3) if c and v else None for v, c in zip(vsum, calls, strict=True)],
        **pct,
        "active_sessions": sessions,
    }
    if tool is not None:
        rows = results[3]
        out["latency_histogram"] = _bars({r["idx"]: r["n"] for r in rows if r["measure"].startswith("duration")}, 1e-3)
        out["payload_histogram"] = _bars({r["idx"]: r["n"] for r in rows if r["measure"].startswith("size")}, 1.0)
    return out


def _bars(counts: dict[int, int], scale: float) -> list[dict[str, Any]]:
    """Histogram bars: [lower, upper) in display units (ms or bytes) and the count."""
    return [{"lo": round(histogram.bounds(i)[0] * scale, 4), "hi": round(histogram.bounds(i)[1] * scale, 4),
             "n": counts[i]} for i in sorted(counts)]


def clients(store: Any, window: TimeWindow | None, server: str | None = None) -> dict[str, Any]:
    """Per client: calls per slot, totals by status; and its rate in the window before (the baseline)."""
    where, params = _filters(server, None)
    lo, hi = bounds(store, window)
    h = "_h" if Grid.of(lo, hi).hourly else ""
    sql = f"""
        SELECT client, (bucket - {{b0}}) // {{step}} AS slot, status, sum(n)::BIGINT AS n,
               sum(errors)::BIGINT AS errors
        FROM {{src}} WHERE measure = 'client{h}' {where} GROUP BY ALL"""
    grid, rows = query(store, TimeWindow(lo, hi), sql, params)
    since, until = grid.b0 * BUCKET, (grid.b1 + 1) * BUCKET
    # the baseline: the same length of time just before the window
    prev = TimeWindow(since - (until - since), since)
    h = "_h" if Grid.of(prev.since, prev.until).hourly else ""  # type: ignore[arg-type]
    _, before = query(store, prev, f"SELECT client, sum(n)::BIGINT AS n FROM {{src}} WHERE measure = 'client{h}'"
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
