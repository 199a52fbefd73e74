"""Dashboard API latency per page over big synthetic stores, for 1 h, 24 h and 7 d windows.

    python bench/dashboard.py                  # 1M and 10M events
    python bench/dashboard.py --events 1000000 --repeats 5

The store is generated quickly, not through the capture pipeline: DuckDB writes the Parquet
batches directly (one batch per ~day, time-ordered, the event log's column names) with their
manifests, then ``LocalStore.compact()`` rolls them up exactly as it does batches it wrote itself;
a tail of uncompacted events (a closed JSON-lines segment) sits on top, as on a live store. The
events span 8 days ending now: 30 tools on 2 servers, 12 clients, sessions of ~20 calls,
lognormal latencies, ~3% errors, a health record per instance every minute.

Each endpoint is timed over HTTP against the real app served by uvicorn on 127.0.0.1 (routing,
the guard, JSON encoding included): the figure is what a page waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mcplens import event as ev  # noqa: E402
from mcplens.store.local import LocalStore  # noqa: E402

DAY = 86400.0
SPAN_DAYS = 8
TAIL = 20_000  # uncompacted events at the newest end
ENDPOINTS = ("overview", "tools", "tool", "tool_errors", "clients", "sessions", "flows", "health", "instances",
             "insights")


def _q(s: str) -> str:
    return '"' + s + '"'


def generate(home: Path, n: int, *, batches: int) -> float:
    """Write ``n`` request events (+ health records) as Parquet batches; returns seconds taken."""
    import duckdb

    t_start = time.perf_counter()
    pq = home / "events" / "parquet"
    pq.mkdir(parents=True, exist_ok=True)
    (home / "events" / "closed").mkdir(parents=True, exist_ok=True)
    end = time.time()
    start = end - SPAN_DAYS * DAY
    exprs = {
        ev.EVENT_ID: "md5(i::VARCHAR || 'e')",
        ev.EVENT_KIND: "'request'",
        ev.SCHEMA: "1",
        ev.TIME: "t",
        ev.DURATION: "exp(ln(0.04) + 0.8 * sqrt(-2 * ln(random() + 1e-12)) * cos(6.283185 * random())) "
                     "* (1 + (tool % 7))",
        ev.METHOD: "CASE WHEN i % 50 = 0 THEN 'tools/list' ELSE 'tools/call' END",
        ev.TARGET: "CASE WHEN i % 50 = 0 THEN NULL ELSE 'tool_' || lpad(tool::VARCHAR, 2, '0') END",
        ev.TOOL_NAME: "CASE WHEN i % 50 = 0 THEN NULL ELSE 'tool_' || lpad(tool::VARCHAR, 2, '0') END",
        ev.STATUS: "CASE WHEN hash(i, 's') % 100 < 3 THEN 'tool_error' WHEN hash(i, 's') % 1000 = 999 "
                   "THEN 'rate_limited' ELSE 'ok' END",
        ev.ERROR_CATEGORY: "CASE WHEN hash(i, 's') % 100 < 3 THEN 'internal' END",
        ev.ERROR_TYPE: "CASE WHEN hash(i, 's') % 100 < 3 THEN 'tool_error' END",
        ev.REQUEST_SIZE: "64 + hash(i, 'r') % 400",
        ev.RESPONSE_SIZE: "200 + (hash(i, 'z') % 4000) * (1 + tool % 3)",
        ev.RESPONSE_TOKENS: "(200 + (hash(i, 'z') % 4000) * (1 + tool % 3)) // 4",
        ev.SESSION_ID: "'s' || (i // 20)::VARCHAR",
        ev.CLIENT_NAME: "'agent-' || ((i // 20) % 12)::VARCHAR",
        ev.CLIENT_VERSION: "'1.0'",
        ev.CLIENT_ID: "'c' || ((i // 20) % 12)::VARCHAR",
        ev.TRANSPORT: "'tcp'",
        ev.SERVER_NAME: "CASE WHEN tool < 20 THEN 'alpha' ELSE 'beta' END",
        ev.INSTANCE_ID: "'inst' || ((i // 20) % 4)::VARCHAR",
        ev.PID: "1000 + (i // 20) % 4",
        ev.CAPTURE: "'sdk'",
    }
    # every column in the event log's own type (a bare literal like 1795000000.5 would be DECIMAL, which
    # compaction never writes and which hides the Parquet statistics from a filter on DOUBLE time)
    cols = ", ".join(f"CAST({exprs.get(k, 'NULL')} AS {t}) AS {_q(k)}" for k, t in ev.COLUMNS.items())
    health = {
        ev.EVENT_ID: "md5(m::VARCHAR || 'h' || k::VARCHAR)",
        ev.EVENT_KIND: f"'{ev.HEALTH_KIND}'",
        ev.SCHEMA: "1",
        ev.TIME: "ht",
        ev.SERVER_NAME: "'alpha'",
        ev.INSTANCE_ID: "'inst' || k::VARCHAR",
        ev.PID: "1000 + k",
        ev.HEALTH_ENQUEUED: "m * 100",
        ev.HEALTH_WRITTEN: "m * 100",
        ev.HEALTH_DROPPED: "0",
        ev.HEALTH_FAULTS: "0",
        ev.HEALTH_WRITE_FAILURES: "0",
        ev.PROCESS_CPU: "m * 0.5",
        ev.PROCESS_MEMORY: "80000000 + (m % 100) * 10000",
        ev.PROCESS_START: f"{start!r}",
    }
    hcols = ", ".join(f"CAST({health.get(k, 'NULL')} AS {t}) AS {_q(k)}" for k, t in ev.COLUMNS.items())
    con = duckdb.connect()
    con.execute("SET threads = 2")
    main = n - TAIL
    per = main // batches
    step = (end - start) / n
    for b in range(batches):
        lo, hi = b * per, (main if b == batches - 1 else (b + 1) * per)
        t_lo, t_hi = start + lo * step, start + hi * step
        name = f"20261128T000000-1-bench{b:03d}"
        out = pq / f"{name}.parquet"
        con.execute(
            f"""COPY (SELECT * FROM (
                  SELECT {cols} FROM (SELECT i, {start!r} + i * {step!r} AS t, hash(i // 20, i % 3) % 30 AS tool
                                      FROM range({lo}, {hi}) r(i))
                  UNION ALL BY NAME
                  SELECT {hcols} FROM (SELECT m, k, {start!r} + m * 60.0 AS ht
                                       FROM range(0, {int(SPAN_DAYS * 1440)}) a(m), range(0, 4) c(k)
                                       WHERE {start!r} + m * 60.0 >= {t_lo!r} AND {start!r} + m * 60.0 < {t_hi!r}))
                ORDER BY time) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384)""")
        manifest = {"version": 1, "parquet": out.name, "segments": {}, "events": hi - lo,
                    "created": time.time() + b * 1e-3, "rollups": None}
        (pq / f"{name}.manifest.json").write_text(json.dumps(manifest))
    gen = time.perf_counter() - t_start
    t0 = time.perf_counter()
    LocalStore(home).compact()  # rolls up the batches that have no rollups, as for any older batch
    rolled = time.perf_counter() - t0
    seg = home / "events" / "closed" / "20261128T000000-1-benchtail-1.jsonl"  # after: it stays uncompacted
    con.execute(f"""COPY (SELECT {cols} FROM (SELECT i, {start!r} + i * {step!r} AS t, hash(i // 20, i % 3) % 30 AS tool
                         FROM range({main}, {n}) r(i)) ORDER BY time) TO '{seg}' (FORMAT json)""")
    con.close()
    print(f"  generated {n:,} events in {gen:.1f} s; rolled up in {rolled:.1f} s", flush=True)
    return gen


def time_endpoints(home: Path, windows: list[str], repeats: int,
                   endpoints: tuple[str, ...]) -> dict[tuple[str, ...], list[float]]:
    import http.client
    import threading

    import uvicorn

    from mcplens.dashboard import bind
    from mcplens.dashboard.app import create_app

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(LocalStore(home), home=home, port=port), log_level="warning",
                                          lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    out: dict[tuple[str, ...], list[float]] = {}
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        for _ in range(repeats):  # interleaved: each round visits every (window, endpoint) once
            for w in windows:
                for e in endpoints:
                    extra = "&tool=tool_03" if e in ("tool", "tool_errors") else ""
                    t0, c0 = time.perf_counter(), time.process_time()
                    con.request("GET", f"/api/{e}?since={w}{extra}")
                    r = con.getresponse()
                    body = r.read()
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    assert r.status == 200, (e, w, body[:300])
                    out.setdefault((w, e), []).append(dt)
                    out.setdefault((w, e, "cpu"), []).append(dc)
    finally:
        con.close()
        server.should_exit = True
        thread.join(30)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--windows", nargs="*", default=["1h", "24h", "7d"])
    ap.add_argument("--endpoints", nargs="*", default=list(ENDPOINTS))
    ap.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    args = ap.parse_args()
    os.environ.setdefault("MCPLENS_DISABLED", "1")
    for n in args.events:
        with tempfile.TemporaryDirectory() as tmp:
            home = (args.keep / f"n{n}") if args.keep else Path(tmp) / "home"
            print(f"== {n:,} events", flush=True)
            if not (home / "events").is_dir():
                generate(home, n, batches=max(1, n // 1_000_000))
            res = time_endpoints(home, args.windows, args.repeats, tuple(args.endpoints))
            # wall: what the page waits for on this (shared) machine; cpu: the process's CPU time for the
            # request (all threads), which a loaded machine stretches far less than the wall time
            print(f"  {'endpoint':<12}" + "".join(f"{w + ' wall':>12}{'max':>7}{'cpu':>7}" for w in args.windows))
            for e in args.endpoints:
                cells = "".join(f"{statistics.median(res[(w, e)]) * 1000:>9.0f} ms{max(res[(w, e)]) * 1000:>7.0f}"
                                f"{statistics.median(res[(w, e, 'cpu')]) * 1000:>7.0f}" for w in args.windows)
                print(f"  {e:<12}{cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
