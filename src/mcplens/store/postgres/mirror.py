"""PostgreSQL-kept rollups: the local store's own batches and rollup files, made from closed hours and
stored in the database, so every read runs the local store's code over them ("one analysis, two stores").

**Why this shape.** The reads need rollups that (a) the insights can merge per hour with each
session's history (store/rollup.py: chains, sessions, loops, exfil, instances, spans, clients,
errmin, perf, marks) and (b) the views can merge per 5-minute bucket (store/windows.py: wsessions,
whealth, winst, werrors, flows, and ``series``). Translating those DuckDB queries into PostgreSQL
would be a second, hand-kept copy of every query (list columns, ASOF joins, ``hash()`` keys,
``mcplens.histogram``'s buckets) that drifts as the contracts change (they do, every session).
Instead ``mcplens db rollup`` (a periodic job, run as the admin role) runs the *same*
``rollup.roll_up_batch`` the local compaction runs:

1. it mirrors the batches already stored (below) into a local directory laid out as a local store;
2. it reads each closed stretch of events (``rolled_until`` up to the last whole hour that ended
   ``GRACE`` seconds ago; whole hours, at most one UTC day and ``BATCH_EVENTS`` per batch) from
   ``events`` into DuckDB and writes it as a Parquet batch, with its rollups computed against the
   earlier batches as history, exactly as compaction does (store/local/compact.py);
3. it stores the batch's Parquet file and rollup files (``bytea``) with its manifest in
   ``mcplens.batches`` / ``mcplens.batch_files`` and moves ``rolled_until``, in one transaction.

A reader (:class:`~mcplens.store.postgres.store.PostgresStore`) mirrors the same rows into a private
cache directory (downloaded once per batch) and writes the events not rolled up yet (``time >=
rolled_until``: the open hour and the grace) as one segment: the tail. Then the local store's reader
answers every command over that directory: stored rollups for the whole hours and buckets, the raw
edges and the tail computed by the same SQL. A week over ten million events reads a few thousand
rollup rows, as locally.

The writers are untouched by this (they only COPY rows): ingest pays nothing for the rollups.

**Late events.** An event whose time is before ``rolled_until`` when it arrives (a spool replayed
after an outage longer than ``GRACE``) is not in any batch: each run counts the events of the
recently rolled stretches (``RECHECK_DAYS``) and rolls the ones no batch holds as a further batch
of that stretch, as compaction folds a straggling segment (the caveat of store/rollup.py applies:
it is counted, the chains around it can differ from a scan).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mcplens import event as ev
from mcplens.store import engine
from mcplens.store.postgres.schema import DAY, HOUR, SCHEMA, columns

#: seconds after an hour ends before ``db rollup`` takes it (writers' batches and short spools land first)
GRACE: Final = 300.0
#: events per batch at most (whole hours: an hour holding more is one batch of its own)
BATCH_EVENTS: Final = 2_000_000
#: days back that each ``db rollup`` run looks for late events in stretches already rolled
RECHECK_DAYS: Final = 2
#: the reader's tail segments in the mirror (closed segment names: ``<stamp>-<pid>-<instance>-<seq>``):
#: the older part of the tail (rewritten when it changed) and the last minutes (rewritten every refresh);
#: Parquet, which the local reader reads as segments without parsing JSON (store/local/files.py)
TAIL_OLDER: Final = "00000000T000000-0-postgres.tail-0.parquet"
TAIL_RECENT: Final = "00000000T000000-0-postgres.tail-1.parquet"
CACHE_ENV: Final = "MCPLENS_PG_CACHE"

_T = f"{SCHEMA}.events"


def cache_root() -> Path:
    """Where readers keep their mirrors: ``$MCPLENS_PG_CACHE``, else the user's cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcplens" / "postgres"


def store_id(conn: Any) -> str:
    row = conn.execute(f"SELECT value FROM {SCHEMA}.settings WHERE key = 'store_id'").fetchone()
    if row is None:
        raise RuntimeError("the PostgreSQL store is not upgraded to schema 3: run `mcplens db upgrade`")
    return str(row[0])


