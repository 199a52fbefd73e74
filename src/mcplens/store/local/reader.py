"""The local store: DuckDB queries straight over the event log's files, no server, no import step.

Writers never wait for readers (research/FACTS.md), so a reader must cope with files that appear,
move from ``live/`` to ``closed/``, or disappear into Parquet while it looks. The rules that keep
every event visible exactly once:

* Compaction writes ``parquet/<batch>.parquet``, then *commits* by atomically creating
  ``<batch>.manifest.json`` naming the source segments (with their sizes), and only then deletes
  the sources.
* A reader uses a Parquet file only if its manifest exists, and skips every segment a manifest
  names (name and size both match: a file that merely shares the name is still read).
* It lists manifests, then ``live/``, then ``closed/`` (a segment renamed meanwhile is caught by
  the later listing; the same name twice counts once), then checks the manifests again: a commit
  in between would hide sources already deleted, so it lists afresh.
* A file that vanishes between listing and reading fails the DuckDB query; the reader lists again,
  backing off (exponentially, with jitter, for up to ``RETRY_SECONDS``), since a compaction commits
  batch after batch. A writer renames a segment only on rotation (64 MB or 10 min), so a read
  rarely needs a second try; under heavy churn it keeps trying rather than failing the command.
* A file DuckDB cannot read (a damaged Parquet batch, a manifest that is not JSON) is left out and
  named in :attr:`LocalStore.bad`, so one bad file costs its own events, not every command;
  ``mcplens check`` lists such files and moves them aside.
* Paths reach DuckDB with glob characters escaped: a stray ``closed/x*.jsonl`` is read once, as
  itself, not as a pattern matching every segment.

duckdb is imported here only, never on the capture side, which runs inside someone else's server.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from mcplens.store import engine
from mcplens.store.base import (
    CompactResult,
    Store,
    TimeWindow,
    shape_event,
    sort_tool_rows,
)
from mcplens.store.local.files import (
    MANIFEST_SUFFIX,
    SHARED,
    Manifest,
    Reader,
    Snapshot,
    _covered,
    _path_lit,
    _rows,
    _segment_files,
    events_view_sql,
    read_segments_sql,
    schema_of,
    share_cores,
)
from mcplens.store.local.layout import CLOSED, LIVE, PARQUET, events_dir
from mcplens.store.local.tailcache import closed_as_parquet, make_copies
from mcplens.store.source import AnalysisSource
from mcplens.store.sql import ERROR, NOT_HEALTH, SESSION_ID, lit, window_where

RETRY_SECONDS: Final = 120.0  # how long a reader keeps re-listing a store that changes under it
BACKOFF_MAX: Final = 0.5  # seconds: the longest pause between two re-listings
MTIME_SLACK: Final = 2.0  # seconds: file times come from a coarser clock than time.time()
#: a window with at most this many calls: exact percentiles in the report (bigger: the histograms)
EXACT_UP_TO: Final = 200_000


_ORDER: Final = "ORDER BY time, event_id"

_TOOL_TABLE: Final = """
SELECT server, method, target, coalesce(target, method) AS name, calls, errors,
       errors / calls AS error_rate,
       lat[1] * 1000 AS p50_ms, lat[2] * 1000 AS p95_ms, lat[3] * 1000 AS p99_ms, mean_s * 1000 AS mean_ms,
       pay[1] AS payload_p50_bytes, pay[2] AS payload_p95_bytes, pay_max AS payload_max_bytes,
       tok[1] AS tokens_p50, tok[2] AS tokens_p95, statuses
