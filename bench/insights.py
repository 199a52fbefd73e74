"""All insights (and the per-tool table) over 1M and 10M stored events.

    .venv/bin/python bench/insights.py [--sizes 1000000,10000000] [--dir /tmp/mcplens-bench-insights] [--keep]
    .venv/bin/python bench/insights.py --store DIR [--store DIR ...] [--windows 1h,24h,7d] [--rounds 3] [--record]

``--store``: time ``mcplens insights`` (the :func:`insights` call the CLI makes) over an existing
store, e.g. the dashboard benchmark's (``bench/dashboard.py --events 10000000 --keep /tmp/dbench
--endpoints overview`` writes ``/tmp/dbench/n10000000``: 8 days, 30 tools, a 20k-event uncompacted
tail), for windows ending at its newest event, reporting wall and process CPU time (all threads) of
each run, rounds interleaved; the median is kept. It only calls :func:`insights` and
``LocalStore``, so the same script times an older checkout (``PYTHONPATH=<old>/src``) over a copy
of the store rolled up by that version (``--baseline-store``, one per ``--store``, when the rollups'
format changed between the two). With ``--baseline SRC`` each run is a fresh process of this
or the older package, interleaved, findings compared; ``--warm N`` adds, per process, the median
wall time of N more runs after the first (a process that stays up, as ``watch`` and the dashboard).

Data: the healthy synthetic workload of tests/analysis/workload.py (20 clients, sessions of 3-25
calls, 6 tools, ~2% errors, a tools/list per client). The first million events are written through
the real segment writer (EventLogSink) and compacted by ``LocalStore.compact()``; larger sizes
repeat that Parquet batch with shifted times and fresh event and session ids, written by DuckDB
``COPY`` as further committed batches (Parquet + manifest, the store's own format) — the writer
would take minutes to produce them and adds nothing to what is measured — and then given their
rollups by ``LocalStore.compact()``, as it does for batches from before rollups existed. Each figure is the best
of 3 runs, cold process cache aside. Results are appended to bench/RESULTS.md with ``--record``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.analysis import workload  # noqa: E402

from mcplens.analysis.run import insights  # noqa: E402
from mcplens.store.base import TimeWindow  # noqa: E402
from mcplens.store.local.files import MANIFEST_SUFFIX, _lit  # noqa: E402
from mcplens.store.local.reader import LocalStore  # noqa: E402

BASE = 1_000_000


def build(home: Path, n: int) -> None:
    store = LocalStore(home)
    if not any((store.root / "parquet").glob("*.parquet")):
        t = time.perf_counter()
        evs = workload.normal(BASE, days=30.0, clients=200)
        print(f"  generated {len(evs):,} events in {time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        workload.write(home, evs)
        del evs
        print(f"  written through EventLogSink in {time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        store.compact()
        print(f"  compacted (with rollups) in {time.perf_counter() - t:.1f}s", flush=True)
    have = store.count()
    [first] = sorted((store.root / "parquet").glob("*.parquet"))[:1]
    import duckdb

    copy = 0
    while have < n:
        copy += 1
        out = store.root / "parquet" / f"bench-copy{copy:03d}.parquet"
        shift = copy * 31 * 86400.0
        con = duckdb.connect()
        k = con.execute(
            f"""COPY (SELECT * REPLACE ("time" + {shift} AS "time", md5("event.id" || '{copy}') AS "event.id",
                              "mcp.session.id" || '-{copy}' AS "mcp.session.id")
                      FROM read_parquet({_lit(first)})) TO {_lit(out)} (FORMAT parquet, COMPRESSION zstd)"""
        ).fetchone()[0]
        con.close()
        manifest = {"version": 1, "parquet": out.name, "segments": {}, "events": k, "created": time.time()}
        (out.parent / f"bench-copy{copy:03d}{MANIFEST_SUFFIX}").write_text(json.dumps(manifest))
        have += k
    t = time.perf_counter()
    rolled = store.compact().rolled_up
    if rolled:
        print(f"  rolled up {rolled} batches (compaction's rollups) in {time.perf_counter() - t:.1f}s", flush=True)
    print(f"  {store.count():,} events stored, {du(store.root)}", flush=True)


def du(p: Path) -> str:
    total = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return f"{total / 1e6:,.0f} MB"


def best(fn, runs: int = 3) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def _seconds(word: str) -> float:
    return float(word[:-1]) * {"h": 3600, "d": 86400, "m": 60}[word[-1]]


def time_stores(stores: list[Path], windows: list[str], rounds: int) -> list[tuple[str, str, float, float, int]]:
    """(store, window, median wall s, median CPU s, findings) per store and window."""
    import statistics

    out = []
    for home in stores:
        store = LocalStore(home)
        newest = store.query("SELECT max(time) AS t FROM events")[0]["t"]
        n = store.count()
        print(f"{home}: {n:,} events (mcplens from {Path(sys.modules['mcplens'].__file__).parent})", flush=True)
        walls: dict[str, list[float]] = {w: [] for w in windows}
        cpus: dict[str, list[float]] = {w: [] for w in windows}
        found: dict[str, int] = {}
        for _ in range(rounds):  # interleaved: each round runs every window once
            for w in windows:
                since = None if w == "all" else newest - _seconds(w)
                t, c = time.perf_counter(), time.process_time()
                found[w] = len(insights(store, since=since))
                walls[w].append(time.perf_counter() - t)
                cpus[w].append(time.process_time() - c)
        for w in windows:
            wall, cpu = statistics.median(walls[w]), statistics.median(cpus[w])
            print(f"  {w:>4}: wall {wall:.3f} s, cpu {cpu:.3f} s, {found[w]} findings", flush=True)
            out.append((f"{n:,}", w, wall, cpu, found[w]))
    return out


def child(stores: list[Path], windows: list[str], warm: int = 0) -> None:
    """One fresh process: each window once per store (the first run, as the CLI's), CPU and the
    findings' digest as one JSON line; ``warm``: then that many more runs, their median wall time
    (as ``watch`` and the dashboard run it, in a process that stays up)."""
    import hashlib
    import statistics

    out = []
    for home in stores:
        store = LocalStore(home)
        newest = store.query("SELECT max(time) AS t FROM events")[0]["t"]
        for w in windows:
            since = None if w == "all" else newest - _seconds(w)
            c = time.process_time()
            found = insights(store, since=since)
            cpu = time.process_time() - c
            walls = []
            for _ in range(warm):
                t = time.perf_counter()
                insights(store, since=since)
                walls.append(time.perf_counter() - t)
            digest = hashlib.sha256(json.dumps([f.to_dict() for f in found], sort_keys=True).encode()).hexdigest()
            out.append({"store": str(home), "window": w, "cpu": cpu, "findings": len(found), "digest": digest,
                        "warm": statistics.median(walls) if walls else None})
    print(json.dumps(out))


def cli_since(home: Path, window: str) -> str:
    """The start of ``window`` ending at the store's newest event, as the CLI's ``--since`` (ISO, UTC):
    fixed for every run, so each one-shot run's JSON must be the same."""
    from datetime import UTC, datetime

    newest = LocalStore(home).query("SELECT max(time) AS t FROM events")[0]["t"]
    return datetime.fromtimestamp(newest - _seconds(window), tz=UTC).isoformat()


def one_shot(src: str, home: Path, since: str) -> tuple[float, str]:
    """Wall time and the output digest of ``mcplens insights --since SINCE --json`` in a fresh process of
    the package under ``src``: start-up, imports, the first (cold) run and the output, as a user runs it."""
    import hashlib
    import subprocess

    cmd = [sys.executable, "-m", "mcplens.cli", "insights", "--home", str(home), "--since", since, "--json"]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=src), check=True, capture_output=True).stdout
    return time.perf_counter() - t, hashlib.sha256(out).hexdigest()


