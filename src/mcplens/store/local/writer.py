"""The local event log: per-process append-only JSON-lines segments under the data directory.

Why this shape (research/FACTS.md): several stdio server processes write at once, and no
embedded database admits several writer processes. A file per process needs no lock between
writers; every batch goes out in one ``os.write`` on an ``O_APPEND`` descriptor, so a reader
sees whole lines, except perhaps a torn last one after a hard kill, which it skips.

Layout under ``<home>/events/``::

    live/<stamp>-<pid>-<instance>-<seq>.jsonl     being written by a running process
    closed/<same name>                            finished: rotated, or the process exited
    parquet/<batch>.parquet + <batch>.manifest.json   compacted by the reading side

A segment moves from ``live/`` to ``closed/`` by one ``rename``. A process killed hard leaves its
segment in ``live/``; the reading side treats it as closed once the pid is gone.
"""

from __future__ import annotations

import bisect
import itertools
import os
import time
from pathlib import Path
from typing import Any

from mcplens import _json, resources
from mcplens import event as ev
from mcplens.event_templates import Sanitized
from mcplens.store.local.layout import CLOSED, LIVE, events_dir

#: segment numbers, shared by every sink of this process: two sinks of one instance opened in the
#: same second (a pipeline closed and opened again) must never pick the same file name
_SEGMENT_NUMBERS = itertools.count(1)


def encode(event: dict[str, Any]) -> bytes:
    return _json.dumps(event) + b"\n"


#: bytes of JSON lines joined and written at a time. Below the C library's threshold for memory
#: of its own mapping (128 KiB), so each piece reuses the heap the previous one freed: one buffer
#: for a whole batch took fresh memory from the system and faulted it in, page by page, on every
#: write (2.3 page faults per event, a fifth of the writer's CPU time; bench/instructions.py).
WRITE_CHUNK = 64 * 1024


class PartialWrite(OSError):
    """A batch reached the disk only in part; ``whole_lines`` of its lines are there, whole."""

    def __init__(self, cause: OSError, whole_lines: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.whole_lines = whole_lines


class EventLogSink:
    """Writes batches of events to this process's current segment, rotating by size and age.

    Before each write it checks that the segment it holds open is still the file at its path (a
    deleted or replaced data directory would otherwise swallow every event while they are counted
    as written) and opens a new one if not. A write that fails part-way (disk full) is cut back to
    the last whole line, so no torn line is left mid-file, and reports exactly how many lines made it.
    """

    name = "eventlog"
    #: a template's copy (event_templates) comes as it is, and is encoded from its template's line
    writes_sanitized = True

    def __init__(self, home: Path, instance_id: str, *, max_bytes: int, max_age: float) -> None:
        self._root = events_dir(home)
        self._instance = instance_id
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._fd: int | None = None
        self._path: Path | None = None
        self._ident: tuple[int, int] | None = None
        self._opened_at = 0.0
        self._bytes = 0

    @property
    def path(self) -> Path | None:
        return self._path

    def _open(self) -> None:
        live = self._root / LIVE
        live.mkdir(parents=True, exist_ok=True)
        (self._root / CLOSED).mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        while True:  # a name no segment has had, live or closed (closing renames over a same-named file)
            name = f"{stamp}-{os.getpid()}-{self._instance[:12]}-{next(_SEGMENT_NUMBERS):04d}.jsonl"
            if (self._root / CLOSED / name).exists():
                continue
            try:
                self._fd = os.open(live / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        self._path = live / name
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        self._opened_at = time.monotonic()
        self._bytes = st.st_size

    def _still_there(self) -> bool:
        """Whether our open segment is still the file at its path (one stat per write)."""
        if self._path is None:
            return False
        try:
            st = os.stat(self._path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def write_batch(self, events: list[dict[str, Any]]) -> int:
        """Append ``events``; returns how many lines were written (all of them, or it raises
        :class:`PartialWrite` naming how many whole lines reached the file)."""
        if not events:
            return 0
        if self._fd is None:
            self._open()
        elif not self._still_there():
            self._abandon()
            self._open()
        elif self._bytes >= self._max_bytes or time.monotonic() - self._opened_at >= self._max_age:
            self._close_segment()
            self._open()
        dumps_line = _json.dumps_line
        done = 0  # lines of this batch on disk
        chunk: list[bytes] = []
        size = 0
        for e in events:
            line = e.line() if type(e) is Sanitized else dumps_line(e)
            chunk.append(line)
            size += len(line)
            if size >= WRITE_CHUNK:
                done = self._write_lines(chunk, done)
                chunk, size = [], 0
        if chunk:
            done = self._write_lines(chunk, done)
        return done

    def _write_lines(self, lines: list[bytes], before: int) -> int:
        """Append whole ``lines`` after ``before`` lines of this batch; returns the lines now on disk,
        or cuts a torn line back and raises :class:`PartialWrite` with the whole ones."""
        assert self._fd is not None
        data = b"".join(lines)
        done = 0
        view = memoryview(data)
        try:
            while done < len(data):  # one write in practice; loop only on a short write
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            ends = list(itertools.accumulate(len(line) for line in lines))
            whole = bisect.bisect_right(ends, done)
            keep = ends[whole - 1] if whole else 0
            self._cut(self._bytes + keep)
            raise PartialWrite(exc, before + whole) from exc
        finally:
            view.release()
        self._bytes += len(data)
        return before + len(lines)

    def _cut(self, size: int) -> None:
        """Truncate the segment back to ``size`` (the end of its last whole line)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            self._bytes = size
        except OSError:
            # cannot cut the torn tail: start a new segment, so it stays the last line of its file
            self._close_segment()

    def _abandon(self) -> None:
        """Let go of a segment whose file was deleted or replaced under us."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self._path = None
        self._ident = None

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        try:
            os.close(self._fd)
        finally:
            self._fd = None
        try:
            if not self._still_there():
                pass  # deleted or replaced under us: nothing of ours to move
            elif self._bytes:
                os.rename(self._path, self._root / CLOSED / self._path.name)
            else:
                self._path.unlink(missing_ok=True)
        except OSError:
            pass  # the reading side treats a dead process's live segment as closed
        self._path = None
        self._ident = None

    def close(self) -> None:
        self._close_segment()


def health_record(instance_id: str, counters: dict[str, int], base: dict[str, Any]) -> dict[str, Any]:
    """A periodic record of the pipeline's own counters, so drops and faults show in the CLI,
    with the process's CPU and memory beside its call counts."""
    usage = resources.sample()
    return {
        **base,
        ev.EVENT_ID: os.urandom(16).hex(),
        ev.EVENT_KIND: ev.HEALTH_KIND,
        ev.TIME: time.time(),
        ev.HEALTH_ENQUEUED: counters.get("enqueued", 0),
        ev.HEALTH_WRITTEN: counters.get("written", 0),
        ev.HEALTH_DROPPED: counters.get("dropped", 0),
        ev.HEALTH_FAULTS: counters.get("faults", 0),
        ev.HEALTH_WRITE_FAILURES: counters.get("write_failures", 0),
        ev.PROCESS_CPU: usage["cpu"],
        ev.PROCESS_MEMORY: usage["rss"],
        ev.PROCESS_START: usage["started"],
    }
