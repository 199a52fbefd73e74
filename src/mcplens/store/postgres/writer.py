"""The writer thread's sink for PostgreSQL: one COPY per batch, spooling to local segments when it cannot.

Per batch, in one transaction: the batch's JSON lines (the bytes the local writer would append,
``eventlog.encode_batch``) are COPYed verbatim into a session-local staging table, then
``INSERT INTO events SELECT jsonb_populate_record(...) ON CONFLICT DO NOTHING``. Why this shape:

* no per-event Python work beyond the JSON encoding the local store does anyway: the COPY uses CSV
  framing with two control characters (``\\x01`` quote, ``\\x02`` delimiter) that JSON always escapes,
  so the lines go out as they are, and PostgreSQL maps each one onto the row type in C;
* the event's own ``event.id`` (128 random bits drawn on the writer thread, never on the request
  path) is the unique key, so a batch sent twice (a replay after a commit whose answer was lost)
  adds nothing the second time; the rollup trigger sees only rows actually inserted;
* the writer role needs INSERT on ``events`` and a temporary table, not SELECT.

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
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

from mcplens import event as ev
from mcplens.store.local.writer import CLOSED, LIVE, EventLogSink, encode_batch, events_dir
from mcplens.store.postgres import clean_error, mask_url
from mcplens.store.postgres.schema import DAY, SCHEMA

logger = logging.getLogger("mcplens")

STAGE: Final = "mcplens_stage"
_COPY: Final = f"COPY pg_temp.{STAGE} (doc) FROM STDIN (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
_INSERT: Final = (f"INSERT INTO {SCHEMA}.events SELECT r.* FROM pg_temp.{STAGE} s, "
                  f"jsonb_populate_record(NULL::{SCHEMA}.raw_event, s.doc) r "
                  f"WHERE r.\"time\" >= (SELECT {SCHEMA}.keep_since()) ON CONFLICT DO NOTHING")
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
        self.stats = {"sent": 0, "spooled": 0, "replayed": 0, "failures": 0, "rejected": 0}

    @property
    def path(self) -> Path | None:
        return self._spool.path

    # ---- connection ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        now = time.monotonic()
        if now < self._retry_at:
            return None
        import psycopg

        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "mcplens-writer"}
        if "connect_timeout" not in self._url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        try:
            conn = psycopg.connect(self._url, **kwargs)
            conn.execute(f"SET statement_timeout = {int(self._timeout * 1000)}")
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (doc jsonb) ON COMMIT DELETE ROWS")
        except Exception as exc:  # noqa: BLE001 - down, refused, bad credentials: spool and back off
            self._failed("connecting to PostgreSQL", exc)
            return None
        self._conn = conn
        self._backoff = BACKOFF_MIN
        self._days.clear()
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

    def _ensure_days(self, conn: Any, days: set[int]) -> None:
        missing = sorted(days - self._days)
        if missing:
            conn.execute(f"SELECT {SCHEMA}.ensure_partitions(%s)", (missing,))
            self._days.update(missing)

    def _send(self, data: bytes, days: set[int]) -> bool:
        """COPY these JSON lines and insert them; False when the server could not take them."""
        import psycopg

        conn = self._connection()
        if conn is None:
            return False
        for attempt in (0, 1):
            try:
                self._ensure_days(conn, days)
                with conn.transaction():
                    with conn.cursor() as cur:
                        with cur.copy(_COPY) as cp:
                            cp.write(data)
                        cur.execute(_INSERT)
                return True
            except psycopg.errors.CheckViolation as exc:  # no partition for a day (dropped meanwhile)
                self._days.clear()
                if attempt:
                    raise _Rejected(exc) from exc
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError,
                    psycopg.errors.InvalidTextRepresentation) as exc:
                raise _Rejected(exc) from exc
            except Exception as exc:  # noqa: BLE001 - connection lost, timeout, server going down
                self._failed("sending events to PostgreSQL", exc)
                return False
        return False

    def _send_lines(self, data: bytes, ends: list[int], days: set[int] | None = None) -> bool:
        """Send, and if PostgreSQL rejects the content (a value of the wrong type), split the batch
        to find and drop the rows it rejects (counted), so one bad event cannot block the rest."""
        if days is None:
            days = _days_of(data, ends)
        try:
            return self._send(data, days)
        except _Rejected as exc:
            if len(ends) == 1:
                self.stats["rejected"] += 1
                self._warn_once("a rejected event", exc.__cause__ or exc)
                return True
            mid = len(ends) // 2
            cut = ends[mid - 1]
            first = self._send_lines(data[:cut], ends[:mid])
            return first and self._send_lines(data[cut:], [e - cut for e in ends[mid:]])

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning("mcplens: PostgreSQL refused %s (%s); dropped and counted", what,
                           clean_error(exc, self._url))

    # ---- the sink interface ----------------------------------------------------------------

    def write_batch(self, events: list[dict[str, Any]]) -> int:
        if not events:
            return 0
        if not self._backlog:
            data, ends = encode_batch(events)
            days = {int(t // DAY) for e in events if isinstance(t := e.get(ev.TIME), int | float)}
            if self._send_lines(data, ends, days):
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
                chunk = [x for x in lines[start:start + REPLAY_CHUNK] if x.strip()]
                if chunk:
                    body = b"\n".join(chunk) + b"\n"
                    ends, pos = [], 0
                    for x in chunk:
                        pos += len(x) + 1
                        ends.append(pos)
                    if not self._send_lines(body, ends):
                        return False
                    self.stats["replayed"] += len(chunk)
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


def _days_of(data: bytes, ends: list[int]) -> set[int]:
    """Day numbers of spooled lines (replay only: parses each line)."""
    import json

    days = set()
    start = 0
    for end in ends:
        try:
            t = json.loads(data[start:end]).get(ev.TIME)
            if isinstance(t, int | float):
                days.add(int(t // DAY))
        except ValueError:
            pass
        start = end
    return days


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
