"""The fleet store: ingest with 8 writers, then the reads, PostgreSQL vs the local store.

    .venv/bin/python bench/postgres.py [--events 1000000] [--writers 8] [--rounds 2] [--baseline-ref REF] [--record]
    .venv/bin/python bench/postgres.py --grown-dir DIR --events 240000 --grow 10000000 [--record]
    .venv/bin/python bench/postgres.py --breakdown 30000 [--record]

One throwaway cluster (tests/store/postgres/cluster.py: initdb in a temp dir, 127.0.0.1, fsync ON,
synchronous_commit on: the durable configuration) on the same 2 cores as everything else.

1. **Ingest**: ``--writers`` processes each take ``events / writers`` pre-built events (6 tools, 2
   servers, ~2% errors, lognormal latencies, sessions of 10 calls; built before the clock starts) and
   push them through the real writer (``PostgresWriter.write_batch``, 1,000 per batch: one binary
   COPY each), all at once. The same processes then write the same events through the local segment
   writer (``EventLogSink``) for the baseline. ``--baseline-ref`` interleaves another git ref's
   writer and schema (before/after in one run).
2. **Reads at scale** (``--grown-dir``): a kept cluster grown in SQL to ``--grow`` events over 7 days
   (shifted copies: ingesting 10M through the writers would take minutes and measure nothing new),
   ``mcplens db rollup`` over it (timed), then each read best of 3 through ``PostgresStore`` and,
   interleaved, through the local store over the same batches (the reader's mirror directory).
3. **Breakdown**: one writer, variants interleaved: where the database's CPU per event goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
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
    import psycopg  # noqa: F401 - imported before the clock starts (the writer imports it on first connect)

    from mcplens.store.local.writer import EventLogSink
    from mcplens.store.postgres.writer import PostgresWriter

    events = make_events(args.n, args.seed, args.t0, args.span)
    go = Path(args.go)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    out: dict[str, Any] = {}
    w = PostgresWriter(args.url, Path(args.home), f"bench{args.seed}")
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(events), 1000):
        w.write_batch(events[i:i + 1000])
    w.close()
    out["postgres_s"], out["postgres_cpu"] = time.perf_counter() - t, time.process_time() - c
    out["stats"] = w.stats
    if args.local:
        sink = EventLogSink(Path(args.home) / "local", f"bench{args.seed}", max_bytes=64 << 20, max_age=600)
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, len(events), 1000):
            sink.write_batch(events[i:i + 1000])
        sink.close()
        out["local_s"], out["local_cpu"] = time.perf_counter() - t, time.process_time() - c
    print(json.dumps(out), flush=True)


def best(fn: Any, rounds: int = 3) -> tuple[float, list[float]]:
    """The best wall time of ``rounds`` calls, and every call's (the first is the coldest)."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


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
    ap.add_argument("--local", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-ref", default="",
                    help="also ingest with this git ref's src/ (its schema and writer), interleaved: before/after")
    ap.add_argument("--rounds", type=int, default=1, help="ingest rounds (each contender once per round)")
    ap.add_argument("--ingest-only", action="store_true", help="stop after the ingest rounds")
    ap.add_argument("--rollup-again", action="store_true",
                    help="with --grown-dir: drop the stored batches and run the rollup job again (timed)")
    ap.add_argument("--grown-dir", type=Path,
                    help="reads at scale: a cluster kept in this directory holding --grow events over 7 days "
                         "(made on the first run: --events through the writers, then grown in SQL; reused after)")
    args = ap.parse_args()
    if args.writer:
        writer_main(args)
        return

    from tests.store.postgres.cluster import Cluster

    from mcplens.analysis.run import insights
    from mcplens.store.base import TimeWindow
    from mcplens.store.local.reader import LocalStore
    from mcplens.store.postgres import connect
    from mcplens.store.postgres.store import PostgresStore

    if args.breakdown:
        breakdown(args)
        return
    if args.grown_dir:
        grown(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="mcplens-bench-pg-"))
    cluster = Cluster(settings={"fsync": "on", "full_page_writes": "on",
                                            "shared_buffers": "512MB", "max_wal_size": "4GB"}).init().start()
    lines = []
    try:
        now = time.time()
        span = 7 * 86400.0
        t0 = now - span
        per = args.events // args.writers
        n = per * args.writers
        contenders = {"this branch": None}
        if args.baseline_ref:
            contenders = {f"{args.baseline_ref} (before)": _extract(args.baseline_ref, tmp), "this branch": None}
        url = ""
        for r in range(args.rounds):
            for label, src in contenders.items():
                last = r == args.rounds - 1 and src is None
                url = cluster.create_db(f"bench_{r}_{'base' if src else 'new'}")
                _upgrade(url, src)
                home = tmp / f"run{r}{'b' if src else 'n'}"
                res = ingest(cluster, url, home, src, args, per, t0, span, local=last)
                lines.append(f"ingest ({label}, round {r + 1}), {args.writers} writer processes x {per:,} events, "
                             f"1,000 per batch: PostgreSQL {n / res['wall']:,.0f} events/s ({res['wall']:.1f} s, "
                             f"{res['stored']:,} rows stored, {res['spooled']} spooled); CPU per event: writers "
                             f"{res['writer_cpu'] / n * 1e6:.1f} us + PostgreSQL {res['pg_cpu'] / n * 1e6:.1f} us = "
                             f"{(res['writer_cpu'] + res['pg_cpu']) / n * 1e6:.1f} us")
                if last:
                    lines[-1] += (f"; local segment writer (same processes, after) {n / res['local_wall']:,.0f} "
                                  f"events/s, {res['local_cpu'] / n * 1e6:.1f} us CPU per event")
                    ingest_home = home
                print(lines[-1], flush=True)
        if not args.ingest_only:
            from mcplens.store.postgres import mirror

            conn = connect(url)
            t = time.perf_counter()
            job = mirror.roll_up(conn, mirror.mirror_home(conn, tmp / "job"), now=time.time())
            lines.append(f"`mcplens db rollup` over the ingested events: {time.perf_counter() - t:.1f} s, "
                         f"{job['events']:,} events rolled up (the open hour stays the readers' tail)")
            print(lines[-1], flush=True)
            stored = conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0]

            # the local store: the same events, compacted (Parquet + rollups), as `mcplens compact` leaves them
            local_home = tmp / "localstore"
            (local_home / "events" / "closed").mkdir(parents=True)
            for k in range(args.writers):
                for f in (ingest_home / f"w{k}" / "local" / "events" / "closed").glob("*.jsonl"):
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
            lines.append(f"insights, whole store ({stored:,} events): PostgreSQL {it:.2f} s, "
                         f"local {lt:.2f} s (compacted in {compact_s:.1f} s)")
            print(lines[-1], flush=True)

            conn.close()
            pgs.close()
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            argv = " ".join(a for a in sys.argv[1:] if a != "--record")
            f.write(f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC fleet: PostgreSQL store "
                    f"(`bench/postgres.py {argv}`)\n\n"
                    f"Machine: {platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
                    "at the end (other engineers' work shares the cores: wall-clock rates move with it, CPU per "
                    "event much less). PostgreSQL on the same cores, fsync and synchronous_commit on.\n\n"
                    + "".join(f"- {x}\n" for x in lines))


