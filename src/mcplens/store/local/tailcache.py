"""Closed segments read from Parquet copies the readers keep, not parsed as JSON lines each time.

A closed segment never changes until compaction folds it into a batch and deletes it, yet every read
of the tail parsed its JSON lines again: ~0.2 s for a 32 MB segment, per ``mcplens insights`` run,
per ``watch`` refresh, per CLI command. The first reader to list a closed segment writes a Parquet
copy of it under ``<events>/cache/``, named after the segment, its size and its modification time;
the readers after it read the copy (:func:`mcplens.store.local.files.read_segments_sql` reads a
``.parquet`` segment as the JSON lines it came from, typed as ``event.COLUMNS``). Why in the store:
the copy holds the same events as the segment, so it has the same owner and modes (0700/0600) and
goes where the store goes; compaction removes the copies of the segments it folds, and any reader
those whose segment is gone or changed.

Live segments are read as JSON lines: they grow with every flush, so a copy would be stale at once.
A store this process cannot write (another user's) is read from the JSON lines, as before; a copy
that cannot be made is not retried by this process.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Final

from mcplens.store import engine
from mcplens.store.local.files import _lit, read_segments_sql
from mcplens.store.local.layout import CLOSED

CACHE: Final = "cache"
_SUFFIX: Final = ".parquet"
#: segments this process failed to copy (unwritable store, disk full): read as JSON from then on
_failed: set[Path] = set()


def _copy_name(seg: Path, st: os.stat_result) -> str:
    return f"{seg.name}.{st.st_size}-{st.st_mtime_ns}{_SUFFIX}"


def _make(seg: Path, copy: Path) -> bool:
    """The segment's events written to ``copy`` (atomically: a temporary name, then a rename)."""
    tmp = copy.with_name(f".{copy.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    con = engine.duckdb().connect()
    try:
        copy.parent.mkdir(mode=0o700, exist_ok=True)
        con.execute(f"COPY ({read_segments_sql([seg])}) TO {_lit(tmp)} (FORMAT parquet)")
        os.chmod(tmp, 0o600)
        os.replace(tmp, copy)
        return True
    except Exception:  # noqa: BLE001 - unwritable, full, the segment gone: read the JSON instead
        return False
    finally:
        con.close()
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _forget(cache: Path, closed: Path) -> None:
    """Remove copies whose segment is gone (compacted) or changed, and temporaries left by a crash."""
    try:
        names = os.listdir(cache)
    except OSError:  # none yet, or not a directory we can use: nothing to remove
        return
    for name in names:
        path = cache / name
        if name.startswith("."):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > 3600:  # a crashed maker's temporary
                    path.unlink()
            continue
        seg = closed / name.removesuffix(_SUFFIX).rpartition(".")[0]
        try:
            current = _copy_name(seg, seg.stat()) == name
        except FileNotFoundError:
            current = False
        if not current:
            with contextlib.suppress(OSError):
                path.unlink()


def tidy(root: Path) -> None:
    """Remove the copies of segments that are gone or changed (compaction calls it once it has
    deleted the segments it folded, so their copies do not outlive them)."""
    _forget(root / CACHE, root / CLOSED)


def _copy_of(root: Path, seg: Path) -> Path | None:
    """Where the copy of ``seg`` as it is now (size, mtime) lives; None unless it is a closed JSON-lines
    segment that still exists."""
    if seg.parent != root / CLOSED or not seg.name.endswith(".jsonl"):
        return None
    try:
        st = seg.stat()
    except FileNotFoundError:
        return None  # compacted meanwhile: the read fails and the reader lists again
    return root / CACHE / _copy_name(seg, st)


def make_copies(root: Path, segments: list[Path], bad: Any = ()) -> bool:
    """Make the missing copies of the closed JSON-lines segments among ``segments``; True when any
    was made. Slow (a JSON parse each): the caller lists the store again afterwards, so what it reads
    follows its listing closely (a live segment listed before a slow copy may have moved meanwhile)."""
    made = False
    for seg in segments:
        copy = None if seg in _failed else _copy_of(root, seg)
        if copy is None or copy in bad or copy.exists():
            continue
        if _make(seg, copy):
            made = True
        else:
            _failed.add(seg)
    return made


def closed_as_parquet(root: Path, segments: list[Path], bad: Any = ()) -> list[Path]:
    """``segments`` with each closed JSON-lines segment that has a current copy replaced by it (a
    stat each: nothing is made here, see :func:`make_copies`); a copy in ``bad`` is removed."""
    out = []
    for seg in segments:
        copy = _copy_of(root, seg)
        if copy is not None and copy in bad:  # damaged (a reader found it unreadable): removed, so the
            with contextlib.suppress(OSError):  # next process remakes it
                copy.unlink()
            copy = None
        out.append(copy if copy is not None and copy.exists() else seg)
    tidy(root)  # a listing that fails at once when there is no cache directory
    return out
