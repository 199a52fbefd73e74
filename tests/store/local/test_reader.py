from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcplens import event as ev
from mcplens.store.base import FIELDS, SORTS, TimeWindow, parse_time
from mcplens.store.local import compact
from mcplens.store.local import files as files_module
from mcplens.store.local.files import Snapshot, segment_pid
from mcplens.store.local.reader import LocalStore
from mcplens.store.local.writer import EventLogSink
from tests.store.factory import health, qcont, request, write

NOW = time.time()


def ids(store: LocalStore) -> list[str]:
    return [r["event_id"] for r in store.query("SELECT event_id FROM events")]


def rounded(rows: list[dict]) -> list[dict]:
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def test_missing_home_is_empty_not_an_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nothing")
    assert store.count() == 0
    assert store.tool_table() == []
    assert store.sessions() == [] and store.health() == [] and store.events_since(0) == []
    assert store.session_events("x") == []
    assert store.compact().batches == ()


def test_tool_table_matches_reference_computation(home: Path) -> None:
    rng = random.Random(7)
    events, by_tool = [], {}
    for i in range(600):
        tool = rng.choice(["search_files", "read_file", "write_file"])
        status = rng.choices([ev.OK, ev.TOOL_ERROR, ev.TIMEOUT, ev.CANCELLED], [80, 10, 5, 5])[0]
        e = request(NOW - 3000 + i, target=tool, status=status, duration=rng.lognormvariate(-4, 1),
                    size=rng.randint(40, 60_000))
        events.append(e)
        by_tool.setdefault(tool, []).append(e)
    # not calls: a notification and pipeline health records; tools/list is its own row
    events.append(request(NOW, method="notifications/initialized", target=None, kind="notification"))
    events.append(health("a1b2c3d4e5f60718", NOW, enqueued=601, written=601))
    events += [request(NOW - 5, method="tools/list", target=None, size=2048) for _ in range(3)]
    write(home, events)

    rows = {r["name"]: r for r in LocalStore(home).tool_table()}
    assert set(rows) == {"search_files", "read_file", "write_file", "tools/list"}
    assert rows["tools/list"]["target"] is None and rows["tools/list"]["calls"] == 3
    for tool, evs in by_tool.items():
        r = rows[tool]
        ms = [e[ev.DURATION] * 1000 for e in evs]
        sizes = [e[ev.RESPONSE_SIZE] for e in evs]
        tokens = [e[ev.RESPONSE_TOKENS] for e in evs]
        errors = sum(e[ev.STATUS] not in (ev.OK, ev.CANCELLED) for e in evs)
        assert (r["server"], r["method"], r["calls"], r["errors"]) == ("files", "tools/call", len(evs), errors)
        assert r["error_rate"] == pytest.approx(errors / len(evs))
        assert r["p50_ms"] == pytest.approx(statistics.median(ms))
        assert r["p95_ms"] == pytest.approx(statistics.quantiles(ms, n=100, method="inclusive")[94])
        assert r["p99_ms"] == pytest.approx(qcont(ms, 0.99))
        assert r["mean_ms"] == pytest.approx(statistics.fmean(ms))
        assert r["payload_p50_bytes"] == pytest.approx(qcont(sizes, 0.5))
        assert r["payload_p95_bytes"] == pytest.approx(qcont(sizes, 0.95))
        assert r["payload_max_bytes"] == max(sizes)
        assert r["tokens_p50"] == pytest.approx(qcont(tokens, 0.5))
        assert r["tokens_p95"] == pytest.approx(qcont(tokens, 0.95))
        want = {s: sum(e[ev.STATUS] == s for e in evs) for s in {e[ev.STATUS] for e in evs}}
        assert r["statuses"] == want
        assert list(r["statuses"].values()) == sorted(want.values(), reverse=True)