def grow_in_sql(conn: Any, target: int, t0: float, span: float) -> int:
    """Grow ``events`` to ``target`` rows with shifted copies of what is there, within the same span
    (a busier fleet over the same 7 days, not a longer history), new ids and sessions. The copies
    are made in a temp table and inserted once in time order (as writers insert: the BRIN index on
    time stays useful). The unique btree index is dropped meanwhile and built again at the end (a
    bulk build instead of 10M random inserts). The rollups are ``mcplens db rollup``'s job, after."""
    from mcplens.store.postgres import schema

    stored = conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0]
    base = stored
    cols = ", ".join(f'"{c}"' for c, _, _ in schema.columns() if c not in ("event_id", "time", "session_id"))
    conn.execute("DROP INDEX mcplens.events_id")
    conn.execute("CREATE TEMP TABLE grow (LIKE mcplens.events)")
    conn.execute("SET work_mem = '256MB'")
    copy = 1
    while stored < target:
        take = min(base, target - stored)
        shift = copy * 7919.0  # seconds, wrapped into [t0, t0 + span)
        conn.execute(f"INSERT INTO grow (event_id, time, session_id, {cols}) "
                     f"SELECT event_id || '-{copy}', {t0} + mod((time - {t0} + {shift})::numeric, {span})::float8, "
                     f"session_id || '-{copy}', {cols} FROM mcplens.events WHERE event_id NOT LIKE '%-%' LIMIT {take}")
        stored += take
        copy += 1
        print(f"  made {stored:,}", flush=True)
    conn.execute("INSERT INTO mcplens.events SELECT * FROM grow ORDER BY time")
    conn.execute("DROP TABLE grow")
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("CREATE UNIQUE INDEX events_id ON mcplens.events (event_id, time)")
    conn.execute("VACUUM ANALYZE mcplens.events")
    return stored


