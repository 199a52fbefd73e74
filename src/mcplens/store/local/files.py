"""The local store's files and the DuckDB SQL that reads them, shared by the reader and compaction.

Its own module so :mod:`.reader` (which runs a compaction on request) and :mod:`.compact` (which
reads through the same file lists and views) both build on it without importing each other.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mcplens import event as ev
from mcplens.store import engine
from mcplens.store.base import FIELDS

MANIFEST_SUFFIX: Final = ".manifest.json"


def cache_parquet_footers(con: Any) -> None:
    """Keep parsed Parquet footers in the database for every later query on it: a week of batches and
    their rollup files is hundreds of footers, parsed again by each query otherwise. DuckDB 1.x calls
    the setting ``enable_object_cache``; 2.x ``parquet_metadata_cache`` and accepts the old name as a
    no-op, so the new name is tried first."""
    try:  # GLOBAL: the setting is per connection, and a cursor is a connection of its own
        con.execute("SET GLOBAL parquet_metadata_cache = true")
    except Exception:  # noqa: BLE001 - an older DuckDB: the old name
        con.execute("SET GLOBAL enable_object_cache = true")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


def share_cores(con: Any) -> int:
    """Half this machine's cores (at least one) per query of a reader, not DuckDB's default of all;
    returns how many queries may run at once (:meth:`Reader.fork`) to use them all.

    ``insights`` is ~80 short statements, most too small for DuckDB to spread over threads: on 2
    cores one thread per statement answered a 10M-event store's last hour in 0.95-0.97 s against
    1.0-1.3 s with two, the last week in about the same wall time with 20-40 % less CPU. Two
    independent statements at once, one thread each, do use both cores (bench/RESULTS.md)."""
    n = cores()
    con.execute(f"SET threads = {max(1, n // 2)}")
    return 1 if n < 2 else 2


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns_struct() -> str:
    return "{" + ", ".join(f"{_lit(k)}: {_lit(t)}" for k, t in ev.COLUMNS.items()) + "}"


_GLOB_CHARS: Final = {"*": "[*]", "?": "[?]", "[": "[[]"}


def _path_lit(path: str | Path) -> str:
    """A file path as a DuckDB literal for ``read_*``, which expands glob characters: escaped, so a
    file named ``a*.jsonl`` is that one file and not a pattern over its neighbours."""
    return _lit("".join(_GLOB_CHARS.get(c, c) for c in str(path)))


#: a segment a reader wrote itself as Parquet (event keys as column names, every column of
#: ``event.COLUMNS``): the PostgreSQL mirror's tail, which costs a JSON parse of tens of MB per read as
#: JSON lines. A writer's segments are always JSON lines.
PARQUET_SEGMENT: Final = ".parquet"


def read_segments_sql(files: list[Path]) -> str:
    """The segments' events, event keys as column names, typed as ``event.COLUMNS``. JSON lines are
    read forgiving: a torn or garbage line becomes an all-NULL row, dropped by ``event.id``."""
    lines = [f for f in files if not str(f).endswith(PARQUET_SEGMENT)]
    tables = [f for f in files if str(f).endswith(PARQUET_SEGMENT)]
    parts = []
    if lines or not tables:
        parts.append(f"SELECT * FROM read_json([{', '.join(_path_lit(f) for f in lines)}], format='newline_delimited', "
                     f"columns={_columns_struct()}, ignore_errors=true) WHERE {_ident(ev.EVENT_ID)} IS NOT NULL")
    if tables:
        casts = ", ".join(f"CAST({_ident(k)} AS {t}) AS {_ident(k)}" for k, t in ev.COLUMNS.items())
        listed = ", ".join(_path_lit(f) for f in tables)
        parts.append(f"SELECT {casts} FROM read_parquet([{listed}], union_by_name=true) "
                     f"WHERE {_ident(ev.EVENT_ID)} IS NOT NULL")
    return parts[0] if len(parts) == 1 else " UNION ALL BY NAME ".join(f"({q})" for q in parts)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def segment_pid(name: str) -> int | None:
    """``<stamp>-<pid>-<instance>-<seq>.jsonl``; the stamp has no dash, the instance might."""
    parts = name.split("-")
    if len(parts) < 4 or not parts[1].isdigit():
        return None
    return int(parts[1])


#: a Parquet file's columns: ``(name, DuckDB type)`` pairs in the file's order
Schema = tuple[tuple[str, str], ...]


def parquet_columns(con: Any, path: Path) -> list[list[str]]:
    """A Parquet file's columns as a manifest records them: ``[[name, type], ...]`` (see :data:`Schema`)."""
    return [[r[0], r[1]] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_path_lit(path)})").fetchall()]


def schema_of(recorded: Any) -> Schema | None:
    """A manifest's record of its batch's columns; None when absent or not of that shape."""
    if not isinstance(recorded, list) or not recorded:
        return None
    if not all(isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in recorded):
        return None
    return tuple((c[0], c[1]) for c in recorded)