def mirror_home(conn: Any, root: Path | None = None) -> Path:
    """The mirror directory of the database ``conn`` is connected to (server, database and the
    store's own random id: a database dropped and made again under the same name gets a new one)."""
    info = conn.info
    key = f"{info.host}:{info.port}/{info.dbname}/{store_id(conn)}"
    home = (root or cache_root()) / hashlib.sha256(key.encode()).hexdigest()[:20]
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)  # events: owner only, like a local store
    return home


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    fd = os.open(home / "mirror.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _pq(home: Path) -> Path:
    from mcplens.store.local.layout import PARQUET, events_dir

    d = events_dir(home) / PARQUET
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    from mcplens.store.rollup import ROLLUP_DIR

    (d / ROLLUP_DIR).mkdir(exist_ok=True, mode=0o700)
    return d


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
        fh.write(data)
    os.replace(tmp, path)


def _files_of(manifest: dict[str, Any]) -> list[str]:
    return [manifest["parquet"], *((manifest.get("rollups") or {}).get("files") or {}).values()]


def sync(conn: Any, home: Path) -> float | None:
    """Make ``home``'s batches those stored in the database (download new ones, drop gone ones);
    returns ``rolled_until`` (None: nothing rolled up yet)."""
    from mcplens.store.local.files import MANIFEST_SUFFIX

    pq = _pq(home)
    with _locked(home):
        with conn.transaction():  # one snapshot: the batches and rolled_until agree
            rows = conn.execute(f"SELECT name, manifest FROM {SCHEMA}.batches ORDER BY made, name").fetchall()
            row = conn.execute(f"SELECT value FROM {SCHEMA}.settings WHERE key = 'rolled_until'").fetchone()
            rolled = None if row is None else float(row[0])
            want = {name: manifest for name, manifest in rows}
            have = {n.removesuffix(MANIFEST_SUFFIX) for n in os.listdir(pq) if n.endswith(MANIFEST_SUFFIX)}
            for name, manifest in want.items():
                path = pq / f"{name}{MANIFEST_SUFFIX}"
                if name in have:
                    with contextlib.suppress(OSError, ValueError):
                        if json.loads(path.read_text("utf-8")) == manifest:
                            continue
                missing = [f for f in _files_of(manifest) if not (pq / f).exists()]
                if missing:
                    with conn.cursor() as cur:
                        cur.execute(f"SELECT name, data FROM {SCHEMA}.batch_files WHERE batch = %s AND name = ANY(%s)",
                                    (name, missing))
                        for fname, data in cur:
                            _write_atomic(pq / fname, bytes(data))
                _write_atomic(path, json.dumps(manifest, indent=1).encode())  # the commit point, last
        keep = {f for m in want.values() for f in _files_of(m)}
        for name in have - set(want):  # dropped by retention: the manifest first, then its files
            (pq / f"{name}{MANIFEST_SUFFIX}").unlink(missing_ok=True)
        from mcplens.store.rollup import ROLLUP_DIR

        for p in [*pq.glob("*.parquet"), *(pq / ROLLUP_DIR).glob("*.parquet")]:
            rel = str(p.relative_to(pq))
            if rel not in keep:
                p.unlink(missing_ok=True)
    return rolled


def reader_home(home: Path) -> Path:
    """A directory of this process's own under the mirror ``home``, laid out as a local store: the
    shared batches (a link to ``home``'s) and this reader's own tail segments, so two processes that
    share a mirror (the dashboard and a CLI command) never read each other's tail. Directories of
    processes that are gone are removed."""
    import shutil

    from mcplens.store.local.files import pid_alive
    from mcplens.store.local.layout import PARQUET, events_dir

    _pq(home)
    readers = home / "readers"
    readers.mkdir(exist_ok=True, mode=0o700)
    for d in readers.iterdir():
        pid = d.name.split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
    mine = readers / f"{os.getpid()}-{os.urandom(4).hex()}"
    root = events_dir(mine)
    root.mkdir(parents=True, mode=0o700)
    (root / PARQUET).symlink_to(events_dir(home) / PARQUET, target_is_directory=True)
    return mine


# ---- events out of PostgreSQL into DuckDB --------------------------------------------------------

@contextlib.contextmanager
def exported(conn: Any, where: str, params: list[Any] | None) -> Iterator[str]:
    """The events matching ``where`` as a DuckDB ``SELECT`` (friendly column names, the local
    store's types), valid inside the block: one ``COPY ... TO STDOUT`` in CSV (floats print
    round-trip exact, JSON and arrays as JSON text) into a private temp file that DuckDB's CSV
    reader reads, in one pass, wherever the SELECT goes (a Parquet batch, a segment, a table)."""
    from mcplens.store.base import FIELDS

    cols = columns()
    out_cols = ", ".join(f'"{n}"::text' if t == "jsonb" else f'array_to_json("{n}")::text' if t == "text[]"
                         else f'"{n}"' for n, _, t in cols)
    duck_types = {n: t for n, (_, t) in FIELDS.items()}
    read_types = ", ".join(f"'{n}': '{'VARCHAR' if duck_types[n] in ('JSON', 'VARCHAR[]') else duck_types[n]}'"
                           for n, _, _ in cols)
    select = ", ".join(f'CAST("{n}" AS JSON) AS "{n}"' if duck_types[n] == "JSON"
                       else f'CAST(from_json("{n}", \'["VARCHAR"]\') AS VARCHAR[]) AS "{n}"'
                       if duck_types[n] == "VARCHAR[]" else f'"{n}"' for n, _, _ in cols)
    fd, name = tempfile.mkstemp(prefix="mcplens-pg-", suffix=".csv")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT {out_cols} FROM {_T} WHERE {where}) TO STDOUT (FORMAT csv)", params) as cp:
                for block in cp:
                    out.write(block)
        lit = "'" + str(path).replace("'", "''") + "'"
        yield (f"SELECT {select} FROM read_csv({lit}, header=false, columns={{{read_types}}}, quote='\"', "
               "escape='\"', allow_quoted_nulls=false, auto_detect=false)")
    finally:
        path.unlink(missing_ok=True)