def grown(args: argparse.Namespace) -> None:
    """The reads over a big store in PostgreSQL: the per-tool table, insights and the dashboard's
    7-day calls, each best of 3 (insights over the whole store: once)."""
    from tests.store.postgres.cluster import Cluster

    from mcplens.analysis.run import insights
    from mcplens.dashboard import data
    from mcplens.store.base import TimeWindow
    from mcplens.store.postgres import connect, schema
    from mcplens.store.postgres.store import RECENT, PostgresStore

    root: Path = args.grown_dir
    made = not (root / "data").exists()
    settings = {"fsync": "on", "full_page_writes": "on", "shared_buffers": "512MB", "max_wal_size": "4GB"}
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, settings=settings)
    lines = []
    if made:
        cluster.init()
    else:  # a new free port for the kept cluster
        with open(cluster.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"port = {cluster.port}\n")
    cluster.start()
    try:
        span = 7 * 86400.0
        meta = root / "grown.json"
        if made:
            url = cluster.create_db("grown")
            schema.upgrade(connect(url))
            now = time.time()
            per = args.events // args.writers
            res = ingest(cluster, url, root / "ingest", None, args, per, now - span, span, local=False)
            print(f"ingested {res['stored']:,}", flush=True)
            conn = connect(url)
            t = time.perf_counter()
            stored = grow_in_sql(conn, args.grow, now - span, span)
            lines.append(f"grown to {stored:,} rows in {time.perf_counter() - t:.0f} s (shifted copies in SQL)")
            conn.close()
            meta.write_text(json.dumps({"now": now}))
            shutil.rmtree(root / "ingest", ignore_errors=True)
        now = json.loads(meta.read_text())["now"]
        url = cluster.url(db="grown")
        cache = root / "mirrors"
        if made or args.rollup_again:
            from mcplens.store.postgres import mirror

            conn = connect(url)
            conn.execute("DELETE FROM mcplens.batches")
            conn.execute("DELETE FROM mcplens.settings WHERE key = 'rolled_until'")
            shutil.rmtree(root / "job", ignore_errors=True)
            t, c = time.perf_counter(), time.process_time()
            job = mirror.roll_up(conn, mirror.mirror_home(conn, root / "job"), now=now)
            lines.append(f"`mcplens db rollup` over the store (a first run: every hour at once): "
                         f"{time.perf_counter() - t:.0f} s wall, {time.process_time() - c:.0f} s CPU in the job's "
                         f"process (DuckDB), {len(job['batches'])} batches, {job['events']:,} events")
            print(lines[-1], flush=True)
            conn.close()
        shutil.rmtree(cache, ignore_errors=True)  # a reader starting from nothing
        pgs = PostgresStore(url, cache=cache)
        stored = pgs.count()
        t = time.perf_counter()
        pgs.refresh(force=True)
        lines.append(f"store: {stored:,} events over 7 days in PostgreSQL; a reader's first refresh (downloads "
                     f"every batch into its mirror) {time.perf_counter() - t:.1f} s; {pgs.tail_events:,} events "
                     "not rolled up (its tail)")
        print(lines[-1], flush=True)
        refreshes = []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            pgs.refresh(force=True)
            refreshes.append((time.perf_counter() - t, time.process_time() - c))
        lines.append(f"a warm refresh (the batch listing, the tail's count and its last {RECENT:.0f} s; the reads "
                     f"below refresh at most every second): {min(w for w, _ in refreshes) * 1000:.0f} ms, "
                     f"CPU {min(c for _, c in refreshes) * 1000:.0f} ms (best of 3)")
        print(lines[-1], flush=True)
        from mcplens.store.local.reader import LocalStore

        local = LocalStore(pgs.home)  # the same batches as a local data directory: the local baseline
        week, day = TimeWindow(now - span, now + 1), TimeWindow(now - 86400, now + 1)
        week_mid = TimeWindow(now - span + 1234.5, now - 1800.25)
        for label, fn, rounds in (
            ("per-tool table, whole store", lambda s: s.tool_table(), 3),
            ("per-tool table, last 7 days (window edges mid-hour)", lambda s: s.tool_table(week_mid), 3),
            ("dashboard /api/tools, 7 days", lambda s: data.tools(s, week), 3),
            ("dashboard /api/sessions, 7 days", lambda s: data.sessions(s, week), 3),
            ("dashboard /api/health, 7 days", lambda s: data.health(s, week), 3),
            ("dashboard /api/overview, 7 days", lambda s: data.overview(s, week), 3),
            ("insights, last day", lambda s: insights(s, since=day.since), 3),
            ("insights, last 7 days", lambda s: insights(s, since=week.since), 3),
        ):
            try:
                got = []
                for s in (pgs, local):  # interleaved: the same machine load for both
                    took, times = best(lambda s=s, fn=fn: fn(s), rounds=rounds)
                    cpu0 = time.process_time()
                    fn(s)
                    got.append((took, time.process_time() - cpu0, times))
                (pt, pc, ptimes), (lt, lc, ltimes) = got
                lines.append(f"{label} over {stored:,} events: PostgreSQL {pt:.3f} s (CPU {pc:.3f} s), local store "
                             f"over the same batches {lt:.3f} s (CPU {lc:.3f} s); best of {rounds} "
                             f"(every call: {', '.join(f'{x:.2f}' for x in ptimes)} s and "
                             f"{', '.join(f'{x:.2f}' for x in ltimes)} s)")
            except Exception as e:  # noqa: BLE001 - recorded: a call the PostgreSQL store cannot answer yet
                lines.append(f"{label} over {stored:,} events: failed ({type(e).__name__}: {str(e)[:100]})")
            print(lines[-1], flush=True)
        pgs.close()
        lines.append(_one_shot_cli(url, cache, week.since))
        print(lines[-1], flush=True)
    finally:
        cluster.stop()
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n`bench/postgres.py --grown-dir DIR --events {args.events} --grow {args.grow}` "
                    f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):\n\n" + "".join(f"- {x}\n" for x in lines))


