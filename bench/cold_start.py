"""What a fresh `mcplens insights` process pays that one that stays up (`watch`, the dashboard) does not.

    .venv/bin/python bench/cold_start.py --store DIR [--window 7d] [--rounds 5] [--record]

Each round is a fresh process that times, in order: mcplens's imports (the CLI and the analysis),
DuckDB's engine as mcplens loads it (store/engine.py) and a first connection, then :func:`insights`
over ``window`` (ending at the store's newest event) three times: the first run is the cold one a
one-shot CLI makes, the third a warm one (a process that stays up). For each run it counts the minor
page faults (``getrusage``): a fresh process touches every page the run needs for the first time.
A last child measures what one first touch costs on this machine (touching a fresh 256 MB anonymous
mapping, a page at a time), so the faults can be priced. Then how long a one-shot ``mcplens insights``
process takes to end after its output: as the ``mcplens`` command ends it (cli ``run``), and with the
interpreter's usual teardown (``sys.exit(main())``), alternating. Medians over the rounds; ``--record``
appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = time.perf_counter()
import mcplens.cli, mcplens.cli.insights, mcplens.analysis.run, mcplens.store.local.reader
from pathlib import Path
from mcplens.analysis.run import insights
from mcplens.store.local.reader import LocalStore
out = {"imports": time.perf_counter() - t}
t = time.perf_counter()
from mcplens.store import engine
engine.duckdb().connect().close()  # the engine as mcplens loads it (store/engine.py)
out["duckdb"] = time.perf_counter() - t
store = LocalStore(Path(sys.argv[1]))
since = float(sys.argv[2])
runs = []
for _ in range(3):
    f, t = faults(), time.perf_counter()
    insights(store, since=since)
    runs.append({"wall": time.perf_counter() - t, "faults": faults() - f})
out["runs"] = runs
print(json.dumps(out))
"""

EXIT = r"""
import sys, time
from mcplens import cli
dispatch = cli._dispatch
def timed(args):
    code = dispatch(args)
    sys.stderr.write(f"\n{time.time()!r}\n")  # the command's work done: from here on, the process ends
    sys.stderr.flush()
    return code
cli._dispatch = timed
how, sys.argv = sys.argv[1], ["mcplens", *sys.argv[2:]]
if how == "run":
    cli.run()  # the mcplens command: a read-and-print command's process ends at once
sys.exit(cli.main())  # as before: the interpreter's teardown and DuckDB's close
"""

TOUCH = r"""
import mmap, time
size = 256 << 20
m = mmap.mmap(-1, size)
t = time.perf_counter()
for i in range(0, size, 4096):
    m[i] = 1
print((time.perf_counter() - t) / (size // 4096))
"""


def _seconds(word: str) -> float:
    return float(word[:-1]) * {"h": 3600, "d": 86400, "m": 60}[word[-1]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--window", default="7d")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from mcplens.store.local.reader import LocalStore

    newest = LocalStore(args.store).query("SELECT max(time) AS t FROM events")[0]["t"]
    since = newest - _seconds(args.window)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    rounds = []
    for r in range(args.rounds):
        res = subprocess.run([sys.executable, "-c", CHILD, str(args.store), repr(since)], env=env, check=True,
                             capture_output=True, text=True)
        rounds.append(json.loads(res.stdout))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f}s" for k, v in rounds[-1].items() if k != "runs")
              + "; runs " + ", ".join(f"{x['wall']:.3f}s/{x['faults']} faults" for x in rounds[-1]["runs"]), flush=True)
    # how long the process takes to end once the command is done, as the mcplens command ends it and
    # with the interpreter's usual teardown (DuckDB's database closed, every object freed)
    ends: dict[str, list[float]] = {"run": [], "main": []}
    cli = ["insights", "--home", str(args.store), "--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)),
           "--json"]
    for _ in range(args.rounds):
        for how in ends:
            res = subprocess.run([sys.executable, "-c", EXIT, how, *cli], env=env, check=True, capture_output=True,
                                 text=True)
            ends[how].append(time.time() - float(res.stderr.strip().splitlines()[-1]))
    per_fault = statistics.median(float(subprocess.run([sys.executable, "-c", TOUCH], check=True, capture_output=True,
                                                        text=True).stdout) for _ in range(3))

    def med(get: object) -> float:
        return statistics.median(get(x) for x in rounds)  # type: ignore[operator]

    cold, warm = med(lambda x: x["runs"][0]["wall"]), med(lambda x: x["runs"][2]["wall"])
    cold_f, warm_f = med(lambda x: x["runs"][0]["faults"]), med(lambda x: x["runs"][2]["faults"])
    lines = [
        f"imports {med(lambda x: x['imports']):.3f} s, DuckDB import and connection {med(lambda x: x['duckdb']):.3f} s",
        f"insights {args.window}: first run (cold) {cold:.3f} s with {cold_f:,.0f} page faults; third run (warm) "
        f"{warm:.3f} s with {warm_f:,.0f}",
        f"one first touch of a page {per_fault * 1e6:.1f} us: the cold run's extra faults cost "
        f"~{(cold_f - warm_f) * per_fault:.3f} s of its extra {cold - warm:.3f} s",
        f"the one-shot `mcplens insights` ends {statistics.median(ends['run']):.3f} s after its output (the "
        f"interpreter's teardown and DuckDB's close: {statistics.median(ends['main']):.3f} s)",
    ]
    print("\n".join(lines))
    if args.record:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        head = f"`bench/cold_start.py --store {args.store.name} --window {args.window}` ({stamp}, load {load}, " \
               f"median of {args.rounds} fresh processes):"
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
            f.write("\n".join(["", head, "", *(f"- {x}" for x in lines), ""]))


if __name__ == "__main__":
    main()