@dataclass(frozen=True)
class Manifest:
    batch: str
    parquet: Path
    segments: dict[str, int]  # source segment name -> its size in bytes when compacted
    rollups: dict[str, Any] | None = None  # store/rollup.py's settings and files, when rolled up
    schema: Schema | None = None  # the batch's columns, when its manifest records them (parquet_columns)

    def rollup_files(self) -> list[Path]:
        return [self.parquet.parent / n for n in ((self.rollups or {}).get("files") or {}).values()]


def _listdir(d: Path) -> list[Path]:
    try:
        return [d / n for n in os.listdir(d)]
    except FileNotFoundError:
        return []


def _segment_files(d: Path, suffixes: tuple[str, ...] = (".jsonl", PARQUET_SEGMENT)) -> list[Path]:
    """What a reader reads as segments: the writers' JSON lines and a reader's own Parquet ones."""
    try:
        return [d / n for n in os.listdir(d) if n.endswith(suffixes) and not n.startswith(".")]
    except FileNotFoundError:
        return []


def _jsonl(d: Path) -> list[Path]:
    """The writers' segments only (what compaction folds)."""
    return _segment_files(d, (".jsonl",))


def span_overlaps(span: list[float | None] | None, lo: float | None, hi: float | None) -> bool:
    """Whether a batch whose events span ``span`` ([first, last] time; None: unknown) may hold events
    in ``[lo, hi)`` (None: unbounded). Unknown: maybe; an empty batch ([None, None]): no."""
    if not span or span[0] is None or span[1] is None:
        return span is None or len(span) != 2
    return (lo is None or span[1] >= lo) and (hi is None or span[0] < hi)


def _rows(cur: Any) -> list[dict[str, Any]]:
    """A DuckDB result as dicts by column name; none for a statement that returns no result."""
    if cur.description is None:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


#: a statement making a scratch table or view of the connection's own (``CREATE OR REPLACE TEMP ...``)
_SCRATCH = re.compile(r"^(\s*CREATE OR REPLACE )TEMP (TABLE|VIEW) ")


