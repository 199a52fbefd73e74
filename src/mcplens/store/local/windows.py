"""A time window of the local store read from the window rollups (:mod:`mcplens.store.windows`) plus
the few raw events no whole bucket holds.

A window ``[since, until)`` splits into the 5-minute buckets wholly inside it, read from each batch's
stored rows (the ``series`` table's hourly rows for whole hours, its 5-minute rows for the rest),
and *edges*: the events of the batches in the window's two partial buckets (their files are sorted
or at least clustered by time, so the time filter skips most row groups) and the window's events of
the uncompacted segments (the tail, converted to Parquet once per file version and cached). The
same table SQL runs over the edges, so the union of stored and computed rows equals those rows
over every event of the window; the readers aggregate it as they would a scan. When some batch has
no (current) rollups, everything is an edge: a scan, same SQL, same figures.

Views on the connection a :class:`Window` holds (friendly column names):

* ``w_events``: every event of the window (batches and tail), for what must be exact;
* ``w_<table>`` for each of :data:`mcplens.store.windows.TABLES` (``wsessions``, ``whealth``, ``winst``,
  ``werrors``; ``flows`` is read on the chart grid, see :func:`flows`) and ``w_series`` (the per-tool
  rows: ``calls``, ``duration``, ``size``, ``tokens``, ``size_max``, hourly measures suffixed ``_h``);
* ``all_winst``: ``winst`` over the whole store (``mcplens health`` counts every event of an instance).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from mcplens import histogram
from mcplens.store import engine, rollup, windows
from mcplens.store.base import FIELDS, TimeWindow
from mcplens.store.local import files as local_files
from mcplens.store.local.files import _ident, _lit, _path_lit, _rows, events_view_sql
from mcplens.store.sql import ERROR

if TYPE_CHECKING:
    from mcplens.store.local.files import Snapshot
    from mcplens.store.local.reader import LocalStore

BUCKET: Final = windows.BUCKET
HOUR: Final = windows.HOUR
#: the per-tool measures of ``series`` the report reads
TOOL_MEASURES: Final = ("calls", "duration", "size", "tokens", "size_max")

T = TypeVar("T")


#: ``series``' resolutions, coarsest first: (measure suffix, buckets per row)
LEVELS: Final = (("_d", rollup.DAY), ("_h", HOUR), ("", 1))


def split(lo: int | None, hi: int | None, levels: tuple[tuple[str, int], ...] = LEVELS
          ) -> list[tuple[str, int | None, int | None]]:
    """Whole buckets ``[lo, hi)`` (None: unbounded) as (suffix, lo, hi) ranges of the coarsest rows
    that fit: whole days, then whole hours either side, then 5-minute buckets."""
    (suffix, size), finer = levels[0], levels[1:]
    if not finer:
        return [] if lo is not None and hi is not None and lo >= hi else [(suffix, lo, hi)]
    c0 = None if lo is None else size * math.ceil(lo / size)
    c1 = None if hi is None else size * math.floor(hi / size)
    if c0 is not None and c1 is not None and c0 >= c1:
        return split(lo, hi, finer)
    out = [(suffix, c0, c1)]
    if lo is not None and c0 is not None and c0 > lo:
        out += split(lo, c0, finer)
    if hi is not None and c1 is not None and c1 < hi:
        out += split(c1, hi, finer)
    return out


@dataclass(frozen=True)
class Plan:
    """How a window splits: whole buckets ``[b0, b1)`` (None: unbounded), read from stored rows, and the
    time ranges read raw from the batches (``edges``)."""

    since: float | None
    until: float | None
    b0: int | None
    b1: int | None
    whole: bool  # some bucket lies wholly inside the window
    edges: tuple[tuple[float | None, int | None, int | None, float | None], ...]  # (t_lo, b_lo, b_hi, t_hi)

    @classmethod
    def of(cls, window: TimeWindow | None) -> Plan:
        since = None if window is None else window.since
        until = None if window is None else window.until
        b0 = None if since is None else math.ceil(since / BUCKET)
        b1 = None if until is None else math.floor(until / BUCKET)
        if b0 is not None and b1 is not None and b0 >= b1:  # no whole bucket: the window is one edge
            return cls(since, until, b0, b1, False, ((since, None, None, until),))
        edges = []
        if since is not None and b0 is not None and since < b0 * BUCKET:
            edges.append((since, None, b0, None))  # since <= time, bucket < b0
        if until is not None and b1 is not None and until > b1 * BUCKET:
            edges.append((None, b1, None, until))  # bucket >= b1, time < until
        return cls(since, until, b0, b1, True, tuple(edges))

    def buckets(self, lo: int | None, hi: int | None, col: str = "bucket") -> str:
        clauses = [f"{col} >= {lo}" if lo is not None else "", f"{col} < {hi}" if hi is not None else ""]
        return " AND ".join(c for c in clauses if c) or "true"

    def stored(self) -> str:
        """The stored rows of whole buckets (5-minute tables)."""
        return self.buckets(self.b0, self.b1) if self.whole else "false"

    def stored_series(self) -> list[str]:
        """The stored ``series`` rows of the whole buckets, one filter per range (each prunes row groups
        on its own): daily rows for whole days, hourly for whole hours, 5-minute rows for the rest."""
        return [where for where, _ in self.series_ranges()]

    def series_ranges(self) -> list[tuple[str, tuple[float | None, float | None]]]:
        """:meth:`stored_series` with each range's time span (a little wide), so a reader opens only
        the files whose events may fall in it: a week's partial hours and 5-minute buckets lie in
        one or two batches, not in all of them."""
        if not self.whole:
            return []
        out = []
        for suffix, lo, hi in split(self.b0, self.b1):
            names = ", ".join(_lit(m + suffix) for m in TOOL_MEASURES)
            span = (None if lo is None else lo * BUCKET - 1.0, None if hi is None else hi * BUCKET + 1.0)
            out.append((f"measure IN ({names}) AND {self.buckets(lo, hi)}", span))
        return out

    def edge_spans(self) -> list[tuple[float | None, float | None]]:
        """The time spans of the edges (a little wide: the bucket arithmetic decides)."""
        return [(t_lo if t_lo is not None else (None if b_lo is None else b_lo * BUCKET - 1.0),
                 t_hi if t_hi is not None else (None if b_hi is None else b_hi * BUCKET + 1.0))
                for t_lo, b_lo, b_hi, t_hi in self.edges]

    def overlaps(self, span: list[float | None] | None, within: tuple[float | None, float | None] | None = None
                 ) -> bool:
        """Whether a batch whose events span ``span`` ([first, last] time; None: unknown) may hold events in
        ``within`` (default: the window)."""
        lo, hi = within if within is not None else (self.since, self.until)
        return local_files.span_overlaps(span, lo, hi)

    def time_filter(self) -> str:
        clauses = [f"time >= {self.since!r}" if self.since is not None else "",
                   f"time < {self.until!r}" if self.until is not None else ""]
        return " AND ".join(c for c in clauses if c) or "true"

    def edge_sql(self, relation: str) -> str:
        """``relation``'s events in the partial buckets: the time bounds let Parquet skip row groups,
        the bucket bounds (the stored rows' own arithmetic) keep each event on exactly one side."""
        parts = []
        for t_lo, b_lo, b_hi, t_hi in self.edges:
            clauses = []
            if t_lo is not None:
                clauses.append(f"time >= {t_lo!r}")
            if b_hi is not None:
                clauses += [f"time < {b_hi * BUCKET + 1.0!r}", f"floor(time / {BUCKET!r})::BIGINT < {b_hi}"]
            if b_lo is not None:
                clauses += [f"time >= {b_lo * BUCKET - 1.0!r}", f"floor(time / {BUCKET!r})::BIGINT >= {b_lo}"]
            if t_hi is not None:
                clauses.append(f"time < {t_hi!r}")
            parts.append(f"SELECT * FROM {relation} WHERE {' AND '.join(clauses) or 'true'}")
        return "\nUNION ALL\n".join(parts) if parts else f"SELECT * FROM {relation} WHERE false"


def tool_rows_sql(relation: str) -> str:
    """``series``' per-tool measures (5-minute) over ``relation``, for the edges: the same rows as
    :func:`mcplens.store.rollup.series_sql` stores."""
    b = f"floor(time / {BUCKET!r})::BIGINT"
    src = f"FROM {relation} WHERE kind = 'request' AND proxy_direction IS NULL"
    null = "NULL::VARCHAR"
    hist = [
        f"""SELECT server_name AS server, method, target, {b} AS bucket, {null} AS status, '{m}' AS measure,
                   {histogram.index_sql(expr)} AS idx, count(*)::BIGINT AS n, NULL::BIGINT AS errors,
                   NULL::BIGINT AS vsum
            {src} AND {col} IS NOT NULL GROUP BY ALL"""
        for m, col, expr in (("duration", "duration_s", "duration_s * 1e6"), ("size", "response_size", "response_size"),
                             ("tokens", "response_tokens", "response_tokens"))]
    return "\nUNION ALL\n".join([
        f"""SELECT server_name AS server, method, target, {b} AS bucket, status, 'calls' AS measure,
                   NULL::INTEGER AS idx, count(*)::BIGINT AS n, count(*) FILTER (WHERE {ERROR})::BIGINT AS errors,
                   sum(round(duration_s * 1e6))::BIGINT AS vsum
            {src} GROUP BY ALL""",
        *hist,
        f"""SELECT server_name, method, target, {b}, {null}, 'size_max', NULL::INTEGER, count(*)::BIGINT, NULL::BIGINT,
                   max(response_size)::BIGINT
            {src} AND response_size IS NOT NULL GROUP BY ALL"""])


@dataclass(frozen=True)
class Cached:
    """One segment's events as Parquet and, like a batch's rollups, its tables (``series`` and
    :data:`mcplens.store.windows.TABLES` but ``flows``)."""

    events: Path
    tables: dict[str, Path]


class EventCache:
    """Each uncompacted segment as Parquet (friendly column names) with its window tables, made once
    per file version.

    A closed segment never changes and a live one only grows; a reader that comes back (the dashboard,
    ``watch``) reads the cached copy instead of parsing the JSON lines again, and the tail's whole
    buckets come from its tables as a batch's come from its rollups. Private temporary directory
    (0700), removed at exit.
    """

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._files: dict[Path, tuple[tuple[int, int], Cached]] = {}
        self._lock = threading.Lock()

    def _make(self, con: Any, seg: Path) -> Cached:
        assert self._dir is not None
        stem = self._dir / os.urandom(8).hex()
        events = stem.with_suffix(".parquet")
        cols = ", ".join(f"{_ident(k)} AS {_ident(f)}" for f, (k, _) in FIELDS.items())
        raw = local_files.read_segments_sql([seg])
        con.execute(f"COPY (SELECT {cols} FROM ({raw})) TO {_lit(events)} (FORMAT parquet)")
        rel = f"(SELECT * FROM read_parquet({_path_lit(events)}))"
        sqls = {t: q for t, q in windows.table_sql(rel).items()}
        sqls["series"] = rollup.series_sql(rel)
        tables = {}
        for t, q in sqls.items():
            tables[t] = Path(f"{stem}.{t}.parquet")
            con.execute(f"COPY ({q}) TO {_lit(tables[t])} (FORMAT parquet)")
        return Cached(events, tables)

    @staticmethod
    def _drop(c: Cached) -> None:
        for p in (c.events, *c.tables.values()):
            p.unlink(missing_ok=True)

    def made(self, segments: list[Path]) -> list[Cached] | None:
        """The copies of ``segments`` if every one is already made and current, else None: for a
        one-off read (a session's page) that should not pay for making them."""
        out = []
        with self._lock:
            for seg in segments:
                have = self._files.get(seg)
                try:
                    st = seg.stat()
                except FileNotFoundError:
                    return None
                if have is None or have[0] != (st.st_size, st.st_mtime_ns):
                    return None
                out.append(have[1])
        return out

    def files(self, con: Any, segments: list[Path]) -> list[Cached]:
        out = []
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="mcplens-tail-"))
                atexit.register(shutil.rmtree, self._dir, True)
            for seg in segments:
                st = seg.stat()  # gone: FileNotFoundError, and the caller reads again
                version = (st.st_size, st.st_mtime_ns)
                have = self._files.get(seg)
                if have is None or have[0] != version:
                    made = self._make(con, seg)
                    if have is not None:
                        self._drop(have[1])
                    self._files[seg] = (version, made)
                out.append(self._files[seg][1])
            if len(self._files) > 4 * max(1, len(segments)) + 64:  # forget segments long compacted
                live = set(segments)
                for gone in [p for p in self._files if p not in live]:
                    self._drop(self._files.pop(gone)[1])
        return out


