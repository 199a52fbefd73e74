"""The typed COPY ingest: rollup deltas added per batch by concurrent writers equal a raw GROUP BY
over the events they stored, and a batch overlapping what is stored counts only its new rows."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens import histogram
from mcplens.store.postgres import connect
from mcplens.store.postgres.schema import HOUR, MEASURES
from mcplens.store.postgres.writer import PostgresWriter
from tests.store import factory
from tests.store.postgres.conftest import Database

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


def _rollups_vs_raw(pg: Database) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    conn = connect(pg.admin)
    try:
        rolled = conn.execute(
            "SELECT hour, server, method, target, status, calls, dur_n, round(dur_sum::numeric, 6), size_max "
            "FROM mcplens.rollup_calls ORDER BY 1, 2, 3, 4, 5").fetchall()
        raw = conn.execute(
            f"SELECT floor(time / {HOUR}) * {HOUR}, server_name, method, target, status, count(*), "
            f"count(duration_s), round(coalesce(sum(duration_s), 0)::numeric, 6), max(response_size) "
            f"FROM mcplens.events WHERE {_CALL} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5").fetchall()
        hist = conn.execute("SELECT hour, server, method, target, measure::text, idx, n FROM mcplens.rollup_hist "
                            "ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
        raw_hist = conn.execute(" UNION ALL ".join(
            f"SELECT floor(time / {HOUR}) * {HOUR} AS h, server_name AS s, method AS m, target AS t, "
            f"'{m}' AS measure, {histogram.index_sql(expr)} AS idx, count(*) AS n FROM mcplens.events "
            f"WHERE {_CALL} AND {histogram.index_sql(expr)} IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6"
            for m, expr in MEASURES.items()) + " ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
        return rolled, raw, hist, raw_hist
    finally:
        conn.close()


def test_concurrent_writers_rollups_equal_a_raw_group_by(pg: Database, tmp_path: Path) -> None:
    rnd = random.Random(7)
    t0 = time.time() - 6 * HOUR
    # four writers on the same hours and tools (their upserts meet on the same rollup rows); two
    # of them share a server, and each re-sends a slice of another's batches while it writes (a
    # replay racing the original)
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
    rolled, raw, hist, raw_hist = _rollups_vs_raw(pg)
    assert raw and raw_hist
    assert rolled == raw, "rollup_calls must equal a GROUP BY over the stored calls"
    assert hist == raw_hist, "rollup_hist must equal the histogram of the stored calls"


def test_a_batch_overlapping_stored_events_adds_only_its_new_rows(pg: Database, tmp_path: Path) -> None:
    rnd = random.Random(3)
    events = _mixed(rnd, 800, time.time() - 6 * HOUR, "files")
    w = PostgresWriter(pg.writer, tmp_path, "inst-overlap")
    assert w.write_batch(events[:500]) == 500
    assert w.write_batch(events[300:]) == len(events) - 300  # 200 already stored, the rest new
    w.close()
    assert w.stats["merged"] == 1, w.stats
    rolled, raw, hist, raw_hist = _rollups_vs_raw(pg)
    conn = connect(pg.admin)
    try:
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == len(events)
    finally:
        conn.close()
    assert rolled == raw
    assert hist == raw_hist


def test_upgrading_a_version_1_database_keeps_its_rollups_exact(pg_cluster: Any, tmp_path: Path,
                                                                monkeypatch: Any) -> None:
    """A database made by the first schema (rollups kept by a per-row trigger, one histogram row per
    bucket) upgraded in place: the histograms move to the new shape and later writes add to them."""
    from mcplens.store.postgres import schema
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
        assert schema.upgrade(conn) == [2]
    finally:
        conn.close()
    w = PostgresWriter(db.admin, tmp_path, "inst-after")
    new = _mixed(rnd, 600, time.time() - 6 * HOUR, "files")
    assert w.write_batch(new) == len(new)
    w.close()
    rolled, raw, hist, raw_hist = _rollups_vs_raw(db)
    assert len(raw) > 10 and rolled == raw
    assert hist == raw_hist


def _pg(v: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(v) if isinstance(v, dict) else v
