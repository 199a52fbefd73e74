"""The PostgreSQL writer: a replay never doubles, nothing is lost while the server is unreachable,
one bad event does not block its batch, and a replayed batch counts each event once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.store.postgres import connect
from mcplens.store.postgres.writer import _COPY, PostgresWriter, spool_home
from tests.conftest import free_port, poll
from tests.store import factory
from tests.store.postgres.conftest import Database


def _count(pg: Database, sql: str = "SELECT count(*) FROM mcplens.events") -> int:
    conn = connect(pg.admin)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


def test_a_batch_sent_twice_is_stored_once(pg: Database, tmp_path: Path) -> None:
    now = time.time()
    batch = [factory.request(now + i / 10, status=ev.OK if i % 7 else ev.TOOL_ERROR) for i in range(500)]
    w = PostgresWriter(pg.writer, tmp_path, "inst-twice")
    assert w.write_batch(batch) == 500
    assert w.write_batch(batch[100:300]) == 200  # as a replay after a commit whose answer was lost
    w.close()
    assert _count(pg) == 500
    assert w.stats["merged"] == 1, w.stats  # the second went through the staging table
    assert _count(pg, "SELECT count(DISTINCT event_id) FROM mcplens.events WHERE status = 'tool_error'") == sum(
        1 for e in batch if e[ev.STATUS] == ev.TOOL_ERROR)


def test_unreachable_server_spools_then_the_next_writer_replays_in_order(pg: Database, tmp_path: Path) -> None:
    dead = pg.writer.replace(f":{pg.cluster.port}/", f":{free_port()}/")  # nothing listens there
    now = time.time()
    events = [factory.request(now + i / 100) for i in range(3000)]
    w = PostgresWriter(dead, tmp_path, "inst-down")
    started = time.monotonic()
    for i in range(0, 3000, 300):
        assert w.write_batch(events[i:i + 300]) == 300  # spooled: counted as written, nothing raised
    w.close()
    assert time.monotonic() - started < 10, "an unreachable server must not stall the writer thread"
    assert w.stats["spooled"] == 3000 and w.stats["sent"] == 0
    assert _count(pg) == 0
    spooled = list((spool_home(tmp_path) / "events").rglob("*.jsonl"))
    assert spooled, "the batches wait on disk"
    # the next process sharing the home (or `mcplens db replay`) sends them, then the new batch after them
    w2 = PostgresWriter(pg.writer, tmp_path, "inst-next")
    later = [factory.request(now + 100 + i) for i in range(10)]
    assert w2.write_batch(later) == 10
    w2.close()
    assert _count(pg) == 3010
    # the new batch queued behind the spool (order kept) and went out with it
    assert w2.stats["replayed"] == 3010 and w2.stats["spooled"] == 10 and w2.stats["sent"] == 0
    assert not list((spool_home(tmp_path) / "events").rglob("*.jsonl")), "replayed segments are removed"


def test_an_event_the_database_refuses_is_dropped_alone_and_counted(pg: Database, tmp_path: Path) -> None:
    now = time.time()
    batch = [factory.request(now + i) for i in range(64)]
    batch[37][ev.RESPONSE_SIZE] = "not-a-number"  # a capture bug: wrong type for a bigint column
    w = PostgresWriter(pg.writer, tmp_path, "inst-bad")
    assert w.write_batch(batch) == 64
    w.close()
    assert w.stats["rejected"] == 1
    assert _count(pg) == 63
    assert not list((spool_home(tmp_path) / "events").rglob("*.jsonl")), "a refused event is not retried forever"


def test_a_batch_the_server_rolls_back_to_break_a_deadlock_is_sent_again_not_spooled(
        pg: Database, tmp_path: Path) -> None:
    """A real deadlock: another session holds event B uncommitted, the writer's COPY of [A, B]
    stores A and waits on B, then the other session inserts A and waits on the writer. PostgreSQL
    rolls the writer's COPY back (its deadlock check runs first: the other session's waits 30 s);
    the writer sends the batch again and, finding both ids stored, merges: nothing spooled."""
    now = time.time()
    a, b = factory.request(now), factory.request(now + 1)
    other = PostgresWriter(pg.admin, tmp_path / "other", "inst-other")
    conn = other._connection()
    conn.execute("SET deadlock_timeout = '30s'")
    other._prepare(conn, [b])  # the day's partition, committed
    conn.autocommit = False
    other._copy(conn, _COPY, [b], stage=False)  # B, uncommitted

    w = PostgresWriter(pg.writer, tmp_path / "w", "inst-racing")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(w.write_batch([a, b])))
    t.start()
    poll(lambda: _count(pg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'mcplens-writer' AND wait_event_type = 'Lock'") == 1)
    other._copy(conn, _COPY, [a], stage=False)  # waits on the writer until its COPY is rolled back
    conn.commit()
    t.join(timeout=30)
    w.close()
    other.close()
    assert result == [2]
    assert w.stats["retried"] >= 1 and w.stats["spooled"] == 0 and w.stats["failures"] == 0, w.stats
    assert _count(pg) == 2
    assert not list((spool_home(tmp_path / "w") / "events").rglob("*.jsonl"))


def test_db_replay_command_pushes_a_spool_left_behind(pg: Database, tmp_path: Path) -> None:
    from mcplens.cli import main

    dead = pg.writer.replace(f":{pg.cluster.port}/", f":{free_port()}/")
    w = PostgresWriter(dead, tmp_path, "inst-left")
    assert w.write_batch([factory.request(time.time() + i) for i in range(20)]) == 20
    w.close()
    assert main(["db", "replay", "--home", str(tmp_path), "--store", pg.writer]) == 0
    assert _count(pg) == 20


def test_health_records_carry_the_writer_counters(pg: Database, tmp_path: Path,
                                                  monkeypatch: Any) -> None:
    """A real server instrumented with a PostgreSQL store that is down: the calls succeed, the
    health records say how many events were spooled, and once replayed they are in the database."""
    import anyio
    import mcp

    import mcplens
    from tests.servers import sdk_server

    home = tmp_path / "home"
    monkeypatch.setenv("MCPLENS_HOME", str(home))
    dead = pg.writer.replace(f":{pg.cluster.port}/", f":{free_port()}/")
    server = sdk_server.build()
    inst = mcplens.instrument(server, store=dead, flush_interval=0.05)

    async def calls() -> list[Any]:
        async with mcp.Client(server, mode="legacy") as client:
            out = [await client.call_tool("add", {"a": 0, "b": 1})]
            # the first batch (with the first health record) spooled before the other calls are made:
            # else all of them can share one batch, and its record is the only one
            poll(lambda: inst.pipeline.counters["written"] > 0)
            return out + [await client.call_tool("add", {"a": i, "b": 1}) for i in range(1, 12)]

    results = anyio.run(calls)
    assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(12)]
    inst.pipeline.close()  # as at exit: the last health record, then the writer closes
    w = PostgresWriter(pg.writer, home, "inst-replayer")
    assert w.replay(30.0)
    w.close()
    rows = _rows(pg, "SELECT health_spooled, health_sent, health_replayed FROM mcplens.events "
                     "WHERE kind = 'mcplens.health' ORDER BY time")
    assert rows, "the health records were spooled and replayed too"
    spooled = [r[0] for r in rows]
    assert all(isinstance(n, int) for n in spooled) and spooled == sorted(spooled)
    # a record carries the counters as they stood before its own batch went out, so the last one
    # counts what earlier batches spooled: some of the calls, never more than was replayed
    total = _count(pg, "SELECT count(*) FROM mcplens.events")
    assert 0 < spooled[-1] < total, (rows, total)
    assert all(r[1] == 0 and r[2] == 0 for r in rows), "nothing reached the database directly"
    assert _count(pg, "SELECT count(*) FROM mcplens.events WHERE method = 'tools/call'") == 12


def _rows(pg: Database, sql: str) -> list[Any]:
    conn = connect(pg.admin)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()