class Reader:
    """``run(sql, params) -> rows`` on one connection, plus what its snapshot holds (if any).

    ``streams`` > 1: the connection is this reader's alone (made for one batch of queries, closed
    after), and that many independent queries may run on it at once, on cursors from :meth:`fork`.
    Then the scratch tables and views its queries make as ``TEMP`` are made in the (in-memory)
    database instead: a connection's temp objects are invisible to its cursors. ``schema``: the
    reader's own schema there (:class:`SharedDatabase`), where they go, set on every fork too, so
    no other reader's names can meet them.
    """

    def __init__(self, con: Any, snap: Snapshot | None = None, *, streams: int = 1, schema: str | None = None
                 ) -> None:
        self.con = con
        self.rollups = None if snap is None else snap.rollups
        self.has_segments = snap is not None and bool(snap.segments)
        self.schemas: Mapping[Path, Schema] = {} if snap is None else snap.schemas
        self.streams = streams
        self.schema = schema
        if schema is not None:
            con.execute(f"SET schema = '{schema}'")

    def __call__(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        if self.streams > 1:
            sql = _SCRATCH.sub(r"\1\2 ", sql, count=1)
        try:
            return _rows(self.con.execute(sql, params or []))
        except RuntimeError as e:
            if engine.interrupted(e):  # Ctrl-C: as the KeyboardInterrupt it was, so every caller stops
                raise KeyboardInterrupt from e
            raise

    def fork(self) -> Reader | None:
        """Another reader on a cursor of the same database: same files, same scratch tables, its
        own statements beside this one's; None when the connection is not this reader's alone."""
        if self.streams < 2:
            return None
        other = Reader(self.con.cursor(), streams=self.streams, schema=self.schema)
        other.rollups, other.has_segments, other.schemas = self.rollups, self.has_segments, self.schemas
        return other

    def close(self) -> None:
        self.con.close()

    def interrupt(self) -> None:
        self.con.interrupt()


class SharedDatabase:
    """The in-memory DuckDB database a process's readers share (:meth:`LocalStore.reader`), for its
    cache of Parquet footers: a reader of its own parsed again the footers of every batch and rollup
    file each insights run reads (0.1-0.2 s of a week's run over 10M events), which ``watch`` and the
    dashboard repeat every refresh. Each reader gets a cursor and a schema of its own, dropped when
    it closes. The cache keeps the footers of files compaction has since replaced, so after
    :data:`READERS` readers, or a reader that failed (a fatal error invalidates a database), the next
    reader starts a fresh database; the old one goes when its last cursor closes.
    """

    #: readers per database before a fresh one
    READERS: Final = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: Any = None
        self._readers = 0
        atexit.register(self._close)

    def open(self) -> tuple[Any, str, Any]:
        """A cursor, the name of a schema made for it, and the database (for :meth:`close`)."""
        with self._lock:
            if self._db is None or self._readers >= self.READERS:
                self._db = engine.duckdb().connect()
                cache_parquet_footers(self._db)
                self._readers = 0
            self._readers += 1
            db = self._db
        con = db.cursor()
        schema = f"reader_{os.urandom(8).hex()}"
        try:
            con.execute(f"CREATE SCHEMA {schema}")
        except BaseException:
            con.close()
            self.forget(db)
            raise
        return con, schema, db

    def close(self, con: Any, schema: str, db: Any, *, failed: bool) -> None:
        """Drop the reader's schema and cursor; after a failure the database is not handed out again."""
        try:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        except Exception:  # noqa: BLE001 - a database that cannot drop a schema is not used again
            failed = True
        finally:
            con.close()
        if failed:
            self.forget(db)

    def forget(self, db: Any) -> None:
        with self._lock:
            if self._db is db:
                self._db = None

    def abandon(self) -> None:
        """Forget the database without closing it: the process ends now (cli ``run``), and closing
        would only free what the exit frees. It stays referenced: the last reference gone, DuckDB
        closes it."""
        with self._lock:
            if self._db is not None:
                _ABANDONED.append(self._db)
            self._db = None

    def _close(self) -> None:  # at exit, before the interpreter tears DuckDB down
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
                self._db = None


#: databases and connections left open for the process's end (:meth:`SharedDatabase.abandon`)
_ABANDONED: list[Any] = []

#: the readers' database of this process
SHARED: Final = SharedDatabase()


def abandon_databases() -> None:
    """:meth:`SharedDatabase.abandon` for the process's readers' database."""
    SHARED.abandon()


def events_view_sql(name: str, parquet: Sequence[Path], segments: Sequence[Path],
                    schemas: Mapping[Path, Schema] | None = None) -> str:
    """A view of events with friendly column names over these files (all columns, NULL when absent).

    ``schemas``: the batches' columns their manifests record. Batches of one schema are read as one
    ``read_parquet`` without ``union_by_name``, which binds with the first file's footer and opens
    each other file only when a query scans it (and then only its row groups the filters keep); with
    ``union_by_name`` DuckDB parses every file's footer to make the view, and again, if not cached, for
    each query, however few of the files it reads (~0.1 s over a week of 1M-event batches). Batches
    with no record (written by an older mcplens) are read by name, as before.

    An empty row of every column, typed, joins the files by name only when some file may lack a
    column or type one otherwise (no record, or one that differs from ``event.COLUMNS``): every query
    of the view binds it again, and it costs a third of that (~2 ms per query over a week of batches)."""
    groups: dict[Schema | None, list[Path]] = {}
    for p in parquet:
        groups.setdefault((schemas or {}).get(p), []).append(p)
    typed = all(s is not None and dict(s) == ev.COLUMNS for s in groups)  # the segments' reads are typed
    parts = [] if typed and (groups or segments) else [
        "SELECT " + ", ".join(f"NULL::{t} AS {_ident(k)}" for k, t in ev.COLUMNS.items()) + " WHERE false"]
    for schema, group in groups.items():
        files = ", ".join(_path_lit(p) for p in group)
        by_name = ", union_by_name=true" if schema is None else ""
        parts.append(f"SELECT * FROM read_parquet([{files}]{by_name})")
    if segments:
        parts.append(read_segments_sql(segments))
    union = "\nUNION ALL BY NAME\n".join(f"({p})" for p in parts)
    cols = ", ".join(f"{_ident(key)} AS {_ident(fname)}" for fname, (key, _) in FIELDS.items())
    return (
        f"CREATE OR REPLACE TEMP VIEW {_ident(name)} AS SELECT {cols} FROM ({union}) "
        f"WHERE {_ident(ev.EVENT_ID)} IS NOT NULL"
    )


def _covered(manifests: list[Manifest]) -> Callable[[Path], bool]:
    """Whether a segment's events are already in committed Parquet: a leftover of a compaction."""
    sizes: dict[str, int] = {}
    for m in manifests:
        sizes.update(m.segments)

    def covered(p: Path) -> bool:
        if p.name not in sizes:
            return False
        try:
            return p.stat().st_size == sizes[p.name]
        except FileNotFoundError:
            return True  # gone: nothing to read or delete either way

    return covered


@dataclass(frozen=True)
class Snapshot:
    """The files one query reads: committed Parquet plus segments no manifest covers."""

    parquet: list[Path]
    segments: list[Path]
    #: each batch's rollup settings with absolute file paths; None unless every batch has them
    rollups: list[dict[str, Any]] | None = None
    #: the batches' columns, where their manifests record them (:func:`events_view_sql`)
    schemas: Mapping[Path, Schema] = field(default_factory=dict)

    def vanished(self) -> bool:
        return any(not p.exists() for p in (*self.parquet, *self.segments))

    def written_since(self, ts: float) -> Snapshot:
        def recent(p: Path) -> bool:
            try:
                return p.stat().st_mtime >= ts
            except FileNotFoundError:
                return True  # let the read fail and list again: it may have moved to closed/

        return Snapshot(self.parquet, [p for p in self.segments if recent(p)], self.rollups, self.schemas)
