"""Compaction: closed segments folded into Parquet batches, each with its rollups, committed by a manifest.

The commit protocol the readers rely on (see :mod:`mcplens.store.local.reader`): write
``parquet/<batch>.parquet`` and its rollup files, then atomically create ``<batch>.manifest.json``
naming the source segments with their sizes, and only then delete the sources. One compaction at a
time, by whoever takes ``compact.lock``; a run also cleans up after an interrupted one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mcplens.store import engine, rollup
from mcplens.store.base import CompactResult
from mcplens.store.local.files import (
    MANIFEST_SUFFIX,
    Manifest,
    Reader,
    _covered,
    _jsonl,
    _listdir,
    _lit,
    events_view_sql,
    parquet_columns,
    pid_alive,
    read_segments_sql,
    segment_pid,
)
from mcplens.store.local.layout import CLOSED, LIVE, PARQUET
from mcplens.store.local.tailcache import tidy
from mcplens.store.rollup import EXFIL_WINDOW, ROLLUP_DIR

if TYPE_CHECKING:
    from mcplens.store.local.reader import LocalStore

BATCH_MAX_BYTES: Final = 256 * 1024 * 1024  # raw JSON per Parquet file; bounds one COPY's work
ROW_GROUP: Final = 16_384  # rows per Parquet row group of a batch


def compact(store: LocalStore) -> CompactResult:
    """Fold finished segments into Parquet batches with their rollups; one compaction at a time (a lock
    file), safe while writers append and readers read (see the commit rules in :mod:`.reader`)."""
    if not store.root.is_dir():
        return CompactResult((), 0, 0, 0)
    fd = os.open(store.root / "compact.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return CompactResult((), 0, 0, 0, busy=True)
        return _compact_locked(store)
    finally:
        os.close(fd)  # releases the lock


def _compact_locked(store: LocalStore) -> CompactResult:
    pq = store.root / PARQUET
    pq.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(pq, 0o700)  # Parquet and rollups hold events: nothing under it is for other users
    manifests = store.manifests()
    committed = {m.parquet.name for m in manifests}
    # a damaged manifest still commits its batch: never delete that Parquet as a leftover
    committed |= {p.name.removesuffix(MANIFEST_SUFFIX) + ".parquet" for p in store.bad
                  if p.name.endswith(MANIFEST_SUFFIX)}
    rollup_files = {p for m in manifests for p in m.rollup_files()}
    covered = _covered(manifests)
    removed = 0
    # Clean up after an interrupted run: sources already committed, Parquet never committed.
    for p in [*_jsonl(store.root / LIVE), *_jsonl(store.root / CLOSED)]:
        if covered(p):
            removed += _unlink(p)
    for name in os.listdir(pq):
        if (name.endswith(".parquet") and name not in committed) or name.endswith(".tmp"):
            removed += _unlink(pq / name)
    for p in _listdir(pq / ROLLUP_DIR):
        if p not in rollup_files:
            removed += _unlink(p)

    sources = sorted(_jsonl(store.root / CLOSED))
    for p in sorted(_jsonl(store.root / LIVE)):
        pid = segment_pid(p.name)
        if pid is not None and not pid_alive(pid):  # writer killed before it could close
            sources.append(p)
    rolled = _roll_up_all([m for m in manifests if store._parquet_problem(m.parquet) is None])
    batches: list[str] = []
    events = 0
    for chunk in _chunks(sources):
        batch, n = _write_batch(pq, chunk, rolled)
        batches.append(batch)
        events += n
    tidy(store.root)  # the readers' copies of the segments just folded
    return CompactResult(tuple(batches), len(sources), events, removed, rolled_up=rolled.redone)


def _write_batch(pq: Path, sources: list[Path], rolled: _RolledUp) -> tuple[str, int]:
    duckdb = engine.duckdb()
    batch = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(4).hex()}"
    out = pq / f"{batch}.parquet"
    con = duckdb.connect()
    try:
        # in time order, in small row groups: a window's partial edge buckets (store/local/windows.py)
        # then read a few thousand rows, not every row group of every batch
        n = con.execute(
            f"COPY (SELECT * FROM ({read_segments_sql(sources)}) ORDER BY \"time\") TO {_lit(out)} "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP})"
        ).fetchone()[0]
        os.chmod(out, 0o600)  # events: owner-only, like the segments (the directory is 0700 too)
        _fsync(out)
        entries = rolled.entries(con, out)
        for name in entries["rollups"]["files"].values():
            os.chmod(pq / name, 0o600)
    finally:
        con.close()
    manifest = {
        "version": 1,
        "parquet": out.name,
        "segments": {p.name: p.stat().st_size for p in sources},
        "events": n,
        "created": time.time(),
        **entries,
    }
    _write_manifest(pq / f"{batch}{MANIFEST_SUFFIX}", manifest)  # the commit point
    for p in sources:
        _unlink(p)
    return batch, int(n)


def _roll_up_all(manifests: list[Manifest]) -> _RolledUp:
    """Give every committed batch its rollups, all over again if any lacks them (see store/rollup.py).

    Deltas add up only if each was computed over the batches before it, so one missing (a batch
    from an older mcplens, or another rollup version) means redoing them all, oldest first.
    """
    rolled = _RolledUp()
    if all(rollup.complete(m.rollups) for m in manifests):
        rolled.parquet = [m.parquet for m in manifests]
        rolled.tools = sorted({t for m in manifests for t in (m.rollups or {}).get("tools", ())})
        return rolled
    con = engine.duckdb().connect()
    try:
        for m, path, data in sorted(_commit_order(manifests), key=lambda x: (x[2].get("created", 0), x[0].batch)):
            data.update(rolled.entries(con, m.parquet))
            _write_manifest(path, data)
            rolled.redone += 1
    finally:
        con.close()
    return rolled


class _RolledUp:
    """The batches rolled up so far in one compaction: the history of the next one."""

    def __init__(self) -> None:
        self.parquet: list[Path] = []
        self.tools: list[str] = []
        self.redone = 0

    def add(self, con: Any, batch: Path) -> dict[str, Any]:
        con.execute(events_view_sql("new_events", [batch], []))
        if self.parquet:
            con.execute(events_view_sql("hist_events", self.parquet, []))
        meta = rollup.roll_up_batch(Reader(con), "new_events", "hist_events" if self.parquet else None, batch,
                                    self.tools, EXFIL_WINDOW)
        for f in meta["files"].values():
            _fsync(batch.parent / f)
        self.parquet.append(batch)
        self.tools = meta["tools"]
        return meta

    def entries(self, con: Any, batch: Path) -> dict[str, Any]:
        """A batch's manifest entries made from its file: its rollups (:meth:`add`) and its columns
        (readers bind views over batches of one schema from one footer, files.py); on a re-roll the
        columns too, as an older mcplens may not have recorded them."""
        return {"rollups": self.add(con, batch), "columns": parquet_columns(con, batch)}


def _commit_order(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Path, dict[str, Any]]]:
    """Each manifest with its data, for ordering by commit time: names of one second sort at random."""
    for m in manifests:
        path = m.parquet.with_name(m.batch + MANIFEST_SUFFIX)
        yield m, path, json.loads(path.read_text("utf-8"))


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
        fh.write(json.dumps(data, indent=1))
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _chunks(paths: list[Path]) -> list[list[Path]]:
    out: list[list[Path]] = []
    size = 0
    for p in paths:
        try:
            s = p.stat().st_size
        except FileNotFoundError:
            continue
        if not out or size + s > BATCH_MAX_BYTES:
            out.append([])
            size = 0
        out[-1].append(p)
        size += s
    return out


def _unlink(p: Path) -> int:
    try:
        p.unlink()
        return 1
    except FileNotFoundError:
        return 0


def _fsync(p: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