FROM (
    SELECT server_name AS server, method, target,
           count(*) AS calls,
           count(*) FILTER (WHERE {err}) AS errors,
           quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS lat,
           avg(TRY_CAST(duration_s AS DECIMAL(38, 9))) AS mean_s,  -- an exact sum: equal in any order
           quantile_cont(response_size, [0.5, 0.95]) AS pay,
           max(response_size) AS pay_max,
           quantile_cont(response_tokens, [0.5, 0.95]) AS tok,
           histogram(status) AS statuses
    FROM events WHERE {where}
    GROUP BY ALL
)"""

def _where(window: TimeWindow | None, server: str | None, base: str, *, strict: bool = False
           ) -> tuple[str, list[Any]]:
    return window_where(window, server, base, strict=strict)


def _inline(sql: str, params: list[Any]) -> str:
    """``?`` marks replaced by literals (the window's SQL runs inside a larger query)."""
    parts = sql.split("?")
    assert len(parts) == len(params) + 1
    out = parts[0]
    for p, rest in zip(params, parts[1:], strict=True):
        out += lit(p) + rest
    return out


def _since(window: TimeWindow | None) -> float | None:
    return None if window is None else window.since


class LocalStore(Store):
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = events_dir(self.home)
        #: files this store found unreadable and leaves out of every read, with why
        self.bad: dict[Path, str] = {}
        self._parquet_ok: dict[Path, tuple[int, int]] = {}  # (size, mtime) whose magic bytes passed
        #: windows with at most this many calls get exact percentiles in ``tool_table`` (see windows.py)
        self.exact_up_to = EXACT_UP_TO

    # the retry rules, for readers in other modules (store/local/windows.py)
    retry_seconds = RETRY_SECONDS

    @staticmethod
    def moved(error: BaseException) -> bool:
        return _moved(error)

    @staticmethod
    def pause(attempt: int) -> None:
        _backoff(attempt)

    def _mark_bad(self, path: Path, why: str) -> bool:
        if path in self.bad:
            return False
        self.bad[path] = why
        return True

    # ---- listing ---------------------------------------------------------------------------

    def _manifest_names(self) -> set[str]:
        try:
            return {n for n in os.listdir(self.root / PARQUET) if n.endswith(MANIFEST_SUFFIX)}
        except FileNotFoundError:
            return set()

    def manifests(self) -> list[Manifest]:
        """The committed batches; a manifest that cannot be read is named in :attr:`bad`, not used."""
        out = []
        for name in sorted(self._manifest_names()):
            path = self.root / PARQUET / name
            try:
                data = json.loads(path.read_text("utf-8"))
                out.append(Manifest(name.removesuffix(MANIFEST_SUFFIX), path.parent / data["parquet"],
                                    dict(data["segments"]), data.get("rollups"), schema_of(data.get("columns"))))
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError, AttributeError) as e:  # damaged: written atomically
                self._mark_bad(path, f"unreadable manifest ({type(e).__name__}: {e})"[:200])
        return out

    def _parquet_problem(self, path: Path) -> str | None:
        """Cheap structural check of a batch (magic bytes, footer length), once per file version."""
        try:
            st = path.stat()
            if self._parquet_ok.get(path) == (st.st_size, st.st_mtime_ns):
                return None
            with open(path, "rb") as f:
                head = f.read(4)
                if st.st_size < 12:
                    return f"not a Parquet file ({st.st_size} bytes)"
                f.seek(st.st_size - 8)
                tail = f.read(8)
        except FileNotFoundError:
            return "missing: its manifest names it but the file is gone"
        except OSError as e:
            return f"cannot open ({e.strerror})"
        if head != b"PAR1" or tail[4:] != b"PAR1":
            return "not a Parquet file (no magic bytes: truncated or overwritten)"
        if int.from_bytes(tail[:4], "little") > st.st_size - 12:
            return "damaged Parquet footer (truncated)"
        self._parquet_ok[path] = (st.st_size, st.st_mtime_ns)
        return None

    def snapshot(self) -> Snapshot:
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            manifests = self.manifests()
            found: dict[str, Path] = {}
            for d in (LIVE, CLOSED):  # in this order: a live -> closed rename cannot slip between
                found.update((p.name, p) for p in _segment_files(self.root / d))
            names = self._manifest_names()
            if {m.batch + MANIFEST_SUFFIX for m in manifests} | {p.name for p in self.bad} >= names:
                covered = _covered(manifests)
                good = []
                stale_rollups = False
                for m in manifests:
                    why = None if m.parquet in self.bad else self._parquet_problem(m.parquet)
                    if why is not None:
                        self._mark_bad(m.parquet, why)
                    elif m.parquet not in self.bad:
                        good.append(m)
                        for f in m.rollup_files():  # damaged rollups: named, and the readers scan
                            if f in self.bad or (problem := self._parquet_problem(f)) is None:
                                continue
                            if problem.startswith("missing"):  # replaced by a re-roll-up meanwhile
                                stale_rollups = True
                            else:
                                self._mark_bad(f, problem)
                segs = sorted(p for p in found.values() if not covered(p) and p not in self.bad)
                # rollups add up only over every batch: with a batch or a rollup file left out,
                # the readers scan instead
                whole = len(good) == len(manifests) and not stale_rollups and not any(
                    f in self.bad for m in good for f in m.rollup_files())
                rollups = _rollups(good) if whole else None
                schemas = {m.parquet: m.schema for m in good if m.schema is not None}
                return Snapshot([m.parquet for m in good], segs, rollups, schemas)
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the event log under {self.root} kept changing while being listed for {RETRY_SECONDS:.0f} s"
                )
            _backoff(attempt)
            attempt += 1

    def isolate(self, error: BaseException, snap: Snapshot) -> bool:
        """After a failed read: find the file(s) to blame, leave them out from now on.

        A file is bad only if it still exists and fails when read on its own: one that moved
        meanwhile (churn) is not. The files DuckDB names are tried first, then every file.
        True when a file was newly found bad, so the read is worth another try.
        """
        if type(error).__name__ == "InterruptException":  # Ctrl-C, not damage
            return False
        text = str(error)
        rolled = [Path(f) for m in snap.rollups or () for f in (m.get("files") or {}).values()]
        files = [*snap.parquet, *rolled, *snap.segments]
        named = [p for p in files if str(p) in text]
        duckdb = engine.duckdb()
        newly = False
        con = duckdb.connect()
        try:
            for p in named or files:
                src = f"({read_segments_sql([p])})" if p in snap.segments else f"read_parquet({_path_lit(p)})"
                try:
                    con.execute(f"SELECT max(COLUMNS(*)) FROM {src}").fetchall()
                except duckdb.Error as e:
                    if p.exists() and type(e).__name__ != "InterruptException":
                        newly |= self._mark_bad(p, str(e).splitlines()[0][:200])
        finally:
            con.close()
        return newly

    # ---- querying --------------------------------------------------------------------------

    def _snapshot_since(self, since: float | None) -> Snapshot:
        """The snapshot, without the segments last written before ``since`` (they hold nothing newer)."""
        def listed() -> Snapshot:
            snap = self.snapshot()
            return snap if since is None else snap.written_since(since - MTIME_SLACK)

        # closed segments from the Parquet copies the readers keep (a JSON parse per read otherwise);
        # after making any, list again: a read must follow its listing closely (live segments move)
        snap = listed()
        if make_copies(self.root, snap.segments, self.bad):
            snap = listed()
        return Snapshot(snap.parquet, closed_as_parquet(self.root, snap.segments, self.bad), snap.rollups,
                        snap.schemas)

    def _view_sql(self, snap: Snapshot, name: str = "events") -> str:
        return events_view_sql(name, snap.parquet, snap.segments, snap.schemas)

    def query(self, sql: str, params: list[Any] | None = None, *, since: float | None = None,
              view: Callable[[Any, Snapshot], None] | None = None) -> list[dict[str, Any]]:
        """Run SQL against the ``events`` view of everything stored; rows as dicts.

        ``since``: the SQL only wants events that started at or after it, so segments last written
        before it are not read at all (an event is written after it starts). This keeps ``tail``
        and ``--since 15m`` cheap over a large uncompacted backlog. ``view(con, snap)``: makes an
        ``events`` view of only the files the SQL needs (default: every file of the snapshot).
        """
        duckdb = engine.duckdb()
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            snap = self._snapshot_since(since)
            con = duckdb.connect()
            try:
                if view is None:
                    con.execute(self._view_sql(snap))
                else:
                    view(con, snap)
                return _rows(con.execute(sql, params or []))
            except duckdb.Error as e:
                if type(e).__name__ == "InterruptException":
                    raise
                moved = snap.vanished() or _moved(e)  # listed, then moved before DuckDB opened it
                if not moved and self.isolate(e, snap):
                    continue  # a damaged file, left out from now on
                if not moved or time.monotonic() >= deadline:
                    raise
                _backoff(attempt)
                attempt += 1
            finally:
                con.close()

    @contextlib.contextmanager
    def reader(self, *, since: float | None = None) -> Iterator[Callable[..., list[dict[str, Any]]]]:
        """One snapshot and one connection for a batch of queries (``mcplens insights`` runs a dozen).

        Yields ``run(sql, params=None) -> rows`` (a :class:`Reader`); temp tables made with it live
        until the block ends. When every batch has rollups, ``run.rollups`` lists them and the views
        ``batch_events`` and ``segment_events`` split ``events`` into compacted and not.
        A file vanishing under it (a compaction committed meanwhile) fails a query: callers retry.
        A damaged file fails it too, and is left out of the next reader.
        """
        duckdb = engine.duckdb()
        snap = self._snapshot_since(since)
        # a cursor of the process's readers' database, whose cache keeps the Parquet footers: parsed
        # once, not by each query (~60 ms over 10M events, for a query that reads 7 rows), nor by
        # each run of a process that stays up
        con, schema, db = SHARED.open()
        failed = False
        try:
            run = Reader(con, snap, streams=share_cores(con), schema=schema)
            if snap.rollups is None:
                run(self._view_sql(snap))
            else:  # the same events, split (each view's making reads its files' schemas: once, not twice)
                run(events_view_sql("batch_events", snap.parquet, [], snap.schemas))
                run(events_view_sql("segment_events", [], snap.segments))
                run("CREATE OR REPLACE TEMP VIEW events AS "
                    "SELECT * FROM batch_events UNION ALL SELECT * FROM segment_events")
            yield run
        except duckdb.Error as e:
            failed = True
            if not snap.vanished() and not _moved(e):
                self.isolate(e, snap)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            SHARED.close(con, schema, db, failed=failed)

    @contextlib.contextmanager
    def analysis_source(
        self, window: TimeWindow | None = None, server: str | None = None
    ) -> Iterator[AnalysisSource]:
        from mcplens.store.local.source import LocalSource

        with self.reader(since=_since(window)) as run:
            yield LocalSource(run, window, server)

    def tool_table(
        self,
        window: TimeWindow | None = None,
        server: str | None = None,
        tool: str | None = None,
        sort: str = "calls",
    ) -> list[dict[str, Any]]:
        sort_tool_rows([], sort)  # reject a bad sort before the scan, not after
        from mcplens.store.local import windows

        # requests the server sent the client (sampling, elicitation, seen by the proxy) are not its tools
        where, params = _where(None, server, "kind = 'request' AND proxy_direction IS NULL")
        if tool is not None:  # a name, or a method (the help says so): tools/call, tools/list ...
            where += " AND (coalesce(target, method) GLOB ? OR method GLOB ?)"
            params += [tool, tool]
        exact = _TOOL_TABLE.format(where=where, err=ERROR).replace("FROM events", "FROM w_events")
        exact = _inline(exact, params)
        rows = windows.read(self, window, lambda w: windows.tool_table(
            w, server, tool, self.exact_up_to, exact))
        for r in rows:
            statuses = r["statuses"] or {}
            if isinstance(statuses, list):
                statuses = {s["k"]: s["v"] for s in statuses}
            r["statuses"] = dict(sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))
        return sort_tool_rows(rows, sort)

    def events_since(self, ts: float, limit: int | None = None, *, server: str | None = None) -> list[dict[str, Any]]:
        where, params = _where(TimeWindow(since=ts), server, NOT_HEALTH, strict=True)
        if limit is None:
            rows = self.query(f"SELECT * FROM events WHERE {where} {_ORDER}", params, since=ts)
            return [shape_event(r) for r in rows]
        sql = f"SELECT * FROM events WHERE {where} ORDER BY time DESC, event_id DESC LIMIT ?"
        return [shape_event(r) for r in reversed(self.query(sql, [*params, limit], since=ts))]

    def sessions(
        self, window: TimeWindow | None = None, server: str | None = None, limit: int | None = 50
    ) -> list[dict[str, Any]]:
        from mcplens.store.local import windows

        rows = windows.read(self, window, lambda w: windows.sessions(w, server, limit))
        return [{**r, "tools": r["tools"] or []} for r in rows]

    def session_events(self, session_id: str) -> list[dict[str, Any]]:
        sql = (f"SELECT *, {SESSION_ID} AS session FROM events WHERE {NOT_HEALTH} "
               f"AND starts_with({SESSION_ID}, ?) {_ORDER}")
        return [shape_event(r) for r in self.query(sql, [session_id], view=_session_view(session_id))]

    def health(self, window: TimeWindow | None = None) -> list[dict[str, Any]]:
        from mcplens.store.local import windows

        return windows.read(self, window, windows.health)

    def count(self) -> int:
        return int(self.query("SELECT count(*) AS n FROM events")[0]["n"])

    def compact(self) -> CompactResult:
        from mcplens.store.local.compact import compact

        return compact(self)