def load_events(conn: Any, con: Any, table: str, where: str, params: list[Any] | None) -> int:
    """The events matching ``where`` copied into DuckDB table ``table`` (see :func:`exported`)."""
    with exported(conn, where, params) as select:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}")
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _as_event_keys(table: str) -> str:
    """``table``'s rows with the event keys as column names, in ``event.COLUMNS`` order (a batch's
    and a segment's own shape)."""
    from mcplens.store.base import FIELDS

    return ", ".join(f'"{f}" AS "{k}"' for f, (k, _) in FIELDS.items())


def write_segment(conn: Any, home: Path, name: str, lo: float | None, hi: float | None) -> int:
    """The events with ``lo <= time < hi`` (None: unbounded) as the mirror's segment ``name``
    (removed when there are none); returns how many."""
    from mcplens.store.local.files import _lit
    from mcplens.store.local.layout import CLOSED, events_dir

    closed = events_dir(home) / CLOSED
    closed.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = closed / name
    where, params = _range(lo, hi)
    con = engine.duckdb().connect()
    tmp = closed / f".{name}.{os.getpid()}.tmp"
    try:
        with exported(conn, where, params) as select:
            n = int(con.execute(f"COPY (SELECT {_as_event_keys('e')} FROM ({select}) e ORDER BY time, event_id) "
                                f"TO {_lit(tmp)} (FORMAT parquet)").fetchone()[0])
        if not n:
            target.unlink(missing_ok=True)
            return 0
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        return n
    finally:
        con.close()
        tmp.unlink(missing_ok=True)


def count(conn: Any, lo: float | None, hi: float | None) -> int:
    where, params = _range(lo, hi)
    return int(conn.execute(f"SELECT count(*) FROM {_T} WHERE {where}", params).fetchone()[0])


def _range(lo: float | None, hi: float | None) -> tuple[str, list[Any]]:
    clauses, params = ["true"], []
    if lo is not None:
        clauses.append("time >= %s")
        params.append(lo)
    if hi is not None:
        clauses.append("time < %s")
        params.append(hi)
    return " AND ".join(clauses), params


# ---- the rollup job ------------------------------------------------------------------------------

def _stretches(conn: Any, start: float, end: float) -> list[tuple[float, float]]:
    """``[start, end)`` as batches of whole hours: cut at UTC midnights and before ``BATCH_EVENTS``
    events (an hour is never split), so one step's memory stays bounded however busy the fleet."""
    if start >= end:
        return []
    counts = dict(conn.execute(f"SELECT floor(time / {HOUR})::bigint, count(*) FROM {_T} WHERE time >= %s "
                               "AND time < %s GROUP BY 1", (start, end)).fetchall())
    out: list[tuple[float, float]] = []
    a, n = start, 0
    h = start
    while h < end:
        nxt = min(end, (math.floor(h / HOUR) + 1) * HOUR)
        k = counts.get(math.floor(h / HOUR), 0)
        if h > a and (n + k > BATCH_EVENTS or math.floor(h / DAY) != math.floor(a / DAY)):
            out.append((a, h))
            a, n = h, 0
        n += k
        h = nxt
    out.append((a, end))
    return out