def compare(stores: list[Path], windows: list[str], rounds: int, baseline: Path, warm: int = 0,
            baseline_stores: list[Path] | None = None, cli: bool = False
            ) -> tuple[list[tuple[str, str, float, float, int]], list[str]]:
    """(store, window, median CPU baseline, median CPU this, findings): ``rounds`` fresh processes of
    each, alternating; every run's findings (JSON digest) are compared with the first run's and any
    difference is printed. ``baseline_stores``: the baseline reads these copies instead (the same
    events rolled up by its own version, when the rollups' format changed). ``cli``: each round also
    times the one-shot CLI (:func:`one_shot`) per store and window, both versions' outputs compared.
    Returns the rows and the summary lines of the wall times."""
    import statistics
    import subprocess

    here = Path(__file__).resolve()
    base = [sys.executable, str(here), "--child", "--windows", ",".join(windows), "--warm", str(warm)]
    cmds = {}
    for name, homes in (("baseline", baseline_stores or stores), ("this", stores)):
        cmds[name] = base + [arg for home in homes for arg in ("--store", str(home))]
    named = {str(b): str(h) for b, h in zip(baseline_stores or stores, stores, strict=True)}
    named_back = {h: b for b, h in named.items()}
    this_src = str(here.parent.parent / "src")
    cpus: dict[tuple[str, str, str], list[float]] = {}
    warms: dict[tuple[str, str, str], list[float]] = {}
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    differ: set[tuple[str, str]] = set()
    sinces = {(str(h), w): cli_since(h, w) for h in stores for w in windows if w != "all"} if cli else {}
    shots: dict[tuple[str, str, str], list[float]] = {}
    shot_out: dict[tuple[str, str], str] = {}
    for r in range(rounds):
        for name, src in (("baseline", str(baseline)), ("this", this_src)):
            for (home, w), since in sinces.items():
                wall, digest = one_shot(src, Path(named_back.get(home, home) if name == "baseline" else home), since)
                shots.setdefault((name, home, w), []).append(wall)
                if shot_out.setdefault((home, w), digest) != digest:
                    differ.add((home, w))
                    print(f"ONE-SHOT OUTPUT DIFFERS: {name} round {r + 1} {home} {w}", flush=True)
            env = dict(os.environ, PYTHONPATH=src)
            res = json.loads(subprocess.run(cmds[name], env=env, check=True, capture_output=True, text=True).stdout)
            for x in res:
                x["store"] = named.get(x["store"], x["store"])
                cpus.setdefault((name, x["store"], x["window"]), []).append(x["cpu"])
                if x.get("warm") is not None:
                    warms.setdefault((name, x["store"], x["window"]), []).append(x["warm"])
                key = (x["store"], x["window"])
                if key in seen and seen[key] != (x["digest"], x["findings"]):
                    differ.add(key)
                    print(f"FINDINGS DIFFER: {name} round {r + 1} {key}", flush=True)
                seen.setdefault(key, (x["digest"], x["findings"]))
            print(f"round {r + 1} {name}: " + ", ".join(f"{Path(x['store']).name} {x['window']} {x['cpu']:.3f}s"
                                                          for x in res), flush=True)
    out = []
    notes: list[str] = []
    for home in stores:
        for w in windows:
            b = statistics.median(cpus[("baseline", str(home), w)])
            t = statistics.median(cpus[("this", str(home), w)])
            same = "same findings" if (str(home), w) not in differ else "FINDINGS DIFFERED"
            out.append((Path(home).name, w, b, t, seen[(str(home), w)][1]))
            print(f"{Path(home).name} {w:>4}: CPU baseline {b:.3f} s, this {t:.3f} s (x{t / b:.2f}), {same} "
                  f"({2 * rounds} runs)", flush=True)
            if (str(home), w) in sinces:
                sb, st = (shots[(n, str(home), w)] for n in ("baseline", "this"))
                notes.append(f"{Path(home).name} {w}: one-shot `mcplens insights --since <{w}> --json` wall (median, "
                             f"min-max): baseline {statistics.median(sb):.3f} s ({min(sb):.3f}-{max(sb):.3f}), this "
                             f"{statistics.median(st):.3f} s ({min(st):.3f}-{max(st):.3f})")
                print(notes[-1], flush=True)
            if warms:
                wb, wt = (warms[(n, str(home), w)] for n in ("baseline", "this"))
                notes.append(f"{Path(home).name} {w}: wall in a process that stays up (median of {warm} after the "
                             f"first, per round; median over rounds, min-max): baseline {statistics.median(wb):.3f} s "
                             f"({min(wb):.3f}-{max(wb):.3f}), this {statistics.median(wt):.3f} s "
                             f"({min(wt):.3f}-{max(wt):.3f})")
                print(notes[-1], flush=True)
    return out, notes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, action="append", help="time insights over this existing store")
    ap.add_argument("--windows", default="1h,24h,7d,all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--label", default="", help="what is timed (e.g. a commit), for --record")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mcplens-bench-insights"))
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    ap.add_argument("--baseline", type=Path, metavar="SRC",
                    help="with --store: also time the mcplens package under SRC (an older checkout's src/), "
                         "each run in a fresh process (as the CLI runs), the two interleaved round by round, "
                         "and compare every run's findings (byte-identical JSON)")
    ap.add_argument("--warm", type=int, default=0,
                    help="with --baseline: after each process's first run, time this many more in the same "
                         "process (wall, median) as watch and the dashboard run insights")
    ap.add_argument("--baseline-store", type=Path, action="append",
                    help="with --baseline: the baseline reads this copy of each --store (in order), rolled up by "
                         "its own version")
    ap.add_argument("--cli", action="store_true",
                    help="with --baseline: each round also time the one-shot CLI (`mcplens insights --since ... "
                         "--json` in a fresh process: start-up and output included) per store and window but all")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.store, args.windows.split(","), args.warm)
        return
    if args.store and args.baseline:
        if args.baseline_store and len(args.baseline_store) != len(args.store):
            ap.error("--baseline-store: one per --store")
        rows, notes = compare(args.store, args.windows.split(","), args.rounds, args.baseline, args.warm,
                              args.baseline_store, args.cli)
        if args.record:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            head = (f"`bench/insights.py --store ... --baseline {args.baseline}` {args.label} ({stamp}, load {load}, "
                    f"median of {args.rounds} fresh processes each, interleaved):")
            lines = ["", head, "", "| store | window | CPU baseline | CPU this | ratio | findings |",
                     "|---|---|---:|---:|---:|---:|",
                     *(f"| {h} | {w} | {b:.3f} s | {t:.3f} s | {t / b:.2f} | {k} |" for h, w, b, t, k in rows), "",
                     *(f"- {n}" for n in notes), ""]
            with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
                f.write("\n".join(lines))
        return
    if args.store:
        timed = time_stores(args.store, args.windows.split(","), args.rounds)
        if args.record:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            head = f"`bench/insights.py --store` {args.label} ({stamp}, load {load}, median of {args.rounds}):"
            lines = ["", head, "",
                     "| events | window | wall | CPU (process) | findings |", "|---:|---|---:|---:|---:|",
                     *(f"| {n} | {w} | {wall:.3f} s | {cpu:.3f} s | {k} |" for n, w, wall, cpu, k in timed), ""]
            with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
                f.write("\n".join(lines))
        return
    rows = []
    try:
        for n in (int(float(s)) for s in args.sizes.split(",")):
            print(f"{n:,} events", flush=True)
            build(args.dir, n)
            store = LocalStore(args.dir)
            t_table, table = best(lambda: store.tool_table())  # noqa: B023
            t_all, found = best(lambda: insights(store))  # noqa: B023
            # the baseline: the same work scanning the events (what a time window does)
            newest = store.query("SELECT max(time) AS t FROM events")[0]["t"] + 1e-6
            s_table, scanned_table = best(lambda: store.tool_table(TimeWindow(0.0, newest)), 2)  # noqa: B023
            s_all, scanned = best(lambda: insights(store, since=0.0, until=newest), 2)  # noqa: B023
            assert [f.to_dict() for f in scanned] == [f.to_dict() for f in found], "rollups and scan disagree"
            assert len(scanned_table) == len(table)
            loud = [f for f in found if f.severity != "info"]
            print(f"  per-tool table {t_table:.3f}s ({len(table)} rows; scan {s_table:.3f}s, "
                  f"x{s_table / t_table:.1f}); "
                  f"all insights {t_all:.3f}s (scan {s_all:.3f}s, x{s_all / t_all:.1f}; "
                  f"{len(found)} findings, {len(loud)} above info)", flush=True)
            rows.append((n, t_table, s_table, t_all, s_all, len(found), len(loud)))
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    if args.record:
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        import duckdb

        lines = [
            "",
            f"## Insights ({time.strftime('%Y-%m-%d')}, {machine}, DuckDB {duckdb.__version__})",
            "",
            "`bench/insights.py`: healthy synthetic workload, compacted to Parquet with rollups; best of 3.",
            "Scan: the same run reading the events (as a time window does), best of 2, same findings asserted.",
            "",
            "| events | per-tool table | scan | all insights | scan | findings (above info) |",
            "|---:|---:|---:|---:|---:|---:|",
            *(f"| {n:,} | {a:.2f} s | {sa:.2f} s (x{sa / a:.1f}) | {b:.2f} s | {sb:.2f} s (x{sb / b:.1f}) | {c} ({d}) |"
              for n, a, sa, b, sb, c, d in rows),
            "",
        ]
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main()
