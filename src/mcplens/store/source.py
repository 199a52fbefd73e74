"""What the analysis reads: a query runner over one window of events, from any store.

The detectors are DuckDB SQL over a view ``events`` (friendly columns, store/base.FIELDS) and the
rollup tables ``ru_<table>`` (chains, sessions, loops, exfil, buckets, instances, values, statuses;
see store/rollup.py). A store hands them an :class:`AnalysisSource` for a window
(:meth:`mcplens.store.base.Store.analysis_source`): no detector knows a file, a URL or how the
tables were made.

:class:`DuckDBSource` is the whole contract over any DuckDB connection that has an ``events`` view
or table: a store that is not DuckDB (PostgreSQL) loads the window's rows into an in-memory DuckDB
and wraps it. It builds the rollup tables from the window's events; the local store overrides that
to read the ones stored at compaction when the run covers the whole store.
"""

from __future__ import annotations

import copy
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mcplens.store import rollup
from mcplens.store.sql import label, lit

if TYPE_CHECKING:
    from mcplens.store.window import TimeWindow

Rows = list[dict[str, Any]]
T = TypeVar("T")
#: statements an analysis runs at once at most (:meth:`AnalysisSource.each`), when its store can fork
PARALLEL = 2
#: tools -> (data-access tools, outbound tools): the analysis's classification
Split = Callable[[Sequence[str | None]], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class RollupInfo:
    bucket: float  # seconds per ``ru_buckets.bucket``
    reads: list[str]  # the data-access tools the exfil table pairs ...
    sends: list[str]  # ... with these outbound tools
    stored: bool  # read from rollups stored at compaction (else computed from the window's events)


class AnalysisSource(ABC):
    """``source(sql, params) -> rows`` over one snapshot, plus the rollup tables on request.

    ``events`` holds at least the window's events (it may hold more: the detectors filter on time
    and server themselves). Temp views and tables the detectors create live until the source closes.
    """

    def __init__(self, window: TimeWindow | None, server: str | None) -> None:
        self.window = window
        self.server = server

    @property
    def since(self) -> float | None:
        return None if self.window is None else self.window.since

    @property
    def until(self) -> float | None:
        return None if self.window is None else self.window.until

    def bounds(self) -> list[tuple[str, Any]]:
        """The window and server as ``(condition, value)`` pairs over the events' columns."""
        return [(c, v) for c, v in (("time >= ", self.since), ("time < ", self.until), ("server_name = ", self.server))
                if v is not None]

    def where_literal(self) -> str:
        """The bounds as `` AND ...`` with literals, for views (which take no parameters)."""
        return "".join(f" AND {c}{lit(v)}" for c, v in self.bounds())

    @abstractmethod
    def __call__(self, sql: str, params: list[Any] | None = None) -> Rows:
        """Run DuckDB SQL; rows as dicts by column name (none for a statement without a result)."""

    def fork(self) -> AnalysisSource | None:
        """Another source over the same snapshot and scratch tables whose statements run beside this
        one's (:meth:`each`), to be closed after; None when the store cannot (then all run here)."""
        return None

    def close(self) -> None:  # noqa: B027 - most sources hold nothing of their own to let go
        """Let go of what a fork holds (the source a store hands out is closed by the store)."""

    def interrupt(self) -> None:  # noqa: B027 - a source that cannot fork has nothing running elsewhere
        """Stop the statement a fork is running, from another thread (Ctrl-C in the caller's)."""

    def each(self, tasks: Sequence[Callable[[AnalysisSource], T]]) -> list[T]:
        """Every task's result over a source, in the tasks' order; independent tasks run at once on forks.

        An insights run is ~80 statements, most too small for DuckDB to spread over cores, and many
        independent of each other (the two edge regions, the rollup tables, the detectors): on two
        cores, two of them at once. Tasks must not make scratch tables of the same name. Every task
        runs, whatever another raises; the first error (in the tasks' order) is raised after. A
        KeyboardInterrupt in the caller's thread is not collected: it stops them all at once.
        """
        sources: list[AnalysisSource] = [self]
        while len(sources) < min(len(tasks), PARALLEL):
            other = self.fork()
            if other is None:
                break
            sources.append(other)
        results: list[Any] = [None] * len(tasks)
        errors: list[Exception | None] = [None] * len(tasks)
        queue = iter(range(len(tasks)))
        lock = threading.Lock()
        stop = threading.Event()

        def work(src: AnalysisSource) -> None:
            while not stop.is_set():
                with lock:
                    i = next(queue, None)
                if i is None:
                    return
                try:
                    results[i] = tasks[i](src)
                except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                    errors[i] = e

        threads = [threading.Thread(target=work, args=(src,), name="mcplens-query", daemon=True)
                   for src in sources[1:]]
        try:
            for t in threads:
                t.start()
            work(self)
        except BaseException:  # Ctrl-C: no task more, and the forks' statements stopped, not waited for
            stop.set()
            while any(t.is_alive() for t in threads):  # again until they end: one may start a statement after
                for src in sources[1:]:
                    src.interrupt()
                threads[0].join(0.05)
            raise
        finally:
            for t in threads:
                t.join()
            for src in sources[1:]:
                src.close()
        for e in errors:
            if e is not None:
                raise e
        return results

    def events_from(self, since: float) -> str:
        """A relation of the events that holds at least the window's from ``since`` on (``events``
        unless the store can name a smaller part of it, read faster)."""
        return "events"

    def marks(self) -> None:
        """Create the view ``marks``: the window's events of :data:`rollup.MARKS` (few, read one by one)."""
        self(f"CREATE OR REPLACE TEMP VIEW marks AS SELECT * FROM events WHERE {rollup.MARKS}{self.where_literal()}")

    @abstractmethod
    def rollup_tables(self, split: Split, *, exfil_window: float, bucket: float, requests: int,
                      min_loop: int = 2, examples: int = rollup.LOOP_EXAMPLES) -> RollupInfo:
        """Create ``ru_<table>`` (:data:`rollup.WINDOWED`) and the view ``ru_bucket_errors``
        (:data:`rollup.BUCKET_ERRORS`) for this window and server; ``ru_errmin`` may hold a (server,
        tool, minute) in more than one row (its rule reads which minutes, not how many errors, and a
        merge of a week of minutes is most of its cost); ``requests``: how
        many the window holds (unused); ``ru_loops`` counts the keys called at least ``min_loop`` times
        per level (:func:`rollup.loop_levels_sql`), with ``examples`` sessions each."""


class DuckDBSource(AnalysisSource):
    """An :class:`AnalysisSource` over a DuckDB connection's ``run(sql, params) -> rows``."""

    def __init__(self, run: Callable[..., Rows], window: TimeWindow | None, server: str | None) -> None:
        super().__init__(window, server)
        self._run = run

    def __call__(self, sql: str, params: list[Any] | None = None) -> Rows:
        return self._run(sql, params or [])

    def fork(self) -> DuckDBSource | None:
        run = getattr(self._run, "fork", lambda: None)()
        if run is None:
            return None
        other = copy.copy(self)
        other._run = run
        return other

    def close(self) -> None:
        getattr(self._run, "close", lambda: None)()

    def interrupt(self) -> None:
        getattr(self._run, "interrupt", lambda: None)()

    def rollup_tables(self, split: Split, *, exfil_window: float, bucket: float, requests: int,
                      min_loop: int = 2, examples: int = rollup.LOOP_EXAMPLES) -> RollupInfo:
        """The slow path: the tables computed from the window's events, with the earlier events of the
        window's sessions that ``events`` holds as their history (see :func:`rollup.compute`)."""

        where = self.where_literal()
        tools = self(f"SELECT DISTINCT {label('method', 'target')} AS tool FROM events "
                     f"WHERE kind = 'request' AND proxy_direction IS NULL {where} AND method = 'tools/call'")
        reads, sends = split([r["tool"] for r in tools])
        self(f"CREATE OR REPLACE TEMP VIEW win_events AS SELECT * FROM events WHERE true {where}")
        history = None
        if self.since is not None:
            server = "" if self.server is None else f" AND server_name = {lit(self.server)}"
            self(f"CREATE OR REPLACE TEMP VIEW win_history AS SELECT * FROM events WHERE time < {lit(self.since)}"
                 f"{server}")
            history = "win_history"
        tables = rollup.WINDOWED  # what the analysis reads (the marks are a view of the events: marks())
        rollup.compute(self, "win_events", history, reads=reads, sends=sends, exfil_window=exfil_window,
                       bucket=bucket, prefix="rw_", tables=tables, sort=False)
        for t in tables:
            if t == "loops":
                sql = rollup.loop_levels_sql(f"(SELECT * FROM rw_loops WHERE n >= {int(min_loop)})", examples)
            else:
                sql = rollup.MERGE[t].format(src=f"rw_{t}")
            self(f"CREATE OR REPLACE TEMP TABLE ru_{t} AS {sql}")
        self(rollup.BUCKET_ERRORS.format(src="rw_buckets"))
        return RollupInfo(bucket, reads, sends, stored=False)


def hours(window: TimeWindow | None) -> tuple[int | None, int | None]:
    """The whole hours (``[lo, hi)``, by :data:`rollup.HOUR_S`) inside a window; None: unbounded."""
    if window is None:
        return None, None
    lo = None if window.since is None else math.ceil(window.since / rollup.HOUR_S)
    hi = None if window.until is None else math.floor(window.until / rollup.HOUR_S)
    return lo, hi


def whole_days(lo: int | None, hi: int | None) -> tuple[int | None, int | None]:
    """The whole UTC days (``[d0, d1)`` as hour numbers, by :data:`rollup.DAY_H`) inside the hours
    ``[lo, hi)``; None: unbounded. Empty when ``d0 >= d1``."""
    d = rollup.DAY_H
    return (None if lo is None else -(-lo // d) * d), (None if hi is None else hi // d * d)


def in_hours(column: str, lo: int | None, hi: int | None) -> str:
    """SQL: ``column`` (an hour number) within ``[lo, hi)``."""
    return " AND ".join([f"{column} >= {lo}" if lo is not None else "true",
                         f"{column} < {hi}" if hi is not None else "true"])


def hour_of(table: str) -> str:
    """The hour column of a stored rollup table (``buckets`` has finer buckets)."""
    if table in ("buckets", "clients"):
        return f"floor(bucket * {rollup.BUCKET!r} / {rollup.HOUR_S!r})"
    if table == "errmin":
        return f"floor(minute * 60 / {rollup.HOUR_S!r})"
    return "hour"
