"""The Store over PostgreSQL: the same rows, field for field, as the local store gives for the same events.

How each read is answered, and why:

* ``tool_table``: a window with few events (``EXACT_UP_TO``, estimated from the rollups) is computed
  exactly in PostgreSQL (``percentile_cont``: the same interpolation as DuckDB's ``quantile_cont``).
  A bigger one reads the hourly rollups (counts, statuses, duration sums exact; percentiles from the
  merged ``mcplens.histogram`` buckets, within ``histogram.REL_ERROR``), plus the raw events of the
  window's partial hours turned into the same rows, so the counts are exact for any window. Over ten
  million events that is a few thousand rollup rows instead of a scan.
* ``sessions``, ``events_since``, ``session_events``, ``health``: plain SQL on the partitioned table
  (time-pruned, the session index), each the PostgreSQL spelling of the local store's query; text
  columns are ``COLLATE "C"`` so orderings match DuckDB's byte order.
* ``reader`` (the insights): the detectors run DuckDB SQL over a view ``events`` (bulletin decision).
  The window's events are exported by one ``COPY ... TO STDOUT`` as the same JSON lines the local
  writer writes and read by the local store's own ``read_json`` view, so the analysis is literally
  the same code over the same rows; no detector is translated.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mcplens import _json, histogram
from mcplens import event as ev
from mcplens.store.base import NOT_ERRORS, CompactResult, Store, TimeWindow, shape_event, sort_tool_rows
from mcplens.store.postgres import connect, mask_url
from mcplens.store.postgres.schema import HOUR, MEASURES, SCHEMA, columns
from mcplens.store.sql import ERROR, NOT_HEALTH, window_where

#: windows estimated to hold at most this many calls get exact percentiles; bigger ones the histograms
EXACT_UP_TO: Final = 200_000

_T = f"{SCHEMA}.events"
_ERR: Final = ERROR  # the shared definitions (store/sql.py) are valid PostgreSQL too
_CALL: Final = "kind = 'request' AND proxy_direction IS NULL"
_NOT_HEALTH: Final = NOT_HEALTH
_KEYS: Final = ("server", "method", "target")


def glob_regex(pattern: str) -> str:
    """A shell glob (DuckDB's GLOB) as an anchored PostgreSQL regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append("\\[")
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def _where(window: TimeWindow | None, server: str | None, base: str, *, strict: bool = False) -> tuple[str, list[Any]]:
    return window_where(window, server, base, strict=strict, mark="%s")


class PostgresStore(Store):
    """Reads ``mcplens.events`` and its rollups; needs SELECT only (the reader role)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bad: dict[Path, str] = {}  # the CLI names unreadable files; a database has none
        self._conn: Any = None
        self.exact_up_to = EXACT_UP_TO

    def __repr__(self) -> str:
        return f"PostgresStore({mask_url(self.url)!r})"

    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, application_name="mcplens-reader")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self.conn().cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    # ---- the per-tool table ----------------------------------------------------------------

    def tool_table(self, window: TimeWindow | None = None, server: str | None = None, tool: str | None = None,
                   sort: str = "calls") -> list[dict[str, Any]]:
        sort_tool_rows([], sort)
        if self._estimate(window, server) <= self.exact_up_to:
            rows = self._tool_table_exact(window, server, tool)
        else:
            rows = self._tool_table_rolled(window, server, tool)
        return sort_tool_rows(rows, sort)

    def _estimate(self, window: TimeWindow | None, server: str | None) -> int:
        clauses, params = ["true"], []
        if window is not None and window.since is not None:
            clauses.append("hour >= %s")
            params.append(_hour(window.since))
        if window is not None and window.until is not None:
            clauses.append("hour < %s")
            params.append(window.until)
        if server is not None:
            clauses.append("server = %s")
            params.append(server)
        row = self.rows(f"SELECT coalesce(sum(calls), 0) AS n FROM {SCHEMA}.rollup_calls WHERE {' AND '.join(clauses)}",
                        params)
        return int(row[0]["n"])

    def _tool_table_exact(self, window: TimeWindow | None, server: str | None,
                          tool: str | None) -> list[dict[str, Any]]:
        where, params = _where(window, server, _CALL)
        if tool is not None:
            where += " AND (coalesce(target, method) ~ %s OR method ~ %s)"
            params += [glob_regex(tool)] * 2
        main = self.rows(f"""
            SELECT server_name AS server, method, target, count(*) AS calls,
                   count(*) FILTER (WHERE {_ERR}) AS errors,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_s) AS lat,
                   avg(duration_s) AS mean_s,
                   percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY response_size) AS pay,
                   max(response_size) AS pay_max,
                   percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY response_tokens) AS tok
            FROM {_T} WHERE {where} GROUP BY 1, 2, 3""", params)
        statuses = self.rows(f"SELECT server_name AS server, method, target, status, count(*) AS n FROM {_T} "
                             f"WHERE {where} GROUP BY 1, 2, 3, 4", params)
        by_key: dict[tuple[Any, ...], dict[str, int]] = {}
        for s in statuses:
            if s["status"] is not None:
                by_key.setdefault((s["server"], s["method"], s["target"]), {})[s["status"]] = int(s["n"])
        out = []
        for r in main:
            lat, pay, tok = r["lat"] or [None] * 3, r["pay"] or [None] * 2, r["tok"] or [None] * 2
            out.append(_row(r["server"], r["method"], r["target"], int(r["calls"]), int(r["errors"]),
                            [None if v is None else v * 1000 for v in lat],
                            None if r["mean_s"] is None else float(r["mean_s"]) * 1000,
                            pay, r["pay_max"], tok, by_key.get((r["server"], r["method"], r["target"]), {})))
        return out

    def _tool_table_rolled(self, window: TimeWindow | None, server: str | None,
                           tool: str | None) -> list[dict[str, Any]]:
        """Whole hours from the rollups; the window's partial hours from the raw events, as the same rows."""
        lo = None if window is None or window.since is None else window.since
        hi = None if window is None or window.until is None else window.until
        first_full = None if lo is None else _hour(lo) + (0 if lo == _hour(lo) else HOUR)  # whole hours from
        last_full = None if hi is None else _hour(hi)  # ... up to (excluded) this one
        calls_q, hist_q, params_c, params_h = [], [], [], []

        def rolled(table: str, cols: str, group: str) -> tuple[str, list[Any]]:
            clauses, params = ["true"], []
            if first_full is not None:
                clauses.append("hour >= %s")
                params.append(first_full)
            if last_full is not None:
                clauses.append("hour < %s")
                params.append(last_full)
            if server is not None:
                clauses.append("server = %s")
                params.append(server)
            return f"SELECT {cols} FROM {SCHEMA}.{table} WHERE {' AND '.join(clauses)} GROUP BY {group}", params

        sql, p = rolled("rollup_calls", "server, method, target, status, sum(calls) AS calls, sum(dur_n) AS dur_n, "
                        "sum(dur_sum) AS dur_sum, max(size_max) AS size_max", "1, 2, 3, 4")
        calls_q.append(sql)
        params_c += p
        sql, p = rolled("rollup_hist", "server, method, target, measure, idx, sum(n) AS n", "1, 2, 3, 4, 5")
        hist_q.append(sql)
        params_h += p
        edges = []  # the window's partial hours, read raw (none when lo and hi fall on hour boundaries)
        if first_full is not None and last_full is not None and first_full >= last_full:
            edges.append((lo, hi))  # no whole hour inside: the rollup query returns nothing
        else:
            if lo is not None and first_full is not None and lo < first_full:
                edges.append((lo, first_full))
            if hi is not None and last_full is not None and hi > last_full:
                edges.append((last_full, hi))
        edge_rows: list[dict[str, Any]] = []
        if edges:  # one scan of the partial hours' calls (materialised), both shapes from it
            parts = [_where(TimeWindow(a, b), server, _CALL) for a, b in edges]
            where = " OR ".join(f"({w})" for w, _ in parts)
            measures = ", ".join(f"('{m}'::\"char\", {histogram.index_sql(expr)})" for m, expr in MEASURES.items())
            edge_rows = self.rows(f"""
                WITH e AS MATERIALIZED (
                    SELECT server_name AS server, method, target, status, duration_s, response_size, response_tokens
                    FROM {_T} WHERE {where})
                SELECT 'c' AS part, server, method, target, status, count(*) AS calls, count(duration_s) AS dur_n,
                       coalesce(sum(duration_s), 0) AS dur_sum, max(response_size) AS size_max,
                       NULL::"char" AS measure, NULL::integer AS idx
                FROM e GROUP BY 2, 3, 4, 5
                UNION ALL
                SELECT 'h', server, method, target, NULL, count(*), NULL, NULL, NULL, v.measure, v.idx
                FROM e CROSS JOIN LATERAL (VALUES {measures}) AS v(measure, idx)
                WHERE v.idx IS NOT NULL GROUP BY 2, 3, 4, 10, 11""", [x for _, p in parts for x in p])
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        edge_calls = [r for r in edge_rows if r["part"] == "c"]
        edge_hist = [{**r, "n": r["calls"]} for r in edge_rows if r["part"] == "h"]
        for r in [*self.rows(" UNION ALL ".join(calls_q), params_c), *edge_calls]:
            g = groups.setdefault((r["server"], r["method"], r["target"]),
                                  {"calls": 0, "errors": 0, "dur_n": 0, "dur_sum": 0.0, "size_max": None,
                                   "statuses": {}, "hist": {m: {} for m in MEASURES}})
            n = int(r["calls"])
            g["calls"] += n
            if r["status"] is not None:
                g["statuses"][r["status"]] = g["statuses"].get(r["status"], 0) + n
            if r["status"] not in NOT_ERRORS:
                g["errors"] += n
            g["dur_n"] += int(r["dur_n"])
            g["dur_sum"] += float(r["dur_sum"])
            if r["size_max"] is not None:
                g["size_max"] = max(g["size_max"] or 0, int(r["size_max"]))
        for r in [*self.rows(" UNION ALL ".join(hist_q), params_h), *edge_hist]:
            g = groups.get((r["server"], r["method"], r["target"]))
            if g is not None:
                h = g["hist"][r["measure"]]
                h[int(r["idx"])] = h.get(int(r["idx"]), 0) + int(r["n"])
        regex = None if tool is None else re.compile(glob_regex(tool))
        out = []
        for (srv, method, target), g in groups.items():
            if not g["calls"]:
                continue
            name = target if target is not None else method
            if regex is not None and not (regex.search(name or "") or regex.search(method or "")):
                continue
            d, s, t = g["hist"]["d"], g["hist"]["s"], g["hist"]["t"]
            lat = [None if (v := histogram.quantile(d, q)) is None else v / 1000 for q in (0.5, 0.95, 0.99)]
            out.append(_row(srv, method, target, g["calls"], g["errors"], lat,
                            g["dur_sum"] / g["dur_n"] * 1000 if g["dur_n"] else None,
                            [histogram.quantile(s, q) for q in (0.5, 0.95)], g["size_max"],
                            [histogram.quantile(t, q) for q in (0.5, 0.95)], g["statuses"]))
        return out

    # ---- events, sessions, health ----------------------------------------------------------

    def _select(self) -> str:
        return ", ".join(f'"{n}"' for n, _, _ in columns())

    def _events(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        json_cols = [n for n, _, t in columns() if t == "jsonb"]
        for r in rows:
            for c in json_cols:
                if r.get(c) is not None:
                    r[c] = _json.compact(r[c])
            shape_event(r)
        return rows

    def events_since(self, ts: float, limit: int | None = None, *, server: str | None = None) -> list[dict[str, Any]]:
        where, params = _where(TimeWindow(since=ts), server, _NOT_HEALTH, strict=True)
        if limit is None:
            return self._events(self.rows(f"SELECT {self._select()} FROM {_T} WHERE {where} ORDER BY time, event_id",
                                          params))
        rows = self.rows(f"SELECT {self._select()} FROM {_T} WHERE {where} ORDER BY time DESC, event_id DESC LIMIT %s",
                         [*params, limit])
        return self._events(list(reversed(rows)))

    def sessions(self, window: TimeWindow | None = None, server: str | None = None,
                 limit: int | None = 50) -> list[dict[str, Any]]:
        where, params = _where(window, server, f"{_NOT_HEALTH} AND session_id IS NOT NULL")
        sql = f"""
            SELECT session_id, max(client_name) AS client_name, max(client_version) AS client_version,
                   max(server_name) AS server, max(transport) AS transport,
                   min(time) AS first_seen, max(time) AS last_seen,
                   count(*) FILTER (WHERE kind = 'request') AS calls,
                   count(*) FILTER (WHERE kind = 'request' AND {_ERR}) AS errors,
                   array_agg(DISTINCT tool ORDER BY tool) FILTER (WHERE tool IS NOT NULL) AS tools
            FROM {_T} WHERE {where}
            GROUP BY 1 ORDER BY last_seen DESC, session_id"""
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        return [{**r, "tools": r["tools"] or []} for r in self.rows(sql, params)]

    def session_events(self, session_id: str) -> list[dict[str, Any]]:
        prefix = session_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.rows(f"SELECT {self._select()}, session_id AS session FROM {_T} WHERE {_NOT_HEALTH} "
                         "AND session_id LIKE %s ORDER BY time, event_id", [prefix])
        return self._events(rows)

    def health(self, window: TimeWindow | None = None) -> list[dict[str, Any]]:
        where, params = _where(window, None, f"kind = '{ev.HEALTH_KIND}'")
        return self.rows(f"""
            WITH h AS (
                SELECT DISTINCT ON (instance_id) instance_id, server_name AS server, pid, time,
                       health_enqueued AS enqueued, health_written AS written, health_dropped AS dropped,
                       health_faults AS faults, health_write_failures AS write_failures
                FROM {_T} WHERE {where} ORDER BY instance_id, time DESC, event_id DESC),
            n AS (SELECT instance_id, count(*) AS events FROM {_T}
                  WHERE {_NOT_HEALTH} AND instance_id IN (SELECT instance_id FROM h) GROUP BY 1)
            SELECT h.instance_id, server, pid, time, coalesce(n.events, 0) AS events, enqueued, written, dropped,
                   faults, write_failures
            FROM h LEFT JOIN n USING (instance_id)
            ORDER BY server, time""", params)

    def count(self) -> int:
        return int(self.rows(f"SELECT count(*) AS n FROM {_T}")[0]["n"])

    def compact(self) -> CompactResult:
        """Nothing to fold: rows are columnar-enough in PostgreSQL and the writers keep the rollups."""
        return CompactResult((), 0, 0, 0)

    # ---- the insights' DuckDB view ---------------------------------------------------------

    @contextlib.contextmanager
    def analysis_source(self, window: TimeWindow | None = None, server: str | None = None) -> Iterator[Any]:
        """The detectors' source: the window's events in an in-memory DuckDB (bulletin decision), the
        rollup tables computed from them by :class:`~mcplens.store.source.DuckDBSource`."""
        from mcplens.store.source import DuckDBSource

        with self.reader(since=None if window is None else window.since, history=True) as run:
            yield DuckDBSource(run, window, server)

    @contextlib.contextmanager
    def reader(self, *, since: float | None = None, history: bool = False) -> Iterator[Any]:
        """An in-memory DuckDB holding the window's events as the table ``events`` (friendly columns,
        the local store's types), for the detectors' DuckDB SQL.

        One ``COPY ... TO STDOUT`` in CSV (PostgreSQL's cheapest output: floats print round-trip
        exact, JSON and arrays as JSON text) into a temp file, read by DuckDB's parallel CSV reader and
        materialised once, so the dozen detector queries do not parse it again."""
        from mcplens.store.local.files import Reader, _duckdb

        cols = columns()
        out_cols = ", ".join(f'"{n}"::text' if t == "jsonb" else f'array_to_json("{n}")::text' if t == "text[]"
                             else f'"{n}"' for n, _, t in cols)
        duck_types = {n: t for n, (_, t) in _fields().items()}
        read_types = ", ".join(f"'{n}': '{'VARCHAR' if duck_types[n] in ('JSON', 'VARCHAR[]') else duck_types[n]}'"
                               for n, _, _ in cols)
        select = ", ".join(f'CAST("{n}" AS JSON) AS "{n}"' if duck_types[n] == "JSON"
                           else f'CAST(from_json("{n}", \'["VARCHAR"]\') AS VARCHAR[]) AS "{n}"'
                           if duck_types[n] == "VARCHAR[]" else f'"{n}"' for n, _, _ in cols)
        where = "true" if since is None else "time >= %s"
        params = None if since is None else [since]
        if since is not None and history:  # the insights judge a window's sessions with their earlier calls
            from mcplens.store.sql import SESSION_KEY

            call = "kind = 'request' AND method = 'tools/call'"
            where += (f" OR (time < %s AND {call} AND {SESSION_KEY} IN "
                      f"(SELECT {SESSION_KEY} FROM {_T} WHERE time >= %s AND {call}))")
            params = [since] * 3
        fd, name = tempfile.mkstemp(prefix="mcplens-pg-", suffix=".csv")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                cur = self.conn().cursor()
                sql = f"COPY (SELECT {out_cols} FROM {_T} WHERE {where}) TO STDOUT (FORMAT csv)"
                with cur.copy(sql, params) as cp:
                    for block in cp:
                        out.write(block)
            con = _duckdb().connect()
            try:
                lit = "'" + str(path).replace("'", "''") + "'"
                con.execute(f"CREATE TEMP TABLE events AS SELECT {select} FROM read_csv({lit}, header=false, "
                            f"columns={{{read_types}}}, quote='\"', escape='\"', allow_quoted_nulls=false, "
                            "auto_detect=false)")
                yield Reader(con)
            finally:
                con.close()
        finally:
            path.unlink(missing_ok=True)


def _fields() -> dict[str, tuple[str, str]]:
    from mcplens.store.base import FIELDS

    return FIELDS


def _hour(t: float) -> float:
    return float(int(t // HOUR) * HOUR)


def _row(server: Any, method: Any, target: Any, calls: int, errors: int, lat: list[Any], mean_ms: Any,
         pay: list[Any], pay_max: Any, tok: list[Any], statuses: dict[str, int]) -> dict[str, Any]:
    return {
        "server": server, "method": method, "target": target,
        "name": target if target is not None else method,
        "calls": calls, "errors": errors, "error_rate": errors / calls if calls else None,
        "p50_ms": lat[0], "p95_ms": lat[1], "p99_ms": lat[2], "mean_ms": mean_ms,
        "payload_p50_bytes": pay[0], "payload_p95_bytes": pay[1],
        "payload_max_bytes": None if pay_max is None else int(pay_max),
        "tokens_p50": tok[0], "tokens_p95": tok[1],
        "statuses": dict(sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