def _one_shot_cli(url: str, cache: Path, since: float, runs: int = 3) -> str:
    """``mcplens insights --json --since ... --store URL`` as a user runs it: a fresh process each
    time (interpreter, imports, connection, this reader's copy of the tail), the batches already in
    the shared mirror (``MCPLENS_PG_CACHE``), so only what every run pays is timed."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    env = dict(os.environ, MCPLENS_PG_CACHE=str(cache))
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mcplens.cli", "insights", "--json", "--since", stamp,
                               "--store", url], capture_output=True, text=True, env=env)
        took.append(time.perf_counter() - t)
        if done.returncode != 0:
            return f"one-shot `mcplens insights --since 7d --store URL`: failed ({done.stderr.strip()[-200:]})"
    return (f"one-shot `mcplens insights --json --since <7 days> --store URL` (a fresh process each, the batches "
            f"already mirrored): {', '.join(f'{x:.2f}' for x in took)} s wall")


def _extract(ref: str, tmp: Path) -> Path:
    """``ref``'s src/ in a temp dir, so its writer and schema run beside this branch's."""
    out = tmp / "baseline"
    out.mkdir()
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def _env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _upgrade(url: str, src: Path | None) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from mcplens.store.postgres import connect, schema; "
                    "schema.upgrade(connect(sys.argv[1]))", url], check=True, env=_env(src))


def _cluster_cpu(cluster: Any) -> float:
    """CPU seconds used so far by the cluster: the postmaster, its live children, and its exited
    children (backends of closed connections, reaped into the postmaster's cutime/cstime)."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: int) -> list[str]:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    f = fields(pid)
    total = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            c = fields(int(child))
        except FileNotFoundError:
            continue
        total += int(c[11]) + int(c[12])
    return total / tick


def ingest(cluster: Any, url: str, home: Path, src: Path | None, args: argparse.Namespace, per: int, t0: float,
           span: float, *, local: bool) -> dict[str, Any]:
    """All writer processes at once (``src``: another version of mcplens), timed from the go file."""
    home.mkdir(parents=True)
    go = home / "go"
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", "--url", url, "--home", str(home / f"w{k}"),
                               "--go", str(go), "--n", str(per), "--seed", str(k), "--t0", str(t0),
                               "--span", str(span), *(["--local"] if local else [])],
                              stdout=subprocess.PIPE, text=True, env=_env(src))
             for k in range(args.writers)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    from mcplens.store.postgres import connect

    cpu0 = _cluster_cpu(cluster)
    go.touch()
    results = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
    pg_cpu = _cluster_cpu(cluster) - cpu0  # before the local phase ends: only the PostgreSQL phase
    for p in procs:
        p.wait()
    conn = connect(url)
    stored = conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0]
    conn.close()
    out = {"wall": max(r["postgres_s"] for r in results), "writer_cpu": sum(r["postgres_cpu"] for r in results),
           "pg_cpu": pg_cpu, "stored": stored, "spooled": sum(r["stats"]["spooled"] for r in results)}
    if local:
        out["local_wall"] = max(r["local_s"] for r in results)
        out["local_cpu"] = sum(r["local_cpu"] for r in results)
    return out


