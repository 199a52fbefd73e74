"""The event log's own file handling: segment names never collide within a process."""

from __future__ import annotations

import time
from pathlib import Path

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
