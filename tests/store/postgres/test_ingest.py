"""The typed COPY ingest and the rollup job: concurrent writers store every event once; ``mcplens db
rollup`` turns closed hours into batches whose reads equal a raw GROUP BY over the stored events,
leaves the open hour to the readers' tail, picks up late events in hours it rolled, and a database
made by an older schema upgrades in place."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.store.postgres import connect, mirror
from mcplens.store.postgres.store import PostgresStore
from mcplens.store.postgres.writer import PostgresWriter
from tests.store import factory
from tests.store.postgres.conftest import Database

HOUR = 3600.0
_CALL = "kind = 'request' AND proxy_direction IS NULL"


def _mixed(rnd: random.Random, n: int, t0: float, server: str) -> list[dict[str, Any]]:
    """Calls over a few hours with every shape the rollups must handle: missing duration or size,
    sub-1 values (bucket 0), errors, methods without a target, proxy records and health records
    (which the rollups must not count)."""
    out = []
    for _ in range(n):
        t = t0 + rnd.uniform(0, 5 * HOUR)
        r = rnd.random()
        e = factory.request(t, target=rnd.choice(("search", "fetch", "store", None)), server=server,
                            method="tools/call" if r < 0.9 else "resources/read",
                            status=rnd.choice((ev.OK,) * 8 + (ev.TOOL_ERROR, ev.TIMEOUT, ev.RATE_LIMITED)),
                            duration=rnd.lognormvariate(-3, 1.5), size=rnd.choice((0, 1, rnd.randint(2, 90_000))))
        if rnd.random() < 0.05:
            e.pop(ev.DURATION)
        if rnd.random() < 0.05:
            e.pop(ev.RESPONSE_SIZE)
            e.pop(ev.RESPONSE_TOKENS)
        if rnd.random() < 0.03:
            e[ev.PROXY_DIRECTION] = "server_to_client"
        out.append(e)
    out += [factory.health(f"{server}-inst", t0 + k * 600, server=server) for k in range(5)]
    return out


def _report_vs_raw(pg: Database, tmp_path: Path, *, now: float | None = None) -> tuple[Any, Any, PostgresStore]:
    """The rollup job run (as the admin), then the reader's per-tool calls and statuses beside a raw
    GROUP BY over the stored events."""
    conn = connect(pg.admin)
    try:
        mirror.roll_up(conn, mirror.mirror_home(conn, tmp_path / "job"), now=now)
        raw = {(r[0], r[1], r[2], r[3]): r[4] for r in conn.execute(
            f"SELECT server_name, method, target, status, count(*) FROM mcplens.events WHERE {_CALL} "
            "GROUP BY 1, 2, 3, 4").fetchall()}
    finally:
        conn.close()
    store = PostgresStore(pg.reader)
    store.exact_up_to = 0  # the rollups' rows, as over millions of events
    got = {(r["server"], r["method"], r["target"], s): n for r in store.tool_table() for s, n in r["statuses"].items()}
    store.close()
    return got, raw, store


def test_concurrent_writers_once_each_and_rolled_up_reads_equal_a_raw_group_by(pg: Database,
                                                                              tmp_path: Path) -> None:
    rnd = random.Random(7)
    t0 = time.time() - 6 * HOUR
    # four writers on the same hours and tools; two of them share a server, and each re-sends a
    # slice of another's batches while it writes (a replay racing the original)
    shares = [_mixed(rnd, 1500, t0, "a" if k < 2 else f"s{k}") for k in range(4)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            w = PostgresWriter(pg.writer, tmp_path / f"w{k}", f"inst-{k}")
            mine, other = shares[k], shares[(k + 1) % 4]
            for i in range(0, len(mine), 250):
                assert w.write_batch(mine[i:i + 250]) == len(mine[i:i + 250])
                assert w.write_batch(other[i + 100:i + 200]) == len(other[i + 100:i + 200])
            w.close()
            assert w.stats["spooled"] == 0 and w.stats["rejected"] == 0, w.stats
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    conn = connect(pg.admin)
    try:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM mcplens.events").fetchone()
    finally:
        conn.close()
    assert total == distinct == sum(len(s) for s in shares), "every event stored exactly once"
    got, raw, store = _report_vs_raw(pg, tmp_path)
    assert raw and got == raw, "the rolled-up report must count what a GROUP BY over the stored calls counts"
    assert store.tail_events < total, "the closed hours came from the rollup job's batches"


def test_a_batch_overlapping_stored_events_adds_only_its_new_rows(pg: Database, tmp_path: Path) -> None:
    rnd = random.Random(3)
    events = _mixed(rnd, 800, time.time() - 6 * HOUR, "files")
    w = PostgresWriter(pg.writer, tmp_path, "inst-overlap")
    assert w.write_batch(events[:500]) == 500
    assert w.write_batch(events[300:]) == len(events) - 300  # 200 already stored, the rest new
    w.close()
    assert w.stats["merged"] == 1, w.stats
    conn = connect(pg.admin)
    try:
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == len(events)
    finally:
        conn.close()
    got, raw, _ = _report_vs_raw(pg, tmp_path)
    assert got == raw


def test_upgrading_a_version_1_database_then_rolling_up(pg_cluster: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """A database made by the first schema (rollups kept by a per-row trigger) upgraded in place to
    the latest: old rows and new writes both reach the reader through the rollup job."""
    from mcplens.store.postgres import schema
    from tests.store.postgres.conftest import READER
    from tests.store.postgres.conftest import Database as Db

    db = Db(pg_cluster, "upgrade_v1")
    pg_cluster.create_db(db.name)
    conn = connect(db.admin)
    try:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        assert schema.upgrade(conn) == [1]
        rnd = random.Random(5)
        old = _mixed(rnd, 600, time.time() - 6 * HOUR, "files")
        cols = schema.columns()
        with conn.cursor() as cur:  # as the first writer did: rows in, the trigger rolls them up
            cur.executemany(f"INSERT INTO mcplens.events ({', '.join(f'{chr(34)}{n}{chr(34)}' for n, _, _ in cols)}) "
                            f"VALUES ({', '.join(['%s'] * len(cols))})",
                            [[_pg(e.get(k)) for _, k, _ in cols] for e in old])
        monkeypatch.undo()
        assert schema.upgrade(conn) == [2, 3]
        schema.grant(conn, READER, "reader")
    finally:
        conn.close()
    w = PostgresWriter(db.admin, tmp_path, "inst-after")
    new = _mixed(rnd, 600, time.time() - 6 * HOUR, "files")
    assert w.write_batch(new) == len(new)
    w.close()
    got, raw, _ = _report_vs_raw(db, tmp_path)
    assert sum(raw.values()) > 1000 and got == raw


def test_rollup_job_closed_hours_only_late_events_and_reruns(pg: Database, tmp_path: Path, monkeypatch: Any) -> None:
    """Hours are rolled once closed (plus the grace); the open hour stays the readers' tail; a run
    with nothing new adds nothing; an event arriving late for a rolled hour is rolled by the next run
    as one more batch of its day, so the reader counts every stored event once. Batches hold whole
    hours, at most ``BATCH_EVENTS`` events unless one hour holds more."""
    monkeypatch.setattr(mirror, "BATCH_EVENTS", 250)
    now = (time.time() // HOUR) * HOUR + 0.5 * HOUR  # mid-hour: the current hour is open
    rnd = random.Random(9)
    events = _mixed(rnd, 900, now - 5.2 * HOUR, "files")
    events = [e for e in events if e[ev.TIME] < now]
    w = PostgresWriter(pg.writer, tmp_path / "w", "inst-job")
    assert w.write_batch(events) == len(events)
    conn = connect(pg.admin)
    try:
        home = mirror.mirror_home(conn, tmp_path / "job")
        first = mirror.roll_up(conn, home, now=now, grace=300)
        closed = (now // HOUR) * HOUR
        assert first["rolled_until"] == closed
        assert first["events"] == sum(1 for e in events if e[ev.TIME] < closed) > 0
        batches = conn.execute("SELECT lo, hi, events FROM mcplens.batches ORDER BY lo").fetchall()
        assert len(batches) >= 3 and all(n <= 250 or hi - lo <= HOUR for lo, hi, n in batches), batches
        assert all(lo % HOUR == 0 and hi % HOUR == 0 for lo, hi, _ in batches), "whole hours"
        assert mirror.roll_up(conn, home, now=now, grace=300)["events"] == 0, "a re-run adds nothing"
        late = [factory.request(closed - 2 * HOUR + k, target="search", server="files") for k in range(3)]
        assert w.write_batch(late) == 3  # a spool replayed after the hour was rolled
        again = mirror.roll_up(conn, home, now=now, grace=300)
        assert again["events"] == 3 and again["late"] == 3, again
        assert mirror.roll_up(conn, home, now=now, grace=300)["events"] == 0
        # batches rolled up by another mcplens version (store/rollup.py VERSION) are rolled up again
        conn.execute("UPDATE mcplens.batches SET manifest = jsonb_set(manifest, '{rollups,version}', '1')")
        redo = mirror.roll_up(conn, home, now=now, grace=300)
        assert redo["rerolled"] == len(batches) + 1 and redo["events"] == 0, redo
        assert not conn.execute("SELECT name FROM mcplens.batches WHERE (manifest #>> '{rollups,version}')::int = 1"
                                ).fetchall()
    finally:
        conn.close()
        w.close()
    store = PostgresStore(pg.reader)
    try:
        calls = sum(r["calls"] for r in store.tool_table())
        assert store.tail_events == sum(1 for e in events if e[ev.TIME] >= closed)
        assert calls == sum(1 for e in [*events, *late] if e[ev.EVENT_KIND] == "request"
                            and not e.get(ev.PROXY_DIRECTION))
    finally:
        store.close()


def _pg(v: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(v) if isinstance(v, dict) else v


def test_reader_tail_new_and_late_events_of_the_open_hour(pg: Database, tmp_path: Path, monkeypatch: Any) -> None:
    """What no batch holds yet is read from ``events``: a new event shows at the next refresh, one that
    arrives late for the tail's older part once that part is checked again, and nothing twice, also
    with a second reader process sharing the mirror (the dashboard and a CLI command)."""
    from mcplens.store.postgres import store as pg_store

    now = time.time()
    w = PostgresWriter(pg.writer, tmp_path / "w", "inst-tail")
    assert w.write_batch([factory.request(now - 1000 + k, target="search") for k in range(5)]) == 5
    reader = PostgresStore(pg.reader)
    try:
        assert sum(r["calls"] for r in reader.tool_table()) == 5
        monkeypatch.setattr(pg_store, "REFRESH", 0.0)
        assert w.write_batch([factory.request(time.time(), target="fetch")]) == 1  # the recent part
        assert {r["target"]: r["calls"] for r in reader.tool_table()} == {"search": 5, "fetch": 1}
        assert w.write_batch([factory.request(now - 900, target="store")]) == 1  # late, in the older part
        monkeypatch.setattr(pg_store, "OLDER_CHECK", 0.0)
        assert {r["target"]: r["calls"] for r in reader.tool_table()} == {"search": 5, "fetch": 1, "store": 1}
        assert reader.tail_events == 7
        # a second reader sharing the mirror, whose tail is cut elsewhere: neither sees the other's tail
        monkeypatch.setattr(pg_store, "RECENT", 5000.0)
        other = PostgresStore(pg.reader)
        assert {r["target"]: r["calls"] for r in other.tool_table()} == {"search": 5, "fetch": 1, "store": 1}
        other.close()
        monkeypatch.setattr(pg_store, "OLDER_CHECK", 3600.0)
        assert {r["target"]: r["calls"] for r in reader.tool_table()} == {"search": 5, "fetch": 1, "store": 1}
    finally:
        reader.close()
        w.close()