def roll_up(conn: Any, home: Path, *, now: float | None = None, grace: float = GRACE,
            budget: float | None = None) -> dict[str, Any]:
    """``mcplens db rollup``: roll the closed hours not rolled yet (and late events of the last
    ``RECHECK_DAYS``) into batches stored in the database; ``conn`` is the admin role's. Returns
    what was done. ``budget``: seconds after which no new stretch is started."""
    from mcplens.store.local.compact import _RolledUp
    from mcplens.store.local.reader import LocalStore

    started = time.monotonic()
    now = time.time() if now is None else now
    closed = math.floor((now - grace) / HOUR) * HOUR
    made: list[dict[str, Any]] = []
    with conn.transaction():  # one job at a time (a second waits, then finds the work done)
        conn.execute("SELECT pg_advisory_lock(%s)", (_JOB_LOCK,))
    try:
        rolled = sync(conn, home)
        if rolled is None:
            row = conn.execute(f"SELECT min(time) FROM {_T}").fetchone()
            if row[0] is None:
                return {"batches": [], "events": 0, "late": 0, "rolled_until": None, "rerolled": 0, "done": True}
            rolled = math.floor(float(row[0]) / HOUR) * HOUR
        rerolled = _reroll(conn, home)
        todo = _late(conn, rolled) + [(a, b, False) for a, b in _stretches(conn, rolled, closed)]
        until = rolled
        for a, b, late in todo:
            if budget is not None and time.monotonic() - started > budget:
                break
            manifests = sorted(LocalStore(home).manifests(), key=_created)
            history = _RolledUp()  # every earlier batch is the new one's history, as in compaction
            history.parquet = [m.parquet for m in manifests]
            history.tools = sorted({t for m in manifests for t in (m.rollups or {}).get("tools", ())})
            with _locked(home):  # a reader's sync on this mirror would take its files for leftovers
                made.append(_roll_stretch(conn, home, history, a, b, late, None if late else b))
            if not late:
                until = b
        return {"batches": [m["name"] for m in made if m["events"]], "events": sum(m["events"] for m in made),
                "late": sum(m["events"] for m in made if m["late"]), "rolled_until": until,
                "rerolled": rerolled, "done": len(made) == len(todo)}
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_JOB_LOCK,))


_JOB_LOCK: Final = 7_160_101_101


def _reroll(conn: Any, home: Path) -> int:
    """Batches rolled up by another version of mcplens (store/rollup.py's ``VERSION``) get their
    rollups made again, all of them in order (each is the next one's history), as compaction does;
    until then the readers scan those batches' events (correct, slower). Returns how many."""
    from mcplens.store import rollup
    from mcplens.store.local.compact import _fsync, _RolledUp
    from mcplens.store.local.files import MANIFEST_SUFFIX
    from mcplens.store.local.reader import LocalStore

    manifests = sorted(LocalStore(home).manifests(), key=_created)
    if all(rollup.complete(m.rollups) for m in manifests):
        return 0
    pq = _pq(home)
    history = _RolledUp()
    con = engine.duckdb().connect()
    try:
        for m in manifests:
            path = pq / f"{m.batch}{MANIFEST_SUFFIX}"
            with _locked(home):
                old = json.loads(path.read_text("utf-8"))
                new = {**old, **history.entries(con, m.parquet)}
                files = [pq / f for f in new["rollups"]["files"].values()]
                gone = sorted(set(_files_of(old)) - set(_files_of(new)))
                with conn.transaction():
                    conn.execute(f"UPDATE {SCHEMA}.batches SET manifest = %s::jsonb WHERE name = %s",
                                 (json.dumps(new), m.batch))
                    with conn.cursor() as cur, cur.copy(f"COPY {SCHEMA}.batch_files (batch, name, data) "
                                                        "FROM STDIN") as cp:
                        for p in files:
                            cp.write_row((m.batch, str(p.relative_to(pq)), p.read_bytes()))
                    conn.execute(f"DELETE FROM {SCHEMA}.batch_files WHERE batch = %s AND name = ANY(%s)",
                                 (m.batch, gone))
                for p in files:
                    _fsync(p)
                _write_atomic(path, json.dumps(new, indent=1).encode())
                for f in gone:
                    (pq / f).unlink(missing_ok=True)
    finally:
        con.close()
    return len(manifests)