TAIL: Final = EventCache()


#: the columns the window tables read: the edges are copied with these only
EDGE_COLUMNS: Final = (
    "event_id", "kind", "time", "method", "target", "tool", "status", "server_name", "session_id", "client_name",
    "client_version", "transport", "instance_id", "pid", "proxy_direction", "duration_s", "response_size",
    "response_tokens", "error_category", "error_type", "error_message", "health_enqueued", "health_written",
    "health_dropped", "health_faults", "health_write_failures", "process_cpu_time", "process_memory_usage",
    "process_start_time")


class Window:
    """One snapshot with the ``w_*`` views of a window (see the module docstring), made when first used."""

    def __init__(self, con: Any, snap: Snapshot, plan: Plan, *, scan: bool = False) -> None:
        self.con = con
        self.plan = plan
        self.snap = snap
        rollups = snap.rollups
        self.rolled = not scan and rollups is not None and all(rollup.complete(m) for m in rollups)
        self._made: set[str] = set()
        tail = TAIL.files(con, list(snap.segments))
        #: per table, the files of stored rows: the rollups of every batch the window overlaps and every
        #: segment's cached table
        self.stored: dict[str, list[str]] = {}
        #: the batches the window overlaps (all when their time spans are unknown)
        self.batches = list(snap.parquet)
        if self.rolled:
            pairs = [(p, m) for p, m in zip(snap.parquet, rollups or (), strict=True) if plan.overlaps(m.get("time"))]
            self.batches = [p for p, _ in pairs]
            for t in (*windows.TABLES, "series"):
                self.stored[t] = [m["files"][t] for _, m in pairs]
                self.stored[t] += [str(c.tables[t]) for c in tail if t in c.tables]
        #: a stored file's batch's event time span ([first, last]); a file not named here (a segment's
        #: cached table, a batch without a span): unknown, read for any range
        self.spans: dict[str, Any] = {m["files"][t]: m.get("time") for _, m in pairs for t in m["files"]} \
            if self.rolled else {}
        if tail:
            files = ", ".join(_path_lit(c.events) for c in tail)
            con.execute(f"CREATE OR REPLACE TEMP VIEW tail_all AS SELECT * FROM read_parquet([{files}])")
        else:
            con.execute(events_view_sql("tail_all", [], []))
        tw = plan.time_filter()
        con.execute(f"CREATE OR REPLACE TEMP VIEW tail_events AS SELECT * FROM tail_all WHERE {tw}")
        self._lazy = {  # views few reads need, made when first named (binding a view over every batch costs)
            "batch_events": events_view_sql("batch_events", self.batches if self.rolled else snap.parquet, [],
                                            snap.schemas),
            "w_events": f"CREATE OR REPLACE TEMP VIEW w_events AS SELECT * FROM batch_events WHERE {tw} "
                        "UNION ALL SELECT * FROM tail_events"}
        if not self.rolled:
            self.need("batch_events")
        if self.rolled:  # a few thousand events: copied once, read by every table's SQL
            cols = ", ".join(EDGE_COLUMNS)
            raw = ", ".join(f"{_ident(FIELDS[c][0])} AS {c}" for c in EDGE_COLUMNS)
            near = [p for p, m in zip(snap.parquet, rollups or (), strict=True)
                    if any(plan.overlaps(m.get("time"), (lo, hi)) for lo, hi in plan.edge_spans())]
            batches = ", ".join(_path_lit(p) for p in near)
            edges = [f"SELECT {cols} FROM ({plan.edge_sql('tail_all')})"]
            if near:
                edges.append(f"SELECT {cols} FROM ({plan.edge_sql(f'(SELECT {raw} FROM read_parquet([{batches}]))')})")
            con.execute(f"CREATE OR REPLACE TEMP TABLE w_edge_rows AS {' UNION ALL '.join(edges)}")
            con.execute("CREATE OR REPLACE TEMP VIEW w_edge AS SELECT * FROM w_edge_rows")
        else:  # a scan: every event of the window
            con.execute(f"CREATE OR REPLACE TEMP VIEW w_edge AS SELECT * FROM batch_events WHERE {tw} "
                        "UNION ALL SELECT * FROM tail_events")

    def need(self, name: str) -> None:
        if name in self._lazy:
            if name == "w_events":
                self.need("batch_events")
            self.con.execute(self._lazy.pop(name))

    def view(self, name: str) -> str:
        """Create view ``name`` (``w_<table>``, ``w_series`` or ``all_winst``) if not yet made; its name."""
        if name in self._made:
            return name
        if name == "w_series":
            parts = []
            for where, span in self.plan.series_ranges():  # each range from the files that may hold it
                files = [f for f in self.stored.get("series") or () if self.plan.overlaps(self.spans.get(f), span)]
                if files:
                    parts.append(self._stored("series", where, files))
            stored = " UNION ALL ".join(parts) or self._stored("series", "false")
            sql = f"{stored} UNION ALL BY NAME ({tool_rows_sql('w_edge')})"
        elif name == "all_winst":  # every batch's, not only the window's
            if self.rolled:
                files = [m["files"]["winst"] for m in self.snap.rollups or ()]
                files += [f for f in self.stored["winst"] if f not in files]
                sql = f"SELECT * FROM read_parquet([{', '.join(_path_lit(f) for f in files)}])" if files else \
                    self._stored("none", "true")
            else:
                rest = "(SELECT * FROM batch_events UNION ALL SELECT * FROM tail_all)"
                sql = windows.table_sql(rest)["winst"]
        else:
            t = name.removeprefix("w_")
            sql = f"{self._stored(t, self.plan.stored())} UNION ALL BY NAME ({windows.table_sql('w_edge')[t]})"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
        self._made.add(name)
        return name

    def _stored(self, table: str, where: str, files: list[str] | None = None) -> str:
        """The stored rows of ``table`` that meet ``where`` (from ``files``: default all the window's)."""
        files = self.stored.get(table) if files is None else files
        if not files:
            self.need("batch_events")
            empty = windows.table_sql("batch_events").get(table, windows.table_sql("batch_events")["winst"]) \
                if table != "series" else tool_rows_sql("batch_events")
            return f"SELECT * FROM ({empty}) " \
                   "WHERE false"
        return f"SELECT * FROM read_parquet([{', '.join(_path_lit(f) for f in files)}]) WHERE {where}"

    def __call__(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        for name in ("batch_events", "w_events"):
            if name in sql:
                self.need(name)
        for name in ("w_series", "w_wsessions", "w_whealth", "w_winst", "w_werrors", "all_winst"):
            if name in sql:
                self.view(name)
        return _rows(self.con.execute(sql, params or []))


_LOCAL = threading.local()
_OPEN: list[Any] = []  # every thread's connection, closed at exit (before the interpreter tears down)
_OPEN_LOCK = threading.Lock()
_DB: list[Any] = []  # the one in-memory database every thread's connection opens (a cursor of it)


def _close_all() -> None:
    with _OPEN_LOCK:
        for con in [*_OPEN, *_DB]:
            with contextlib.suppress(Exception):
                con.close()
        _OPEN.clear()
        _DB.clear()


atexit.register(_close_all)


def abandon_databases() -> None:
    """Forget every connection without closing it: the process ends now (cli ``run``), and closing
    would only free what the exit frees. They stay referenced: the last reference gone, DuckDB
    closes them."""
    with _OPEN_LOCK:
        _ABANDONED.extend([*_OPEN, *_DB])
        _OPEN.clear()
        _DB.clear()


#: connections left open for the process's end (:func:`abandon_databases`)
_ABANDONED: list[Any] = []


def _connection() -> Any:
    """One DuckDB connection per thread, kept, all to one in-memory database: a connection costs
    ~20 ms, and the database's object cache keeps the Parquet footers of the rollup files between
    calls, for every thread (a server answers each request on whichever worker thread is free, so a
    cache per thread would be cold for most requests). Temporary views and tables stay per connection."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        with _OPEN_LOCK:
            if not _DB:
                db = engine.duckdb().connect()
                local_files.cache_parquet_footers(db)
                _DB.append(db)
            con = _DB[0].cursor()
            _OPEN.append(con)
        _LOCAL.con = con
    return con


@contextlib.contextmanager
def open_window(store: LocalStore, window: TimeWindow | None, *, scan: bool = False,
                snap: Snapshot | None = None) -> Iterator[Window]:
    """A :class:`Window` over one snapshot (segments last written before ``since`` left out, as the
    scans do); ``scan``: ignore the rollups (the reference the tests compare with)."""
    if snap is None:
        snap = store._snapshot_since(None if window is None else window.since)
    with connection() as con:
        yield Window(con, snap, Plan.of(window), scan=scan)


@contextlib.contextmanager
def connection() -> Iterator[Any]:
    """This thread's kept DuckDB connection (its object cache holds the rollup files' Parquet footers);
    dropped when a statement fails or is interrupted, so the next read starts afresh."""
    con = _connection()
    try:
        yield con
    except BaseException:
        _LOCAL.con = None
        with _OPEN_LOCK:
            if con in _OPEN:
                _OPEN.remove(con)
        con.close()
        raise


def read(store: LocalStore, window: TimeWindow | None, fn: Callable[[Window], T], *, scan: bool = False) -> T:
    """``fn(window)`` on a fresh snapshot, with the reader's rules (:mod:`.reader`): when a file vanished
    under it (a compaction committed, a segment moved) it lists again, backing off, for up to
    ``RETRY_SECONDS``; a damaged file is named in ``store.bad`` and left out of the next try."""
    duckdb = engine.duckdb()
    deadline = time.monotonic() + store.retry_seconds
    attempt = 0
    while True:
        snap = store._snapshot_since(None if window is None else window.since)
        try:
            with open_window(store, window, scan=scan, snap=snap) as w:
                return fn(w)
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise
        except duckdb.Error as e:
            if type(e).__name__ == "InterruptException":
                raise
            moved = snap.vanished() or store.moved(e)
            if not moved and store.isolate(e, snap):
                continue  # a damaged file, left out from now on
            if not moved or time.monotonic() >= deadline:
                raise
        store.pause(attempt)
        attempt += 1


# ---- the rows each view shows ----------------------------------------------------------------

def tool_table(w: Window, server: str | None, tool: str | None, exact_up_to: int,
               exact_sql: str | None = None) -> list[dict[str, Any]]:
    """``mcplens report``'s rows: counts, statuses, mean and the payload maximum exact; percentiles
    from the histograms (within ``histogram.REL_ERROR``) unless the window holds at most
    ``exact_up_to`` calls, when ``exact_sql`` (the scan's query over ``w_events``) answers instead."""
    where, params = ["true"], []
    if server is not None:
        where.append("server = ?")
        params.append(server)
    if tool is not None:
        where.append("(coalesce(target, method) GLOB ? OR method GLOB ?)")
        params += [tool, tool]
    rows = w(f"""SELECT server, method, target, status, m, idx, sum(n)::BIGINT AS n, sum(errors)::BIGINT AS errors,
                        sum(vsum)::BIGINT AS vsum, max(vsum) AS vmax
                 FROM (SELECT *, CASE WHEN suffix(measure, '_h') OR suffix(measure, '_d') THEN measure[:-3]
                                      ELSE measure END AS m
                       FROM w_series WHERE {' AND '.join(where)})
                 GROUP BY server, method, target, status, m, idx""", params)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault((r["server"], r["method"], r["target"]), {
            "calls": 0, "errors": 0, "vsum": 0, "size_max": None, "statuses": {},
            "duration": {}, "size": {}, "tokens": {}})
        m = r["m"]
        if m == "calls":
            g["calls"] += r["n"]
            g["errors"] += r["errors"] or 0
            g["vsum"] += r["vsum"] or 0
            if r["status"] is not None:
                g["statuses"][r["status"]] = g["statuses"].get(r["status"], 0) + r["n"]
        elif m == "size_max":
            if r["vmax"] is not None:
                g["size_max"] = r["vmax"] if g["size_max"] is None else max(g["size_max"], r["vmax"])
        elif m in ("duration", "size", "tokens") and r["idx"] is not None:
            g[m][r["idx"]] = g[m].get(r["idx"], 0) + r["n"]
    if exact_sql is not None and sum(g["calls"] for g in groups.values()) <= exact_up_to:
        return w(exact_sql, [])
    out = []
    for (srv, method, target), g in groups.items():
        if not g["calls"]:
            continue
        d, s, t = g["duration"], g["size"], g["tokens"]
        lat = [None if (v := histogram.quantile(d, q)) is None else v / 1000 for q in (0.5, 0.95, 0.99)]
        dur_n = sum(d.values())
        out.append({
            "server": srv, "method": method, "target": target, "name": target if target is not None else method,
            "calls": g["calls"], "errors": g["errors"], "error_rate": g["errors"] / g["calls"],
            "p50_ms": lat[0], "p95_ms": lat[1], "p99_ms": lat[2],
            "mean_ms": g["vsum"] / dur_n / 1000 if dur_n else None,
            "payload_p50_bytes": histogram.quantile(s, 0.5), "payload_p95_bytes": histogram.quantile(s, 0.95),
            "payload_max_bytes": g["size_max"],
            "tokens_p50": histogram.quantile(t, 0.5), "tokens_p95": histogram.quantile(t, 0.95),
            "statuses": g["statuses"],
        })
    return out


_SESSION_ROWS: Final = """
SELECT session_id, max(client_name) AS client_name, max(client_version) AS client_version,
       max(server_name) AS server, max(transport) AS transport,
       min(first) AS first_seen, max(last) AS last_seen, sum(calls)::BIGINT AS calls, sum(errors)::BIGINT AS errors,
       list_sort(list_distinct(flatten(list(tools) FILTER (WHERE tools IS NOT NULL)))) AS tools
FROM w_wsessions WHERE {where}
GROUP BY 1 ORDER BY last_seen DESC, session_id"""


def sessions(w: Window, server: str | None, limit: int | None) -> list[dict[str, Any]]:
    """``mcplens sessions``' rows: the most recently active ``limit`` sessions of the window.

    The newest sessions are found from the window's last hour, then day, when those hold enough
    sessions: a session active in ``[x, until)`` is more recent than every session that is not, so
    the top ``limit`` of the sessions seen there are the top of the window. Their rows then
    aggregate over the whole window.
    """
    base, params = "true", []
    if server is not None:
        base, params = "server_name = ?", [server]
    if limit is not None:
        top = None
        newest = w(f"SELECT max(bucket) AS b FROM w_wsessions WHERE {base}", params)[0]["b"]
        for back in (HOUR, 24 * HOUR):
            if newest is None:
                break
            lo = newest - back
            if w.plan.b0 is not None and lo <= w.plan.b0:
                break
            found = w(f"""SELECT session_id, max(last) AS last FROM w_wsessions WHERE {base} AND bucket > ?
                          GROUP BY 1 ORDER BY last DESC, session_id LIMIT ?""", [*params, lo, limit])
            if len(found) >= limit:
                top = [r["session_id"] for r in found]
                break
        if top is not None:
            sql = _SESSION_ROWS.format(where=f"{base} AND session_id IN (SELECT unnest(?))") + " LIMIT ?"
            return w(sql, [*params, top, limit])
        return w(_SESSION_ROWS.format(where=base) + " LIMIT ?", [*params, limit])
    return w(_SESSION_ROWS.format(where=base), params)


_HEALTH: Final = """
WITH h AS (
    SELECT instance_id, server, pid, time, enqueued, written, dropped, faults, write_failures
    FROM w_whealth
    QUALIFY row_number() OVER (PARTITION BY instance_id ORDER BY time DESC, event_id DESC) = 1),
n AS (SELECT instance_id, sum(n)::BIGINT AS events FROM all_winst
      WHERE instance_id IN (SELECT instance_id FROM h) GROUP BY 1)
SELECT h.instance_id, server, pid, time, coalesce(n.events, 0) AS events, enqueued, written, dropped, faults,
       write_failures
FROM h LEFT JOIN n USING (instance_id)
ORDER BY server, time, instance_id"""


def health(w: Window) -> list[dict[str, Any]]:
    """``mcplens health``'s rows: each instance's latest health record in the window, and the events
    it recorded (all of them)."""
    return w(_HEALTH)


def tool_errors(w: Window, tool: str, server: str | None) -> list[dict[str, Any]]:
    where, params = "tool = ?", [tool]
    if server is not None:
        where += " AND server = ?"
        params.append(server)
    return w(f"""SELECT category, error_type, message, sum(n)::BIGINT AS n, max(last) AS last FROM w_werrors
                 WHERE {where} GROUP BY ALL ORDER BY n DESC, category, error_type, message LIMIT 50""", params)


def flows(w: Window, b0: int, b1: int, hourly: bool, server: str | None) -> list[dict[str, Any]]:
    """Tool transitions whose source and destination calls fall in buckets ``b0 .. b1`` (the chart's
    grid; ``hourly``: whole hours). The tail's transitions start from each session's last compacted
    call (its ``wsessions`` row); a transition a session took both before and after the last
    compaction counts that session twice in ``sessions`` (``n`` stays exact)."""
    res = "h" if hourly else "b"
    srv = "" if server is None else f" AND server = {_lit(server)}"
    files = w.stored.get("flows") or []
    parts = []
    if files:
        listed = ", ".join(_path_lit(f) for f in files)
        parts.append(f"SELECT server, src, dst, sb, db, pb, n FROM read_parquet([{listed}]) "
                     f"WHERE res = '{res}' AND sb >= {b0} AND db <= {b1}{srv}")
    tail_calls = windows._tool_calls("tail_all", True)
    if w.rolled:
        sess = ", ".join(_path_lit(m["files"]["wsessions"]) for m in w.snap.rollups or ())  # the batches' only
        last = "{'t': last_call_time, 'e': last_call_id}"
        bridge = (f"""SELECT any_value(server_name) AS server, session_id AS sid, arg_max(last_call, {last}) AS tool,
                             max(last_call_time) AS time, max({last}).e AS event_id, false AS is_new
                      FROM read_parquet([{sess}]) WHERE bucket >= {b0} AND last_call_time IS NOT NULL
                        AND session_id IN (SELECT sid FROM tc) GROUP BY session_id""" if sess else None)
        calls = f"(WITH tc AS ({tail_calls}) SELECT * FROM tc" + (f" UNION ALL {bridge})" if bridge else ")")
    else:  # no rollups: every event is the tail
        calls = f"({windows._tool_calls('batch_events', True)} UNION ALL {tail_calls})"
    w.con.execute(f"CREATE OR REPLACE TEMP TABLE tail_flows AS {windows.flows_sql(calls)}")
    parts.append(f"SELECT server, src, dst, sb, db, pb, n FROM tail_flows WHERE res = '{res}' AND sb >= {b0} "
                 f"AND db <= {b1}{srv}")
    return w(f"""SELECT src, dst, sum(n)::BIGINT AS n, sum(n) FILTER (WHERE pb IS NULL OR pb < {b0})::BIGINT AS sessions
                 FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL ORDER BY n DESC, src, dst LIMIT 200""")


def instance_points(w: Window, t0: float, step: float) -> list[dict[str, Any]]:
    """Each instance's last health record per chart slot of ``step`` seconds from ``t0``."""
    return w(f"""SELECT instance_id, server, pid, time, cpu_s, memory_bytes, started FROM w_whealth
                 QUALIFY row_number() OVER (PARTITION BY instance_id, floor((time - {t0!r}) / {step!r})
                                            ORDER BY time DESC, event_id DESC) = 1
                 ORDER BY instance_id, time""")