def _session_view(prefix: str) -> Callable[[Any, Snapshot], None]:
    """An ``events`` view for one session's page: when every batch has its rollups, only the batches
    whose ``wsessions`` rows name a session starting with ``prefix`` (a few hundred thousand short
    rows over ten million events, instead of every event's session id), within those rows' first
    and last times (the batches' row groups outside are skipped), plus every uncompacted segment
    (its Parquet copy when the dashboard made one: parsing the JSON lines costs more than the rest).
    ``wsessions`` holds a row per (session, bucket) of every event but health records that has a
    session id: exactly the events the page shows."""

    def view(con: Any, snap: Snapshot) -> None:
        from mcplens.store import rollup
        from mcplens.store.local import windows

        rollups = snap.rollups
        if not rollups or not all(rollup.complete(m) for m in rollups):
            con.execute(events_view_sql("events", snap.parquet, snap.segments, snap.schemas))
            return
        listed = ", ".join(_path_lit(m["files"]["wsessions"]) for m in rollups)
        hits = con.execute(f"""SELECT filename, min(first), max(last) FROM read_parquet([{listed}], filename=true)
                               WHERE starts_with(session_id, ?) GROUP BY filename""", [prefix]).fetchall()
        batch = {os.path.normpath(m["files"]["wsessions"]): p for p, m in zip(snap.parquet, rollups, strict=True)}
        parts = []
        for i, (name, lo, hi) in enumerate(hits):
            con.execute(events_view_sql(f"session_batch{i}", [batch[os.path.normpath(name)]], [], snap.schemas))
            parts.append(f"SELECT * FROM session_batch{i} WHERE time >= {float(lo)!r} AND time <= {float(hi)!r}")
        made = windows.TAIL.made(list(snap.segments)) if snap.segments else None
        if made:  # the dashboard's Parquet copies of the segments: no JSON parsed again
            parts.append(f"SELECT * FROM read_parquet([{', '.join(_path_lit(c.events) for c in made)}])")
        else:
            con.execute(events_view_sql("session_tail", [], snap.segments))
            parts.append("SELECT * FROM session_tail")
        con.execute(f"CREATE OR REPLACE TEMP VIEW events AS {' UNION ALL BY NAME '.join(parts)}")

    return view


def _rollups(manifests: list[Manifest]) -> list[dict[str, Any]] | None:
    """Every batch's rollups with absolute paths, or None if any batch lacks them (then none are used)."""
    out = []
    for m in manifests:
        if not m.rollups or not m.rollups.get("files"):
            return None
        files = {t: str(m.parquet.parent / n) for t, n in m.rollups["files"].items()}
        out.append({**m.rollups, "files": files, "batch": str(m.parquet)})
    return out


def _moved(error: BaseException) -> bool:
    """DuckDB's word for a listed file that is no longer there (renamed or compacted meanwhile)."""
    return type(error).__name__ == "IOException" and "No files found" in str(error)


def _backoff(attempt: int) -> None:
    """A compaction commits batch after batch; give it room rather than re-reading in lockstep
    (the jitter keeps several readers from re-listing in step with the writer)."""
    time.sleep(min(BACKOFF_MAX, 0.01 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.5))  # noqa: S311


