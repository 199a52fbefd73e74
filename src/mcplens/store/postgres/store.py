"""The Store over PostgreSQL: the local store's reader over a mirror of the database's batches.

``mcplens db rollup`` keeps the rollups in PostgreSQL as the local store's own Parquet batches and
rollup files (:mod:`.mirror`). This store mirrors them into a private cache directory (each batch
downloaded once; the directory is reused by every later command and by the dashboard) and writes
the events not rolled up yet as that directory's one segment. Then the local store's code answers
every read over it: ``report``, ``sessions``, ``health``, the dashboard's pages and the insights
run the same SQL over the same rollups and edges as over a local data directory, so the two stores
give the same rows by construction, and a week over ten million events reads a few thousand rollup
rows. Without any ``db rollup`` run, everything is the tail: correct, but each read copies every
event out of PostgreSQL.

The mirror is refreshed at most every ``REFRESH`` seconds (a listing of the batches and the tail's
events, a BRIN-pruned scan of the open hour); the reader role needs SELECT only.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Final

from mcplens.store.base import CompactResult
from mcplens.store.local.files import Snapshot
from mcplens.store.local.reader import LocalStore
from mcplens.store.postgres import connect, mask_url

#: seconds a mirror refresh stays good for (the dashboard's several calls per page share one)
REFRESH: Final = 1.0
#: the tail's last ``RECENT`` seconds are read again on every refresh; the older part of it only when
#: its count changed, checked every ``OLDER_CHECK`` seconds (an event that arrives later than that for
#: the older part shows after at most that long; once its hour is rolled up, the batch has it)
RECENT: Final = 120.0
OLDER_CHECK: Final = 60.0


class PostgresStore(LocalStore):
    """Reads ``mcplens.batches`` and the events not rolled up yet; needs SELECT only (the reader role).

    ``cache``: the directory that holds the mirrors (default :func:`.mirror.cache_root`)."""

    def __init__(self, url: str, cache: Path | None = None) -> None:
        super().__init__(Path("/nonexistent/mcplens-postgres-mirror"))  # set on the first refresh
        self.url = url
        self._cache = cache
        self._conn: Any = None
        self._home: Path | None = None  # the mirror: batches shared by the processes of this user
        self._view = Path()  # this process's own directory in it (the batches linked, its tail)
        self._fresh_at = -float("inf")
        self._lock = threading.Lock()
        #: what the last refresh found: rolled_until and the tail's events
        self.rolled_until: float | None = None
        self.tail_events = 0
        self._cut: float | None = None  # where the tail's recent part begins
        self._older_n = 0
        self._older_at = -float("inf")

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
        """Plain SQL on the database (what the mirror does not hold: the writers' own counters)."""
        from psycopg.rows import dict_row

        with self.conn().cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def refresh(self, force: bool = False) -> None:
        """Bring the mirror up to date with the database (at most every ``REFRESH`` seconds)."""
        from mcplens.store.local.layout import events_dir
        from mcplens.store.postgres import mirror

        with self._lock:
            if not force and time.monotonic() - self._fresh_at < REFRESH:
                return
            conn = self.conn()
            if self._home is None:
                self._home = mirror.mirror_home(conn, self._cache)
                self._view = mirror.reader_home(self._home)
                self.home, self.root = self._view, events_dir(self._view)
                import atexit
                import shutil

                atexit.register(shutil.rmtree, self._view, True)
            rolled = mirror.sync(conn, self._home)
            now = time.monotonic()
            if rolled != self.rolled_until or self._cut is None or now - self._older_at >= OLDER_CHECK:
                cut = time.time() - RECENT if rolled is None else max(rolled, time.time() - RECENT)
                n = mirror.count(conn, rolled, cut)
                # the same start and count over a range that only grew: the file holds these events already
                if (rolled, n) != (self.rolled_until, self._older_n) or self._cut is None:
                    mirror.write_segment(conn, self._view, mirror.TAIL_OLDER, rolled, cut)
                self.rolled_until, self._older_n, self._older_at, self._cut = rolled, n, now, cut
            recent = mirror.write_segment(conn, self._view, mirror.TAIL_RECENT, self._cut, None)
            self.tail_events = self._older_n + recent
            self._fresh_at = time.monotonic()

    def snapshot(self) -> Snapshot:
        self.refresh()
        return super().snapshot()

    def count(self) -> int:
        return int(self.rows("SELECT count(*) AS n FROM mcplens.events")[0]["n"])

    def compact(self) -> CompactResult:
        """Nothing to fold here: ``mcplens db rollup`` (the admin role) makes the batches."""
        return CompactResult((), 0, 0, 0)