@pytest.mark.parametrize("sort", SORTS)
def test_sort_is_largest_first(home: Path, sort: str) -> None:
    rng = random.Random(sort)
    events = [
        request(NOW - i, target=f"tool_{rng.randint(0, 7)}", duration=rng.random(), size=rng.randint(1, 9999),
                status=rng.choice([ev.OK, ev.OK, ev.TOOL_ERROR]))
        for i in range(300)
    ]
    write(home, events)
    field = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms", "mean": "mean_ms",
             "payload": "payload_p95_bytes", "tokens": "tokens_p95"}.get(sort, sort)
    values = [r[field] for r in LocalStore(home).tool_table(sort=sort)]
    assert len(values) == 8 and values == sorted(values, reverse=True)


def test_unknown_sort_is_rejected(home: Path) -> None:
    with pytest.raises(ValueError, match="unknown sort 'latency'"):
        LocalStore(home).tool_table(sort="latency")


def test_filters_by_server_tool_and_window(home: Path) -> None:
    write(home, [
        request(NOW - 7200, target="search_files"),
        request(NOW - 60, target="search_files"),
        request(NOW - 30, target="search_issues", server="github"),
        request(NOW - 20, method="prompts/get", target="summarize"),
        request(NOW - 10, method="resources/read", target="file:///{path}"),
    ])
    store = LocalStore(home)
    assert [(r["server"], r["name"]) for r in store.tool_table(server="github")] == [("github", "search_issues")]
    assert {r["server"] for r in store.tool_table(tool="search_*")} == {"files", "github"}
    # a method matches too, as the help says (it used to match nothing: the target was the only key)
    assert [r["name"] for r in store.tool_table(tool="resources/read")] == ["file:///{path}"]
    assert {r["name"] for r in store.tool_table(tool="tools/call")} == {"search_files", "search_issues"}
    for window in (None, TimeWindow(since=NOW - 3600)):  # rollup path and scan path alike
        assert [r["name"] for r in store.tool_table(window, tool="prompts/*")] == ["summarize"]
    assert [r["method"] for r in store.tool_table(tool="file:*")] == ["resources/read"]
    recent = store.tool_table(TimeWindow(since=NOW - 3600), tool="search_files")
    assert recent[0]["calls"] == 1
    old = store.tool_table(TimeWindow(until=NOW - 3600))
    assert [(r["name"], r["calls"]) for r in old] == [("search_files", 1)]


def test_torn_last_line_and_garbage_lines_are_skipped(home: Path) -> None:
    good = [request(NOW - i) for i in range(20)]
    path = write(home, good[:10])
    with open(path, "ab") as f:
        f.write(b"this is not json\n")
        f.write(b'{"hello": "a JSON line that is not an event"}\n')
        f.write(b"\x00\x00\x00\n")
    sink = EventLogSink(home, "b2", max_bytes=1 << 30, max_age=1e9)
    sink.write_batch(good[10:])
    assert sink.path is not None
    with open(sink.path, "ab") as f:  # a writer killed mid-line
        f.write(b'{"event.id":"deadbeef","event.kind":"requ')
    store = LocalStore(home)
    assert sorted(ids(store)) == sorted(e[ev.EVENT_ID] for e in good)
    assert store.tool_table()[0]["calls"] == 20
    sink.close()


def test_live_closed_and_parquet_are_one_view_without_duplicates(home: Path) -> None:
    a = [request(NOW - 100 + i) for i in range(50)]
    b = [request(NOW - 50 + i, instance="bbbb") for i in range(30)]
    c = [request(NOW - 20 + i, instance="cccc") for i in range(7)]
    write(home, a)
    store = LocalStore(home)
    assert store.compact().events == 50  # a -> parquet
    write(home, b, instance="bbbb")  # closed
    write(home, c, instance="cccc", close=False)  # live, this process is its writer
    got = ids(store)
    assert len(got) == len(set(got)) == 87
    assert set(got) == {e[ev.EVENT_ID] for e in a + b + c}
    root = home / "events"
    assert len(list((root / "parquet").glob("*.parquet"))) == 1
    assert len(list((root / "closed").iterdir())) == 1 and len(list((root / "live").iterdir())) == 1