def _created(m: Any) -> tuple[float, str]:
    try:
        return float(json.loads(m.parquet.with_name(m.batch + ".manifest.json").read_text("utf-8"))["created"]), m.batch
    except (OSError, ValueError, KeyError):
        return 0.0, m.batch


def _late(conn: Any, rolled: float) -> list[tuple[float, float, bool]]:
    """Stretches of the last ``RECHECK_DAYS`` before ``rolled`` holding more events than their batches."""
    since = rolled - RECHECK_DAYS * DAY
    rows = conn.execute(f"SELECT lo, hi, sum(events)::bigint FROM {SCHEMA}.batches WHERE hi > %s GROUP BY 1, 2",
                        (since,)).fetchall()
    out = []
    for lo, hi, n in rows:
        have = conn.execute(f"SELECT count(*) FROM {_T} WHERE time >= %s AND time < %s", (lo, hi)).fetchone()[0]
        if have > n:
            out.append((float(lo), float(hi), True))
    return sorted(out)


def _roll_stretch(conn: Any, home: Path, history: Any, a: float, b: float, late: bool,
                  advance: float | None) -> dict[str, Any]:
    """One batch: the events of ``[a, b)`` (``late``: only those no batch of that stretch holds)."""
    from mcplens.store.local.compact import ROW_GROUP, _fsync
    from mcplens.store.local.files import MANIFEST_SUFFIX, _lit, _path_lit

    pq = _pq(home)
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(4).hex()}"
    out = pq / f"{name}.parquet"
    con = engine.duckdb().connect()
    written: list[Path] = []
    try:
        new = "true"
        if late:  # only what no batch of this stretch holds
            batches = [r[0] for r in conn.execute(f"SELECT manifest ->> 'parquet' FROM {SCHEMA}.batches "
                                                  "WHERE lo = %s AND hi = %s", (a, b)).fetchall()]
            files = ", ".join(_path_lit(pq / f) for f in batches)
            new = f"event_id NOT IN (SELECT \"{ev.EVENT_ID}\" FROM read_parquet([{files}]))"
        with exported(conn, "time >= %s AND time < %s", [a, b]) as select:  # one pass: CSV to Parquet
            written.append(out)
            n = int(con.execute(f"COPY (SELECT {_as_event_keys('e')} FROM ({select}) e WHERE {new} ORDER BY time) "
                                f"TO {_lit(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP})"
                                ).fetchone()[0])
        if n:
            os.chmod(out, 0o600)
            entries = history.entries(con, out)
            written += [pq / f for f in entries["rollups"]["files"].values()]
            manifest = {"version": 1, "parquet": out.name, "segments": {}, "events": n, "created": time.time(),
                        **entries}
        with conn.transaction():
            if n:
                conn.execute(f"INSERT INTO {SCHEMA}.batches (name, lo, hi, events, manifest) "
                             "VALUES (%s, %s, %s, %s, %s::jsonb)",
                             (name, a, b, n, json.dumps(manifest)))
                with conn.cursor() as cur, cur.copy(f"COPY {SCHEMA}.batch_files (batch, name, data) FROM STDIN") as cp:
                    for p in written:
                        cp.write_row((name, str(p.relative_to(pq)), p.read_bytes()))
            if advance is not None:
                conn.execute(f"INSERT INTO {SCHEMA}.settings VALUES ('rolled_until', %s) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (repr(float(advance)),))
        if n:
            for p in written:
                _fsync(p)
            _write_atomic(pq / f"{name}{MANIFEST_SUFFIX}", json.dumps(manifest, indent=1).encode())
            written = []  # committed: kept (an empty stretch's file goes)
        return {"name": name, "events": n, "late": late}
    finally:
        con.close()
        for p in written:  # not committed: nothing names them
            p.unlink(missing_ok=True)
