"""The fleet store: ingest with 8 writers, then the per-tool table and the insights, PostgreSQL vs local.

    .venv/bin/python bench/postgres.py [--events 1000000] [--grow 10000000] [--writers 8] [--record]

One throwaway cluster (tests/store/postgres/cluster.py: initdb in a temp dir, 127.0.0.1, fsync ON,
synchronous_commit on: the durable configuration) on the same 2 cores as everything else.

1. **Ingest**: ``--writers`` processes each take ``events / writers`` pre-built events (6 tools, 2
   servers, ~2% errors, lognormal latencies, sessions of 10 calls; built before the clock starts) and
   push them through the real writer (``PostgresWriter.write_batch``, 1,000 per batch: JSON encode,
   COPY, INSERT ... ON CONFLICT, rollup trigger, commit), all at once. The same processes then write
   the same events through the local segment writer (``EventLogSink``) for the baseline.
2. **Grow** (optional): the table is grown to ``--grow`` rows by copying what was ingested with
   shifted times and fresh ids inside PostgreSQL (``INSERT ... SELECT``, the rollup trigger runs on
   each copy as on any insert): ingesting 10M through the writers would take minutes and measures
   nothing new.
3. **Reads** (best of 3): the per-tool table over the whole store and over the last 7 days, and all
   insights over the last day and over the whole store; the local store over the ingested events
   (compacted to Parquet with its rollups) in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcplens import event as ev  # noqa: E402

TOOLS = ("search_docs", "query_orders", "summarize", "create_ticket", "translate", "post_comment")


def make_events(n: int, seed: int, t0: float, span: float) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    inst = f"{seed:016x}"
    out = []
    for i in range(n):
        t = t0 + span * i / n + rnd.random()
        status = ev.OK if rnd.random() > 0.02 else rnd.choice((ev.TOOL_ERROR, ev.TIMEOUT, ev.EXCEPTION))
        size = int(rnd.uniform(300, 4000))
        tool = rnd.choice(TOOLS)
        out.append({
            ev.EVENT_ID: f"{rnd.getrandbits(128):032x}", ev.EVENT_KIND: "request", ev.SCHEMA: 1, ev.TIME: t,
            ev.DURATION: rnd.lognormvariate(math.log(0.05), 0.7), ev.METHOD: "tools/call", ev.TARGET: tool,
            ev.TOOL_NAME: tool, ev.OPERATION: "execute_tool", ev.ARGS: {"query": 40, "limit": 2},
            ev.REQUEST_SIZE: 180, ev.REQUEST_ID: str(i), ev.STATUS: status, ev.RESPONSE_SIZE: size,
            ev.RESPONSE_TOKENS: math.ceil(size / 4), ev.RESPONSE_ITEMS: 1, ev.RESPONSE_TYPES: ["text"],
            ev.SESSION_ID: f"{seed}-{i // 10}", ev.CLIENT_ID: f"c{rnd.randrange(20)}",
            ev.CLIENT_NAME: f"agent-{rnd.randrange(20)}", ev.CLIENT_VERSION: "1.0", ev.TRANSPORT: "tcp",
            ev.PROTOCOL_VERSION: "2025-11-25", ev.SERVER_NAME: "fleet" if seed % 2 else "fleet-b",
            ev.SERVER_VERSION: "1.0", ev.INSTANCE_ID: inst, ev.CAPTURE: "sdk", ev.PID: 1000 + seed,
        })
    return out


def writer_main(args: argparse.Namespace) -> None:
    """One writer process: build its share, wait for the go file, write it all, print the timings."""
    from mcplens.store.local.writer import EventLogSink
    from mcplens.store.postgres.writer import PostgresWriter

    events = make_events(args.n, args.seed, args.t0, args.span)
    go = Path(args.go)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    out = {}
    w = PostgresWriter(args.url, Path(args.home), f"bench{args.seed}")
    t = time.perf_counter()
    for i in range(0, len(events), 1000):
        w.write_batch(events[i:i + 1000])
    w.close()
    out["postgres_s"] = time.perf_counter() - t
    out["stats"] = w.stats
    sink = EventLogSink(Path(args.home) / "local", f"bench{args.seed}", max_bytes=64 << 20, max_age=600)
    t = time.perf_counter()
    for i in range(0, len(events), 1000):
        sink.write_batch(events[i:i + 1000])
    sink.close()
    out["local_s"] = time.perf_counter() - t
    print(json.dumps(out), flush=True)


def best(fn: Any, rounds: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--grow", type=int, default=0, help="grow the table to this many rows for the reads")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--breakdown", type=int, default=0,
                    help="only: one writer, N events, with/without the rollup trigger and indexes (where time goes)")
    ap.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url"), ap.add_argument("--home"), ap.add_argument("--go")
    ap.add_argument("--n", type=int), ap.add_argument("--seed", type=int)
    ap.add_argument("--t0", type=float), ap.add_argument("--span", type=float)
    args = ap.parse_args()
    if args.writer:
        writer_main(args)
        return

    from tests.store.postgres.cluster import Cluster

    from mcplens.analysis.core import insights
    from mcplens.store.base import TimeWindow
    from mcplens.store.local.reader import LocalStore
    from mcplens.store.postgres import connect, schema
    from mcplens.store.postgres.store import PostgresStore

    if args.breakdown:
        breakdown(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="mcplens-bench-pg-"))
    cluster = Cluster(settings={"fsync": "on", "full_page_writes": "on",
                                            "shared_buffers": "512MB", "max_wal_size": "4GB"}).init().start()
    lines = []
    try:
        url = cluster.create_db("bench")
        conn = connect(url)
        schema.upgrade(conn)
        now = time.time()
        span = 7 * 86400.0
        t0 = now - span
        per = args.events // args.writers
        go = tmp / "go"
        procs = [subprocess.Popen([sys.executable, __file__, "--writer", "--url", url, "--home", str(tmp / f"w{k}"),
                                   "--go", str(go), "--n", str(per), "--seed", str(k), "--t0", str(t0),
                                   "--span", str(span)], stdout=subprocess.PIPE, text=True)
                 for k in range(args.writers)]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        t = time.perf_counter()
        go.touch()
        results = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
        for p in procs:
            p.wait()
        wall = time.perf_counter() - t
        pg_wall = max(r["postgres_s"] for r in results)
        local_wall = max(r["local_s"] for r in results)
        n = per * args.writers
        stored = conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0]
        spooled = sum(r["stats"]["spooled"] for r in results)
        lines.append(f"ingest, {args.writers} writer processes x {per:,} events, 1,000 per batch: PostgreSQL "
                     f"{n / pg_wall:,.0f} events/s ({pg_wall:.1f} s, {stored:,} rows stored, {spooled} spooled); "
                     f"local segment writer {n / local_wall:,.0f} events/s ({local_wall:.1f} s); "
                     f"whole run {wall:.1f} s")
        print(lines[-1], flush=True)

        # the local store: the same events, compacted (Parquet + rollups), as `mcplens compact` leaves them
        local_home = tmp / "localstore"
        (local_home / "events" / "closed").mkdir(parents=True)
        for k in range(args.writers):
            for f in (tmp / f"w{k}" / "local" / "events" / "closed").glob("*.jsonl"):
                f.rename(local_home / "events" / "closed" / f.name)
        t = time.perf_counter()
        LocalStore(local_home).compact()
        compact_s = time.perf_counter() - t
        local = LocalStore(local_home)
        pgs = PostgresStore(url)
        week = TimeWindow(now - 7 * 86400, None)
        day = now - 86400
        for label, fn in (
            ("per-tool table, whole store", lambda: pgs.tool_table()),
            ("per-tool table, last 7 days", lambda: pgs.tool_table(week)),
            ("insights, last day", lambda: insights(pgs, since=day)),
        ):
            lt, _ = best(lambda fn=fn, label=label: _local(local, label, week, day, insights))
            pt, _ = best(fn)
            lines.append(f"{label} over {stored:,} events: PostgreSQL {pt:.3f} s, local {lt:.3f} s")
            print(lines[-1], flush=True)
        it, _ = best(lambda: insights(pgs), rounds=1)
        lt, _ = best(lambda: insights(local), rounds=1)
        lines.append(f"insights, whole store ({stored:,} events): PostgreSQL {it:.2f} s (window loaded into DuckDB), "
                     f"local {lt:.2f} s (compacted in {compact_s:.1f} s)")
        print(lines[-1], flush=True)

        if args.grow > stored:
            t = time.perf_counter()
            base = stored
            copy = 1
            cols = ", ".join(f'"{c}"' for c, _, _ in schema.columns() if c not in ("event_id", "time", "session_id"))
            while stored < args.grow:
                # shift back by whole weeks into partitions made for them; new ids, new sessions
                shift = copy * span
                days = sorted({int((t0 - shift) // 86400) + d for d in range(9)})
                conn.execute("SELECT mcplens.ensure_partitions(%s)", (days,))
                take = min(base, args.grow - stored)
                conn.execute(f"INSERT INTO mcplens.events (event_id, time, session_id, {cols}) "
                             f"SELECT event_id || '-{copy}', time - {shift}, session_id || '-{copy}', {cols} "
                             f"FROM mcplens.events WHERE time >= {t0} LIMIT {take}")
                stored += take
                copy += 1
            grow_s = time.perf_counter() - t
            conn.execute("ANALYZE mcplens.events")
            lines.append(f"grown to {stored:,} rows in PostgreSQL in {grow_s:.0f} s "
                         "(INSERT ... SELECT of shifted copies)")
            print(lines[-1], flush=True)
            for label, fn in (
                ("per-tool table, whole store", lambda: pgs.tool_table()),
                ("per-tool table, last 7 days", lambda: pgs.tool_table(week)),
                ("insights, last day", lambda: insights(pgs, since=day)),
            ):
                pt, _ = best(fn)
                lines.append(f"{label} over {stored:,} events: PostgreSQL {pt:.3f} s")
                print(lines[-1], flush=True)
        conn.close()
        pgs.close()
    finally:
        cluster.destroy()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n## {time.strftime('%Y-%m-%d', time.gmtime())} fleet: PostgreSQL store (`bench/postgres.py "
                    f"--events {args.events} --grow {args.grow} --writers {args.writers}`)\n\n"
                    f"Machine: {platform.machine()} {os.cpu_count()} cores (2-core python kind), SHARED with four "
                    "other "
                    "engineers' tests and benchmarks at the time: figures are noisy, ratios within one run matter. "
                    "PostgreSQL 15 on the same cores, fsync and synchronous_commit on.\n\n"
                    + "".join(f"- {x}\n" for x in lines))


def breakdown(args: argparse.Namespace) -> None:
    """One writer process, the same events each time into a fresh database, rounds interleaved."""
    from tests.store.postgres.cluster import Cluster

    from mcplens.store.local.writer import EventLogSink
    from mcplens.store.postgres import connect, schema
    from mcplens.store.postgres.writer import PostgresWriter

    variants = {
        "full (indexes + rollup trigger)": [],
        "no rollup trigger": ["ALTER TABLE mcplens.events DISABLE TRIGGER roll_up"],
        "no trigger, no session index": ["ALTER TABLE mcplens.events DISABLE TRIGGER roll_up",
                                         "DROP INDEX mcplens.events_session"],
    }
    cluster = Cluster(settings={"fsync": "on", "full_page_writes": "on"}).init().start()
    tmp = Path(tempfile.mkdtemp(prefix="mcplens-bench-pgb-"))
    res: dict[str, list[float]] = {k: [] for k in [*variants, "local segment writer"]}
    now = time.time()
    events = make_events(args.breakdown, 1, now - 86400, 86400)
    try:
        k = 0
        for _ in range(3):
            for name, sqls in variants.items():
                k += 1
                url = cluster.create_db(f"b{k}")
                conn = connect(url)
                schema.upgrade(conn)
                for q in sqls:
                    conn.execute(q)
                w = PostgresWriter(url, tmp / f"h{k}", "bd")
                t = time.perf_counter()
                for i in range(0, len(events), 1000):
                    w.write_batch(events[i:i + 1000])
                res[name].append(len(events) / (time.perf_counter() - t))
                w.close()
                conn.close()
            sink = EventLogSink(tmp / f"l{k}", "bd", max_bytes=1 << 30, max_age=600)
            t = time.perf_counter()
            for i in range(0, len(events), 1000):
                sink.write_batch(events[i:i + 1000])
            res["local segment writer"].append(len(events) / (time.perf_counter() - t))
            sink.close()
    finally:
        cluster.destroy()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"one writer, {args.breakdown:,} events, best of 3 interleaved: " + "; ".join(
        f"{name} {max(v):,.0f} events/s" for name, v in res.items())]
    print(lines[0])
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n`bench/postgres.py --breakdown {args.breakdown}` (same day, same shared machine): {lines[0]}\n")


def _local(store: Any, label: str, week: Any, day: float, insights: Any) -> Any:
    if label.startswith("per-tool table, whole"):
        return store.tool_table()
    if label.startswith("per-tool table, last 7"):
        return store.tool_table(week)
    return insights(store, since=day)


if __name__ == "__main__":
    main()