def test_compaction_preserves_exact_event_ids_and_types(home: Path) -> None:
    events = [request(NOW - i, target=f"t{i % 3}", status=random.choice(ev.STATUSES)) for i in range(500)]
    for i in range(0, 500, 100):
        write(home, events[i : i + 100], instance=f"inst{i}")
    live = [request(NOW, instance="live")]
    write(home, live, instance="live", close=False)
    store = LocalStore(home)
    before_rows = sorted(store.events_since(0), key=lambda r: r["event_id"])
    table = store.tool_table()
    result = store.compact()
    assert (result.segments, result.events, len(result.batches)) == (5, 500, 1)
    after_rows = sorted(store.events_since(0), key=lambda r: r["event_id"])
    assert after_rows == before_rows  # every column, including the JSON and list ones
    assert rounded(store.tool_table()) == rounded(table)  # sums in another order: last-bit differences
    assert not list((home / "events" / "closed").iterdir())
    assert len(list((home / "events" / "live").iterdir())) == 1  # its writer (us) is alive
    manifest = json.loads(next((home / "events" / "parquet").glob("*.manifest.json")).read_text())
    assert manifest["events"] == 500 and len(manifest["segments"]) == 5
    assert store.compact().batches == ()  # nothing left to do


def test_dead_writers_live_segment_is_compacted(home: Path) -> None:
    events = [request(NOW - i) for i in range(25)]
    code = (
        "import json, os, sys\n"
        "from mcplens.store.local.writer import EventLogSink\n"
        "events = json.loads(sys.stdin.read())\n"
        f"sink = EventLogSink({str(home)!r}, 'deadbeefcafe', max_bytes=1 << 30, max_age=1e9)\n"
        "sink.write_batch(events)\n"
        "os.write(sink._fd, b'{\"event.id\": \"torn')\n"
        "os._exit(9)  # killed: no close, no rename\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    proc.communicate(json.dumps(events), timeout=60)
    assert proc.returncode == 9
    [seg] = (home / "events" / "live").iterdir()
    assert segment_pid(seg.name) == proc.pid
    store = LocalStore(home)
    assert store.count() == 25
    result = store.compact()
    assert (result.segments, result.events) == (1, 25)
    assert not list((home / "events" / "live").iterdir())
    assert sorted(ids(store)) == sorted(e[ev.EVENT_ID] for e in events)


def test_segment_pid_parses_instance_with_dashes() -> None:
    assert segment_pid("20261123T101500-4242-a1b2-c3d4e5-0001.jsonl") == 4242
    assert segment_pid("garbage.jsonl") is None


def test_a_new_segment_sharing_a_compacted_name_is_still_read(home: Path) -> None:
    """Same second, pid, instance prefix and sequence number: unlikely, but never hide its events."""
    first = [request(NOW - 10 + i) for i in range(5)]
    write(home, first)
    store = LocalStore(home)
    store.compact()
    second = [request(NOW + i) for i in range(3)]
    seg = write(home, second)
    manifest = json.loads(next((home / "events" / "parquet").glob("*.manifest.json")).read_text())
    if seg.name not in manifest["segments"]:  # the clock ticked between the two writes
        seg.rename(seg.with_name(next(iter(manifest["segments"]))))
    assert store.count() == 8
    assert store.compact().events == 3 and store.count() == 8


def test_interrupted_compaction_is_invisible_and_cleaned_up(home: Path) -> None:
    events = [request(NOW - i) for i in range(40)]
    seg = write(home, events)
    store = LocalStore(home)
    backup = seg.with_name("backup")
    shutil.copy(seg, backup)
    store.compact()
    pq = home / "events" / "parquet"
    # crash after the commit, before deleting the sources: the source is back
    shutil.copy(backup, seg)
    # crash before the commit: a Parquet file with no manifest
    shutil.copy(next(pq.glob("*.parquet")), pq / "20990101T000000-1-ffff.parquet")
    backup.unlink()
    assert store.count() == 40
    assert sorted(ids(store)) == sorted(e[ev.EVENT_ID] for e in events)
    result = store.compact()
    assert result.removed == 2 and result.batches == ()
    assert not seg.exists() and store.count() == 40


def test_compaction_returns_quietly_when_another_holds_the_lock(home: Path) -> None:
    write(home, [request(NOW)])
    fd = os.open(home / "events" / "compact.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = LocalStore(home).compact()
    finally:
        os.close(fd)
    assert result.busy and result.batches == ()
    assert len(list((home / "events" / "closed").iterdir())) == 1


def test_reads_during_compaction_never_lose_or_duplicate(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    total = 0
    for i in range(60):
        write(home, [request(NOW - j, instance=f"i{i}") for j in range(50)], instance=f"i{i}")
        total += 50
    seg_size = next((home / "events" / "closed").iterdir()).stat().st_size
    monkeypatch.setattr(compact, "BATCH_MAX_BYTES", seg_size * 10)  # several commits, readers straddle them
    store = LocalStore(home)
    seen: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                rows = store.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")
                seen.append(rows[0]["n"])
                assert rows[0]["n"] == rows[0]["d"] == total
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    def reads_reach(n: int) -> None:  # wait on reads done, not on wall time: the machine may be loaded
        deadline = time.monotonic() + 60
        while len(seen) < n and not errors and time.monotonic() < deadline:
            time.sleep(0.01)

    try:
        reads_reach(3)
        result = store.compact()
        reads_reach(len(seen) + 3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert result.segments == 60 and len(result.batches) >= 5
    assert len(seen) >= 6 and set(seen) == {total}


def test_reads_while_a_writer_rotates_and_compaction_runs(home: Path) -> None:
    """Counts bracket what was written: never below what finished before, never above what started."""
    # Rotates about every 0.3 s, thousands of times more often than the defaults (64 MB / 10 min).
    sink = EventLogSink(home, "w1", max_bytes=512 * 1024, max_age=1e9)
    started = finished = 0
    stop = threading.Event()
    problems: list[str] = []

    def writer() -> None:
        nonlocal started, finished
        while not stop.is_set():
            batch = [request(time.time()) for _ in range(5)]
            started += len(batch)
            sink.write_batch(batch)
            finished += len(batch)
            time.sleep(0.002)

    def compactor() -> None:
        while not stop.wait(0.05):
            LocalStore(home).compact()

    threads = [threading.Thread(target=writer), threading.Thread(target=compactor)]
    for t in threads:
        t.start()
    store = LocalStore(home)
    # at least 3 s of reading, and on until 3 reads and 3 compactions happened (a loaded machine
    # may need longer for them), with a hard deadline
    deadline, give_up = time.monotonic() + 3, time.monotonic() + 60
    reads = 0

    def compactions() -> int:
        return len(list((home / "events" / "parquet").glob("*.manifest.json")))

    try:
        while time.monotonic() < deadline or (
                (reads < 3 or compactions() < 3) and time.monotonic() < give_up):
            lo = finished
            row = store.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
            hi = started
            reads += 1
            if not (lo <= row["n"] <= hi and row["n"] == row["d"]):
                problems.append(f"{lo} <= {row} <= {hi}")
    finally:
        stop.set()
        for t in threads:
            t.join()
        sink.close()
    assert not problems, problems[:3]
    assert reads >= 3 and compactions() >= 3
    assert store.count() == finished


def test_a_file_vanishing_mid_read_is_retried(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home, [request(NOW - i) for i in range(5)])
    store = LocalStore(home)
    real = store.snapshot
    calls = []

    def flaky() -> Snapshot:
        snap = real()
        calls.append(snap)
        if len(calls) == 1:  # listed, then compacted away before DuckDB opened it
            return Snapshot(snap.parquet, [*snap.segments, home / "events" / "closed" / "gone-1-x-0001.jsonl"])
        return snap

    monkeypatch.setattr(store, "snapshot", flaky)
    assert store.count() == 5 and len(calls) == 2


def test_segments_last_written_before_the_window_are_not_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = write(home, [request(NOW - 7200 + i) for i in range(5)], instance="old")
    os.utime(old, (NOW - 7000, NOW - 7000))
    write(home, [request(NOW - 60 + i) for i in range(3)], instance="new")
    read: list[list[Path]] = []
    real = files_module.read_segments_sql
    monkeypatch.setattr(files_module, "read_segments_sql", lambda files: read.append(files) or real(files))
    store = LocalStore(home)
    assert store.tool_table(TimeWindow(since=NOW - 3600))[0]["calls"] == 3
    assert len(store.events_since(NOW - 3600)) == 3
    def has_old(files: list[Path]) -> bool:  # the segment, or the Parquet copy a reader keeps of it
        return any(p.name.startswith(old.name) for p in files)

    assert not any(has_old(files) for files in read) and len(read) == 2
    assert store.tool_table()[0]["calls"] == 8 and has_old(read[-1])


def test_sessions_and_session_events(home: Path) -> None:
    a, b = "5f0c3a1be2d94c7a", "5f0c9e77aa01b2c3"
    events = [
        request(NOW - 50, method="initialize", target=None, session=a),
        request(NOW - 40, target="read_file", session=a),
        request(NOW - 45, target="search_files", session=a, status=ev.TOOL_ERROR),
        request(NOW - 44, target="search_files", session=a, status=ev.CANCELLED),
        request(NOW - 30, method="notifications/cancelled", target=None, session=a, kind="notification"),
        request(NOW - 20, target="write_file", session=b, client=("cursor", "0.9")),
        # no session id (a stateless call nothing stitched, a proxy's protocol error): not a session,
        # neither as its client@instance nor as the instance id
        request(NOW - 10, target="read_file", session=None, instance="stdio0001"),
        health("stdio0001", NOW),
    ]
    random.Random(1).shuffle(events)
    write(home, events)
    store = LocalStore(home)
    rows = {r["session_id"]: r for r in store.sessions()}
    assert list(rows) == [b, a]  # most recently active first
    assert not any("@" in k or "stdio0001" in k for k in rows)
    ra = rows[a]
    assert (ra["client_name"], ra["client_version"], ra["calls"], ra["errors"]) == ("claude-code", "1.2.0", 4, 1)
    assert ra["tools"] == ["read_file", "search_files"]
    assert (ra["first_seen"], ra["last_seen"]) == (pytest.approx(NOW - 50), pytest.approx(NOW - 30))
    assert rows[b]["client_name"] == "cursor" and rows[b]["tools"] == ["write_file"]
    assert len(store.sessions(limit=1)) == 1
    assert [r["session_id"] for r in store.sessions(TimeWindow(since=NOW - 25))] == [b]

    detail = store.session_events("5f0c3a")
    assert [e["time"] for e in detail] == sorted(e["time"] for e in detail)
    assert [e["method"] for e in detail] == ["initialize", "tools/call", "tools/call", "tools/call",
                                             "notifications/cancelled"]
    assert {e["session"] for e in store.session_events("5f0c")} == {a, b}
    assert detail[1]["request_args"] == {"path": 18, "pattern": 7}
    assert store.session_events("stdio0001") == [] and store.session_events("c-7d1e0f") == []


def test_health_is_the_latest_record_per_instance(home: Path) -> None:
    write(home, [
        health("inst-a", NOW - 20, enqueued=10, written=10),
        health("inst-a", NOW - 10, enqueued=30, written=27, dropped=3),
        health("inst-b", NOW - 15, server="github", enqueued=5, written=4, faults=1, write_failures=1),
        request(NOW),
    ])
    rows = {r["instance_id"]: r for r in LocalStore(home).health()}
    assert set(rows) == {"inst-a", "inst-b"}
    assert (rows["inst-a"]["enqueued"], rows["inst-a"]["written"], rows["inst-a"]["dropped"]) == (30, 27, 3)
    assert (rows["inst-b"]["faults"], rows["inst-b"]["write_failures"], rows["inst-b"]["server"]) == (1, 1, "github")
    assert [r["instance_id"] for r in LocalStore(home).health(TimeWindow(since=NOW - 12))] == ["inst-a"]


def test_events_since_returns_the_newest_in_time_order(home: Path) -> None:
    events = [request(NOW - i) for i in range(10)] + [health("x", NOW + 1)]
    write(home, events)
    store = LocalStore(home)
    last3 = store.events_since(0, 3)
    assert [e["time"] for e in last3] == pytest.approx([NOW - 2, NOW - 1, NOW])
    assert len(store.events_since(NOW - 4.5)) == 5
    assert store.count() == 11  # the health record is stored, just not an event to tail


def test_view_columns_are_friendly_unique_and_cover_the_schema() -> None:
    assert len(FIELDS) == len(ev.COLUMNS)
    assert {k for k, _ in FIELDS.values()} == set(ev.COLUMNS)
    for name in ["method", "target", "tool", "status", "error_type", "error_category", "duration_s", "time",
                 "response_size", "response_tokens", "session_id", "client_id", "client_name", "client_version",
                 "server_name", "instance_id", "transport", "protocol_version", "request_id", "kind", "event_id"]:
        assert name in FIELDS
    assert all(n.isidentifier() for n in FIELDS)


def test_parse_time() -> None:
    assert parse_time("15m", now=1000.0) == 100.0
    assert parse_time("2h", now=10_000.0) == 2800.0
    assert parse_time("3d", now=300_000.0) == 300_000.0 - 3 * 86400
    assert parse_time("2026-11-23T10:00:00Z") == 1795428000.0
    assert parse_time("2026-11-23T11:00:00+01:00") == 1795428000.0
    with pytest.raises(ValueError, match="cannot read time 'yesterday'"):
        parse_time("yesterday")
    with pytest.raises(ValueError, match="not after"):
        TimeWindow.parse("1h", "2h")
    assert TimeWindow.parse(None, None) is None


def test_the_capture_side_does_not_import_duckdb() -> None:
    code = (
        "import sys, mcplens.store.local.writer, mcplens.event, mcplens.config, mcplens.store.local, mcplens.cli\n"
        "assert not {'duckdb', '_duckdb'} & set(sys.modules), 'duckdb imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_parquet_segment_reads_as_its_json_lines_do(tmp_path: Path) -> None:
    """A reader's own Parquet segment (the PostgreSQL mirror's tail) gives every event, every column
    typed as the JSON lines give it, to queries, sessions and the tail, beside a JSON segment."""
    import duckdb

    rng = random.Random(5)
    # durations in 1/1024 s: a float sum of them is exact in any order, so the two stores' means (summed
    # by DuckDB in whatever order its scans give) must be equal to the last bit, not merely close
    events = [request(NOW - 900 + i, target=rng.choice(["a", "b"]), session=f"s{i % 7}",
                      status=rng.choice([ev.OK, ev.TOOL_ERROR]), size=rng.randint(1, 9_000),
                      duration=rng.randint(1, 2_048) / 1024) for i in range(300)]
    events.append(health("a1b2c3d4e5f60718", NOW - 1, enqueued=300, written=300))
    as_lines, mixed = tmp_path / "lines", tmp_path / "mixed"
    first = write(as_lines, events[:200], instance="one")
    write(as_lines, events[200:], instance="two")
    mixed_first = write(mixed, events[:200], instance="one")
    write(mixed, events[200:], instance="two")
    as_parquet = mixed_first.with_suffix(files_module.PARQUET_SEGMENT)
    duckdb.sql(f"COPY ({files_module.read_segments_sql([mixed_first])}) TO '{as_parquet}' (FORMAT parquet)")
    mixed_first.unlink()
    assert first.exists() and not mixed_first.exists()
    a, b = LocalStore(as_lines), LocalStore(mixed)
    assert as_parquet in b.snapshot().segments
    sql = "SELECT * FROM events ORDER BY event_id"
    assert b.query(sql) == a.query(sql) and len(a.query(sql)) == len(events)
    assert b.sessions() == a.sessions() and b.tool_table() == a.tool_table()
    assert b.session_events("s3") == a.session_events("s3") and b.events_since(0) == a.events_since(0)
