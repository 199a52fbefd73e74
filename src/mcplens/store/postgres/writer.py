"""The writer thread's sink for PostgreSQL: one binary COPY per batch, spooling to local segments when it cannot.

Per batch, one statement: the events go out as typed rows (``COPY events FROM STDIN (FORMAT
binary)``, each row a tuple of the event's values in column order, formatted by psycopg's C
dumpers), straight into the day partitions. Why this shape:

* the server parses no JSON and runs no trigger per row: a row costs PostgreSQL a binary tuple,
  two index entries (the unique id, the BRIN range on time) and its WAL;
* no rollups at ingest: ``mcplens db rollup`` makes them later from closed hours (:mod:`.mirror`),
  so a writer pays nothing for them (schema 2's per-batch deltas were a third of the database's
  cost per event, and upserts of the same rollup rows by eight writers at once contended);
* exactly once: the event's own ``event.id`` (128 random bits) is unique in ``events``. A batch
  holding an id already stored (a replay after a commit whose answer was lost, or a spool two
  processes raced on) fails its COPY as a whole, so none of its rows count; it is then sent the
  slow way: COPY into the unlogged ``stage`` table and ``merge_stage()``, which inserts with ``ON
  CONFLICT DO NOTHING``. Two writers inserting the same ids in different orders can deadlock; the
  server then rolls one statement back whole, and that batch is simply sent again (a few times,
  jittered) instead of being spooled;
* least privilege: the writer role may INSERT into ``events`` and ``stage`` and call the helper
  functions, nothing else: it cannot SELECT.

When PostgreSQL is down, slow (``statement_timeout``) or refusing, the batch goes to the **spool**:
the local segment writer under ``<home>/spool/postgres/``. While anything is spooled, new batches
are spooled behind it, and each write tries to **replay** the spool oldest first (a bounded time
per call, so the writer thread keeps its pace); a segment is deleted only after its COPY committed.
Spool left by a process that died (any segment whose pid is gone, or closed) is replayed by the next
writer sharing the home. Reconnects back off (0.5 s doubling to 5 s) so a dead server costs one
failed connect per backoff period, not one per batch. Nothing here raises to the pipeline except a
spool write that failed too (the pipeline counts it as a write failure, as for the local store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Final

from mcplens import event as ev
from mcplens._json import dumps
from mcplens.store.local.layout import CLOSED, LIVE, events_dir
from mcplens.store.local.writer import EventLogSink
from mcplens.store.postgres import clean_error, mask_url
from mcplens.store.postgres.schema import DAY, SCHEMA, WRITER_HEALTH, columns

logger = logging.getLogger("mcplens")

#: (event key, PostgreSQL type for psycopg's binary dumpers) in the table's column order
_PG_DUMP: Final = {"text": "text", "integer": "int4", "double precision": "float8", "bigint": "int8",
                   "jsonb": "jsonb", "text[]": "text[]"}
_ALL: Final = (*columns(), *WRITER_HEALTH)
KEYS: Final = tuple(key for _, key, _ in _ALL)
TYPES: Final = tuple(_PG_DUMP[t.split(" COLLATE")[0]] for _, _, t in _ALL)
_COLS: Final = ", ".join(f'"{n}"' for n, _, _ in _ALL)
_COPY: Final = f"COPY {SCHEMA}.events ({_COLS}) FROM STDIN (FORMAT binary)"
_COPY_STAGE: Final = f"COPY {SCHEMA}.stage ({_COLS}) FROM STDIN (FORMAT binary)"
_MERGE: Final = f"SELECT {SCHEMA}.merge_stage()"
#: keep_since() is read again after this many seconds (retention moves it once a day or so)
KEEP_SINCE_TTL: Final = 300.0
#: seconds one statement may take before the batch is spooled instead (a slow server)
STATEMENT_TIMEOUT: Final = 5.0
CONNECT_TIMEOUT: Final = 3
BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 5.0
#: seconds one write may spend replaying the spool (the rest waits for the next write)
REPLAY_BUDGET: Final = 1.0
#: lines per COPY when replaying a spool segment
REPLAY_CHUNK: Final = 4096
#: seconds close() may spend replaying the spool before leaving it for the next process
CLOSE_BUDGET: Final = 2.0
#: times a batch is sent again after PostgreSQL rolled it back to break a deadlock (class 40 errors)
TRANSIENT_RETRIES: Final = 4
_TEXT_OID: Final = 25
_TEXT_ARRAY_OID: Final = 1009
#: text[] values are few and repeat (content types, capabilities): their binary form is remembered
_ARRAY_MEMO: Final = 4096


def _text_array_dumper() -> type:
    """A binary ``text[]`` dumper for COPY (psycopg's generic list dumper costs tens of µs a row).

    Registered for the type only (``register_dumper(None, ...)``), so it is used where the column
    type says ``text[]`` and nowhere else. Values that are not a list of strings go to the generic
    dumper's rules by raising: the batch is split and the row refused, as PostgreSQL would."""
    import struct

    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    head = struct.Struct("!iiIii")
    length = struct.Struct("!i")
    memo: dict[tuple[Any, ...], bytes] = {}

    class TextArrayDumper(Dumper):
        format = Format.BINARY
        oid = _TEXT_ARRAY_OID

        def dump(self, obj: Any) -> bytes:
            key = tuple(obj) if isinstance(obj, list | tuple) else None
            if key is None:
                raise TypeError(f"text[] wants a list, not {type(obj).__name__}")
            out = memo.get(key)
            if out is not None:
                return out
            if not key:
                out = struct.pack("!iiI", 0, 0, _TEXT_OID)
            else:
                parts = [head.pack(1, int(None in key), _TEXT_OID, len(key), 1)]
                for x in key:
                    if x is None:
                        parts.append(length.pack(-1))
                    elif isinstance(x, str):
                        b = x.encode("utf-8")
                        parts += [length.pack(len(b)), b]
                    else:
                        raise TypeError(f"text[] element {type(x).__name__}")
                out = b"".join(parts)
            if len(memo) < _ARRAY_MEMO and sum(len(x or "") for x in key) < 256:
                memo[key] = out
            return out

    return TextArrayDumper


def spool_home(home: Path) -> Path:
    """The spool is a segment log of its own (``<home>/spool/postgres/events/{live,closed}``)."""
    return Path(home) / "spool" / "postgres"


class PostgresWriter:
    """Drop-in for the pipeline's event log (``write_batch`` / ``close``), writing to PostgreSQL."""

    name = "postgres"

    def __init__(self, url: str, home: Path, instance_id: str, *, max_bytes: int = 64 << 20,
                 max_age: float = 600.0, statement_timeout: float = STATEMENT_TIMEOUT) -> None:
        self._url = url
        self._timeout = statement_timeout
        self._spool = EventLogSink(spool_home(home), instance_id, max_bytes=max_bytes, max_age=max_age)
        self._spool_root = events_dir(spool_home(home))
        self._conn: Any = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN
        self._days: set[int] = set()
        self._warned: set[str] = set()
        self._backlog = self._spool_files() != []  # spool left by an earlier process: replay before new
        self.stats = {"sent": 0, "spooled": 0, "replayed": 0, "failures": 0, "rejected": 0, "expired": 0, "merged": 0,
                      "retried": 0}
        self._keep_since = 0.0
        self._keep_at = 0.0

    @property
    def path(self) -> Path | None:
        return self._spool.path

    def health_fields(self) -> dict[str, int]:
        """This writer's counters for the pipeline's health records (so ``mcplens health`` readers
        and SQL over ``events`` see what was spooled, replayed and refused, per replica)."""
        s = self.stats
        return dict(zip((k for _, k, _ in WRITER_HEALTH),
                        (s["sent"], s["spooled"], s["replayed"], s["rejected"] + s["expired"]), strict=True))

    # ---- connection ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        now = time.monotonic()
        if now < self._retry_at:
            return None
        import psycopg
        from psycopg.types.json import set_json_dumps

        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "mcplens-writer"}
        if "connect_timeout" not in self._url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        try:
            conn = psycopg.connect(self._url, **kwargs)
            conn.execute(f"SET statement_timeout = {int(self._timeout * 1000)}")
            set_json_dumps(dumps, context=conn)  # jsonb columns: the local writer's exact JSON (bytes)
            conn.adapters.register_dumper(None, _text_array_dumper())  # text[] columns, by type only
        except Exception as exc:  # noqa: BLE001 - down, refused, bad credentials: spool and back off
            self._failed("connecting to PostgreSQL", exc)
            return None
        self._conn = conn
        self._backoff = BACKOFF_MIN
        self._days.clear()
        self._keep_at = 0.0
        return conn

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats["failures"] += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        if what not in self._warned:  # once per kind, masked: no password reaches a log line
            self._warned.add(what)
            logger.warning("mcplens: %s at %s failed (%s); events are spooled locally and replayed later",
                           what, mask_url(self._url), clean_error(exc, self._url))

    # ---- sending ---------------------------------------------------------------------------

    def _prepare(self, conn: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events retention still keeps (older ones are dropped, counted), their day partitions made."""
        if time.monotonic() >= self._keep_at:
            self._keep_since = float(conn.execute(f"SELECT {SCHEMA}.keep_since()").fetchone()[0])
            self._keep_at = time.monotonic() + KEEP_SINCE_TTL
        floor = self._keep_since
        days = set()
        kept = []
        for e in events:
            t = e.get(ev.TIME)
            if isinstance(t, int | float) and not isinstance(t, bool):
                if t < floor:
                    self.stats["expired"] += 1
                    continue
                if t == t and abs(t) < 1e12:
                    days.add(int(t // DAY))
            kept.append(e)  # a missing or wrong time: PostgreSQL refuses the row, the batch is split
        missing = sorted(days - self._days)
        if missing:
            conn.execute(f"SELECT {SCHEMA}.ensure_partitions(%s)", (missing,))
            self._days.update(missing)
        return kept

    def _send(self, events: list[dict[str, Any]]) -> bool:
        """COPY these events and add their rollups; False when the server could not take them."""
        import psycopg

        conn = self._connection()
        if conn is None:
            return False
        checked = False
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                rows = self._prepare(conn, events)
                if not rows:
                    return True
                try:
                    self._copy(conn, _COPY, rows, stage=False)
                except psycopg.errors.UniqueViolation:
                    # some of these ids are stored already (a replay): the slow way, each row at most once
                    self._copy(conn, _COPY_STAGE, rows, stage=True)
                    self.stats["merged"] += 1
                return True
            except _Rejected:
                raise
            except psycopg.errors.CheckViolation as exc:  # no partition for a day (dropped meanwhile)
                self._days.clear()
                self._keep_at = 0.0
                if checked:
                    raise _Rejected(exc) from exc
                checked = True
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                    psycopg.errors.TransactionRollback) as exc:
                # writers racing on the same ids (a replay beside the original): the server rolled
                # this statement back to break the cycle and nothing of it is stored; the next try
                # finds the other's rows committed and merges around them
                self.stats["retried"] += 1
                if attempt == TRANSIENT_RETRIES:
                    self._failed("sending events to PostgreSQL", exc)
                    return False
                time.sleep(random.uniform(0.0, 0.05 * (attempt + 1)))  # not in step with the other
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.DataError,
                    psycopg.errors.InvalidTextRepresentation, TypeError, ValueError, OverflowError) as exc:
                raise _Rejected(exc) from exc
            except Exception as exc:  # noqa: BLE001 - connection lost, timeout, server going down
                self._failed("sending events to PostgreSQL", exc)
                return False
        return False

    def _copy(self, conn: Any, sql: str, rows: list[dict[str, Any]], *, stage: bool) -> None:
        """The rows by binary COPY, one statement (its own transaction); ``stage``: into the staging
        table and ``merge_stage()`` in the same transaction, which inserts what is not stored yet."""
        with contextlib.ExitStack() as stack:
            if stage:
                stack.enter_context(conn.transaction())
            cur = stack.enter_context(conn.cursor())
            with cur.copy(sql) as cp:
                cp.set_types(TYPES)
                write = cp.write_row
                for e in rows:
                    write(tuple(map(e.get, KEYS)))
            if stage:
                cur.execute(_MERGE)

    def _send_events(self, events: list[dict[str, Any]]) -> bool:
        """Send, and if PostgreSQL rejects the content (a value of the wrong type), split the batch
        to find and drop the rows it rejects (counted), so one bad event cannot block the rest."""
        try:
            return self._send(events)
        except _Rejected as exc:
            if len(events) == 1:
                self.stats["rejected"] += 1
                self._warn_once("a rejected event", exc.__cause__ or exc)
                return True
            mid = len(events) // 2
            return self._send_events(events[:mid]) and self._send_events(events[mid:])

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning("mcplens: PostgreSQL refused %s (%s); dropped and counted", what,
                           clean_error(exc, self._url))

    # ---- the sink interface ----------------------------------------------------------------

    def write_batch(self, events: list[dict[str, Any]]) -> int:
        if not events:
            return 0
        if not self._backlog and self._send_events(events):
            self.stats["sent"] += len(events)
            return len(events)
        n = self._spool.write_batch(events)  # PartialWrite propagates: the pipeline counts it
        self.stats["spooled"] += n
        self._backlog = True
        self.replay(REPLAY_BUDGET)
        return n

    def replay(self, budget: float) -> bool:
        """Send spooled segments oldest first for up to ``budget`` seconds; True when none is left."""
        if self._connection() is None:
            return False
        deadline = time.monotonic() + budget
        self._spool.close()  # our current segment joins closed/, so it is replayed in its turn
        for path in self._spool_files():
            if time.monotonic() >= deadline:
                return False
            done = self._replay_file(path, deadline)
            if done is None:
                continue  # another process is replaying it
            if not done:
                return False
        self._backlog = bool(self._spool_files())
        return not self._backlog

    def _replay_file(self, path: Path, deadline: float) -> bool | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if not path.exists():
                return True  # replayed and removed by another process meanwhile
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            if not data.endswith(b"\n"):
                lines = lines[:-1]  # a torn last line (hard kill): skipped, as the local store does
            done = _progress(path)
            for start in range(done, len(lines), REPLAY_CHUNK):
                chunk = _decode([x for x in lines[start:start + REPLAY_CHUNK] if x.strip()])
                self.stats["rejected"] += chunk.count(None)
                events = [e for e in chunk if e is not None]
                if events:
                    if not self._send_events(events):
                        return False
                    self.stats["replayed"] += len(events)
                _save_progress(path, start + REPLAY_CHUNK)
                if time.monotonic() >= deadline and start + REPLAY_CHUNK < len(lines):
                    return False
            path.unlink(missing_ok=True)
            _progress_path(path).unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    def _spool_files(self) -> list[Path]:
        """Closed segments, and live ones whose writer is gone, oldest first (names start with the time)."""
        from mcplens.store.local.files import pid_alive, segment_pid

        out = []
        for sub in (CLOSED, LIVE):
            d = self._spool_root / sub
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                if not n.endswith(".jsonl"):
                    continue
                if sub == LIVE:
                    pid = segment_pid(n)
                    if pid is None or pid == os.getpid() or pid_alive(pid):
                        continue
                out.append(d / n)
        return sorted(out, key=lambda p: p.name)

    def close(self) -> None:
        """Replay what is spooled for up to ``CLOSE_BUDGET`` seconds, then leave the rest on disk."""
        try:
            if self._backlog:
                self.replay(CLOSE_BUDGET)
        finally:
            self._spool.close()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None


class _Rejected(Exception):
    """PostgreSQL refused the content of a batch (not the connection)."""


def _decode(lines: list[bytes]) -> list[dict[str, Any] | None]:
    """Spooled JSON lines back to events (``None`` for a line that is not a JSON object)."""
    out: list[dict[str, Any] | None] = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            e = None
        out.append(e if isinstance(e, dict) else None)
    return out


def _progress_path(path: Path) -> Path:
    return path.with_name("." + path.name + ".sent")


def _progress(path: Path) -> int:
    """Lines of a spool segment already committed (a replay cut short by its time budget)."""
    try:
        return int(_progress_path(path).read_text("ascii"))
    except (FileNotFoundError, ValueError):
        return 0


def _save_progress(path: Path, lines: int) -> None:
    with contextlib.suppress(OSError):
        _progress_path(path).write_text(str(lines), "ascii")
