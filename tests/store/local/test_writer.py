"""The event log's own file handling: segment names never collide within a process."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mcplens.store.local import writer as w
from mcplens.store.local.reader import LocalStore
from mcplens.store.local.writer import EventLogSink
from tests.store.factory import request


def test_sinks_of_one_instance_reopened_in_the_same_second_keep_every_event(tmp_path: Path) -> None:
    """A pipeline closed and opened again (same process, same instance) within one second used to
    reuse its segment's name, and closing the second renamed it over the first: events lost."""
    home = tmp_path / "home"
    now = time.time()
    written = 0
    names: set[str] = set()
    for round_ in range(4):
        sink = EventLogSink(home, "a1b2c3d4e5f60718", max_bytes=1 << 30, max_age=1e9)
        batch = [request(now + round_ + i / 10, session=f"s{round_}") for i in range(3)]
        written += sink.write_batch(batch)
        assert sink.path is not None
        names.add(sink.path.name)
        sink.close()
    assert len(names) == 4
    closed = sorted(p.name for p in (home / "events" / "closed").glob("*.jsonl"))
    assert len(closed) == 4
    assert LocalStore(home).query("SELECT count(*) AS n FROM events")[0]["n"] == written == 12


def test_a_batch_cut_short_in_a_later_piece_keeps_whole_lines_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch larger than one write piece (WRITE_CHUNK) whose disk fills in its second piece: the
    first piece stays, the torn line is cut back, and PartialWrite names exactly the lines on disk.
    The disk is simulated at ``os.write`` (a short write, then ENOSPC)."""
    sink = EventLogSink(tmp_path / "home", "c0ffee", max_bytes=1 << 30, max_age=1e9)
    sink.write_batch([request(time.time(), session="warm")])  # the segment exists
    room = [int(w.WRITE_CHUNK * 1.5)]  # bytes the disk still takes: in the middle of the second piece
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if fd != sink._fd:
            return real_write(fd, data)
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        n = real_write(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    batch = [{**request(time.time(), session="s"), "pad": "x" * 500, "n": i} for i in range(400)]  # ~3.5 pieces
    with pytest.raises(w.PartialWrite) as got:
        sink.write_batch(batch)
    monkeypatch.setattr(os, "write", real_write)
    assert sink.path is not None
    lines = sink.path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line: nothing torn
    kept = [json.loads(line) for line in lines[:-1]][1:]
    assert got.value.whole_lines == len(kept) > 0
    assert [e["n"] for e in kept] == list(range(len(kept)))
    # at least the first piece made it, and the cut is inside the second
    assert w.WRITE_CHUNK <= sum(len(line) + 1 for line in lines[1:-1]) <= 2 * w.WRITE_CHUNK
