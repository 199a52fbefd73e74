"""The readers' Parquet copies of closed segments: made once, read as the JSON lines they came from,
removed with their segment, and never a reason to lose an event (a copy that cannot be made or is
damaged: the JSON lines are read)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from mcplens import event as ev
from mcplens.store.base import TimeWindow
from mcplens.store.local import files as files_module
from mcplens.store.local import reader as reader_module
from mcplens.store.local import tailcache
from mcplens.store.local.reader import LocalStore
from tests.store.factory import health, request, write

NOW = time.time()
ALL = "SELECT * FROM events ORDER BY event_id"


def _events(n: int, t0: float) -> list[dict]:
    """Every shape a segment holds: errors, missing measures, notifications, health, odd text.

    Durations in 1/1024 s, so a mean (a float sum in whatever order DuckDB's threads add) is exact."""
    out = []
    for i in range(n):
        e = request(t0 + i, target=("search", "fetch", "wr\u00efte\n\x1b[31m")[i % 3],
                    status=(ev.OK, ev.TOOL_ERROR, ev.TIMEOUT)[i % 3], duration=(i + 1) / 1024, size=i * 37)
        if i % 5 == 0:
            e.pop(ev.DURATION)
        out.append(e)
    out.append(request(t0, method="notifications/initialized", target=None, kind="notification"))
    out.append(health("a1b2c3d4e5f60718", t0 + n, enqueued=n, written=n))
    return out


def _json_only(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What the store reads from the JSON lines alone (no copies)."""
    with monkeypatch.context() as m:
        m.setattr(reader_module, "make_copies", lambda root, segments, bad=(): False)
        m.setattr(reader_module, "closed_as_parquet", lambda root, segments, bad=(): list(segments))
        return store.query(ALL)


def _copies(home: Path) -> list[Path]:
    d = home / "events" / tailcache.CACHE
    return sorted(p for p in d.iterdir() if not p.name.startswith(".")) if d.exists() else []


def test_a_closed_segment_is_read_from_its_copy_with_the_same_events(home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seg = write(home, _events(300, NOW - 3000), instance="one")
    live = write(home, _events(20, NOW - 100), instance="two", close=False)
    store = LocalStore(home)
    want = _json_only(store, monkeypatch)
    assert not _copies(home), "reading JSON only made no copy"
    got = store.query(ALL)
    (copy,) = _copies(home)
    assert copy.name.startswith(seg.name) and not any(p.name.startswith(live.name) for p in _copies(home))
    assert got == want and len(got) == 324
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    # the next reader reads the copy, and does not make it again
    made = copy.stat().st_mtime_ns
    assert LocalStore(home).query(ALL) == want
    assert copy.stat().st_mtime_ns == made
    assert store.tool_table(TimeWindow(since=NOW - 3600)) == LocalStore(home).tool_table(TimeWindow(since=NOW - 3600))


def test_the_copy_goes_when_compaction_folds_its_segment(home: Path) -> None:
    write(home, _events(50, NOW - 3000), instance="one")
    store = LocalStore(home)
    before = store.query(ALL)
    assert len(_copies(home)) == 1
    assert store.compact().batches
    assert _copies(home) == [], "compaction removes the copies of what it folded"
    assert store.query(ALL) == before


def test_no_copy_can_be_made_then_the_json_lines_are_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home, _events(40, NOW - 3000), instance="one")
    (home / "events" / tailcache.CACHE).write_text("not a directory")  # mkdir fails, as on a read-only store
    monkeypatch.setattr(tailcache, "_failed", set())
    store = LocalStore(home)
    assert len(store.query(ALL)) == 42
    assert (home / "events" / tailcache.CACHE).read_text() == "not a directory"


def test_a_damaged_copy_is_left_out_and_the_segment_read(home: Path) -> None:
    write(home, _events(60, NOW - 3000), instance="one")
    want = LocalStore(home).query(ALL)
    (copy,) = _copies(home)
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])  # torn, keeping its name
    store = LocalStore(home)
    assert store.query(ALL) == want
    assert copy in store.bad and not copy.exists(), "named, and removed"
    assert LocalStore(home).query(ALL) == want  # the next reader makes it again
    assert _copies(home) == [copy]


def test_a_copy_of_an_older_version_or_a_temporary_left_behind_is_removed(home: Path) -> None:
    seg = write(home, _events(30, NOW - 3000), instance="one")
    cache = home / "events" / tailcache.CACHE
    cache.mkdir(mode=0o700)
    stale = cache / f"{seg.name}.1-2.parquet"
    stale.write_bytes(b"old")
    orphan = cache / "20260101T000000-1-gone-0001.jsonl.10-20.parquet"
    orphan.write_bytes(b"gone")
    temp = cache / ".x.parquet.1.ab.tmp"
    temp.write_bytes(b"half")
    os.utime(temp, (time.time() - 7200, time.time() - 7200))
    fresh = cache / ".y.parquet.1.cd.tmp"
    fresh.write_bytes(b"being made")
    assert len(LocalStore(home).query(ALL)) == 32
    names = {p.name for p in cache.iterdir()}
    assert stale.name not in names and orphan.name not in names and temp.name not in names
    assert fresh.name in names and len(_copies(home)) == 1


def test_the_copy_reads_as_read_segments_sql_reads_the_json(home: Path) -> None:
    """Column for column, typed: the copy is read through the same function as the JSON lines."""
    seg = write(home, _events(80, NOW - 3000), instance="one")
    LocalStore(home).query(ALL)
    (copy,) = _copies(home)
    import duckdb

    con = duckdb.connect()
    a = con.execute(f"SELECT * FROM ({files_module.read_segments_sql([seg])}) ORDER BY ALL").fetchall()
    b = con.execute(f"SELECT * FROM ({files_module.read_segments_sql([copy])}) ORDER BY ALL").fetchall()
    assert a == b and len(a) == 82