def breakdown(args: argparse.Namespace) -> None:
    """One writer process, the same events each time into a fresh database, variants interleaved:
    where the database's CPU per event goes (figures: writer and PostgreSQL CPU per event)."""
    from tests.store.postgres.cluster import Cluster

    from mcplens.store.local.writer import EventLogSink
    from mcplens.store.postgres import connect, schema
    from mcplens.store.postgres.writer import PostgresWriter

    variants = {
        "full": [],
        "synchronous_commit off": ["DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', "
                                   "current_database()); END $$"],
        "no unique id index (no exactly-once: for scale only)": ["DROP INDEX mcplens.events_id"],
    }
    cluster = Cluster(settings={"fsync": "on", "full_page_writes": "on", "shared_buffers": "512MB",
                                "max_wal_size": "4GB"}).init().start()
    tmp = Path(tempfile.mkdtemp(prefix="mcplens-bench-pgb-"))
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in [*variants, "local segment writer"]}
    now = time.time()
    events = make_events(args.breakdown, 1, now - 86400, 86400)
    n = len(events)
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
                w.write_batch(events[:1])  # connected, partitions made
                cpu0, c = _cluster_cpu(cluster), time.process_time()
                for i in range(1, n, 1000):
                    w.write_batch(events[i:i + 1000])
                res[name].append(((time.process_time() - c) / n * 1e6, (_cluster_cpu(cluster) - cpu0) / n * 1e6))
                w.close()
                conn.close()
            sink = EventLogSink(tmp / f"l{k}", "bd", max_bytes=1 << 30, max_age=600)
            c = time.process_time()
            for i in range(0, n, 1000):
                sink.write_batch(events[i:i + 1000])
            res["local segment writer"].append(((time.process_time() - c) / n * 1e6, 0.0))
            sink.close()
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"one writer, {n:,} events, 1,000 per batch, CPU per event (min of 3 interleaved: writer + PostgreSQL): "
             + "; ".join(f"{name} {min(w for w, _ in v):.1f} + {min(p for _, p in v):.1f} us"
                         for name, v in res.items())]
    print(lines[0])
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n`bench/postgres.py --breakdown {args.breakdown}` ({time.strftime('%H:%M', time.gmtime())} UTC, "
                    f"load average {os.getloadavg()[0]:.1f}): {lines[0]}\n")


def _local(store: Any, label: str, week: Any, day: float, insights: Any) -> Any:
    if label.startswith("per-tool table, whole"):
        return store.tool_table()
    if label.startswith("per-tool table, last 7"):
        return store.tool_table(week)
    return insights(store, since=day)


if __name__ == "__main__":
    main()
