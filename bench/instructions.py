#!/usr/bin/env python
"""Whole-process instructions per call, counted by valgrind: the side-by-side of ``overhead.py``
without the noise of a shared machine.

``overhead.py --side-by-side-only`` measures CPU time per call; on this 2-core machine its
rounds vary by ±15 % (±100 µs on an ~850 µs call), so a contender that adds 20 µs cannot be told
from one that adds 0. Instruction counts do not depend on what else the machine runs. Each
contender runs in its own process under ``valgrind --tool=callgrind`` twice, with ``--calls`` and
with twice as many in-memory ``tools/call``s (the 200-byte argument object of ``overhead.py``);
everything the process executes is counted, on every thread: the request path, mcplens's writer
thread and its final flush, OTel's span processor and its final flush. The difference of the
two counts divided by the extra calls is the marginal cost of one call: start-up, imports and
warm-up cancel out.

    python bench/instructions.py                    # sdk-default, sdk+otel-provider, mcplens
    python bench/instructions.py --calls 200 --vary # argument values differ on every call
    python bench/instructions.py --write-results    # append a section to bench/RESULTS.md

Instructions are not time (a cache miss costs more than an add), so the ratio is an estimate of
the CPU ratio, not a replacement for it; ``overhead.py`` still gives the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

CONTENDERS = ("sdk-default", "sdk+otel-provider", "mcplens")
#: with --split: mcplens whose builder makes no event, so its figure is the request path, the
#: queue and the writer's loop alone; the rest of mcplens's is building, cleaning and writing
REQUEST_ONLY = "mcplens-request-path"
#: with --split: the SDK with one more middleware that only awaits the next, the floor of any
#: middleware-based capture
NOOP_MIDDLEWARE = "sdk+noop-middleware"
#: with --split: mcplens whose builder makes the smallest event there is (four fields, no text of
#: the call), which still goes through the privacy stage and is encoded and written: the writer's
#: cost per event before any of the event's content, the floor of any per-event Python writer
LEAST_EVENT = "mcplens-least-event"
GOAL_FRACTION = 1 / 8  # mcplens adds at most 1/8 of what OTel-with-provider adds (issue 11)


def arguments(i: int, vary: bool) -> dict[str, Any]:
    from overhead import ARGUMENTS_200B

    if not vary:
        return ARGUMENTS_200B
    return {**ARGUMENTS_200B, "query": f"select id, title from tickets where id > {i * 7919} order by updated",
            "limit": i % 97, "note": f"triage list {i} for review #{i * 31 % 1000}"}


async def serve(contender: str, calls: int, warmup: int, vary: bool) -> None:
    """One contender's whole run: a server, an in-memory client, ``warmup`` + ``calls`` calls, flush."""
    from mcp import Client

    from overhead import OtelSwitch, make_sdk_search

    server = make_sdk_search("instructions")
    otel = None
    flush = None
    if contender == "sdk+otel-provider":
        otel = OtelSwitch("batch")
        otel.on()
        flush = otel.flush
    elif contender == NOOP_MIDDLEWARE:
        async def noop(ctx: Any, call_next: Any) -> Any:
            return await call_next(ctx)

        low = getattr(server, "_lowlevel_server", None) or server
        low.middleware.insert(0, noop)
    elif contender in ("mcplens", REQUEST_ONLY, LEAST_EVENT):
        import mcplens

        if contender == REQUEST_ONLY:
            from mcplens.capture.sdk import EventBuilder

            EventBuilder.__call__ = lambda self, raw: []  # type: ignore[method-assign]
        elif contender == LEAST_EVENT:
            from mcplens.capture.sdk import EventBuilder

            def least(self: Any, raw: Any) -> list[dict[str, Any]]:
                return [{"kind": "request", "time": time.time(), "method": "tools/call", "status": "ok"}]

            EventBuilder.__call__ = least  # type: ignore[method-assign]

        handle = mcplens.instrument(server, home=Path(tempfile.mkdtemp(prefix="mcplens-instr-")),
                                    handle_sigterm=False)
        assert handle.active, handle.reason
        flush = handle.pipeline.flush
    async with Client(server) as client:
        for i in range(warmup):
            await client.call_tool("search", arguments(-1 - i, vary))
        if flush is not None:
            flush()
        for i in range(calls):
            await client.call_tool("search", arguments(i, vary))
        if flush is not None:
            flush()
    if contender == "mcplens":
        counters = handle.pipeline.counters
        if os.environ.get("MCPLENS_BENCH_NATIVE"):  # a loaded machine may shed some: counted, not lost
            assert counters["written"] + counters["dropped"] >= calls, counters
        else:
            assert counters["dropped"] == 0 and counters["written"] >= calls, counters
    if contender == LEAST_EVENT:
        assert handle.pipeline.counters["written"] >= calls, handle.pipeline.counters
    if contender == REQUEST_ONLY:
        assert handle.pipeline.counters["enqueued"] >= calls, handle.pipeline.counters
    if otel is not None:
        assert otel.exporter.exported >= calls, otel.exporter.exported


def count(contender: str, calls: int, warmup: int, vary: bool) -> int:
    """Instructions of a whole process running ``contender`` for ``calls`` calls (all threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        # under valgrind a call takes ~50x as long, so the default 0.25 s interval would make the
        # writer's batches ~50x smaller than in a real server (per-batch costs charged to few
        # events); 10 s keeps them about as large as at native speed (hundreds of events)
        env = {**os.environ, "PYTHONHASHSEED": "0", "MCPLENS_FLUSH_INTERVAL": "10"}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
               sys.executable, __file__, "--run", contender, "--calls", str(calls), "--warmup", str(warmup)]
        if vary:
            cmd.append("--vary")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{contender} ({calls} calls) failed:\n{proc.stderr[-3000:]}")
        m = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if m is None:
            text = out.read_text()
            m = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(r"^totals:\s*(\d+)", text, re.M)
        if m is None:
            raise SystemExit(f"no instruction count in valgrind's output for {contender}")
        return int(m.group(1))


def faults(contender: str, calls: int, warmup: int, vary: bool) -> int:
    """Minor page faults of a whole native run (no valgrind): the kernel's share of the cost, which
    instruction counts leave out (memory a process frees back to the system and touches again)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "MCPLENS_FLUSH_INTERVAL": "0.25", "MCPLENS_BENCH_NATIVE": "1"}
    cmd = [sys.executable, __file__, "--run", contender, "--calls", str(calls), "--warmup", str(warmup)]
    if vary:
        cmd.append("--vary")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    m = re.search(r"^minflt (\d+)$", proc.stderr, re.M)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"{contender} ({calls} calls, native) failed:\n{proc.stderr[-3000:]}")
    return int(m.group(1))


def measure(calls: int, warmup: int, vary: bool, jobs: int, contenders: tuple[str, ...] = CONTENDERS,
            ) -> dict[str, dict[str, float]]:
    plan = [(c, n) for c in contenders for n in (calls, 2 * calls)]
    with ThreadPoolExecutor(jobs) as pool:
        counts = dict(zip(plan, pool.map(lambda p: count(p[0], p[1], warmup, vary), plan), strict=True))
    # page faults vary a little run to run: the median of three differences, at 10x the calls
    flts = {c: sorted(faults(c, 20 * calls, warmup, vary) - faults(c, 10 * calls, warmup, vary)
                      for _ in range(3))[1] / (10 * calls) for c in contenders}
    out: dict[str, dict[str, float]] = {}
    for c in contenders:
        per_call = (counts[(c, 2 * calls)] - counts[(c, calls)]) / calls
        out[c] = {"per_call": per_call, "short": counts[(c, calls)], "long": counts[(c, 2 * calls)],
                  "faults": flts[c]}
    return out


def report(res: dict[str, dict[str, float]], calls: int, vary: bool) -> str:
    import importlib.metadata

    base = res["sdk-default"]["per_call"]
    otel = res["sdk+otel-provider"]["per_call"] - base
    lens = res["mcplens"]["per_call"] - base
    now = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    head = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    lines = [
        f"### Whole-process instructions per call (`bench/instructions.py{' --vary' if vary else ''}`) — {now}",
        "",
        f"- Machine: `{platform.system()} {platform.release()} {platform.machine()}`, nproc {os.cpu_count()}; "
        f"CPython {platform.python_version()}, mcp {importlib.metadata.version('mcp')}; "
        f"mcplens source at git {head}. Counted by valgrind (callgrind), so the figures do not depend on "
        "the machine's load.",
        f"- Each contender in its own process, {calls} and {2 * calls} in-memory `tools/call`s with the "
        "200-byte argument object" + (" (free-text values differ on every call)" if vary else "")
        + "; per call = (instructions of the long run − the short run) ÷ "
        f"{calls}: every thread and the final flush counted, start-up cancelled out. mcplens with "
        "`MCPLENS_FLUSH_INTERVAL=10`: under valgrind calls are ~50x slower, and this keeps the writer's "
        "batches about as large as the default 0.25 s gives at native speed.",
        "",
        "| contender | instructions per call | added vs sdk-default | minor page faults per call (native) |",
        "|---|---:|---:|---:|",
    ]
    for c, r in res.items():
        per = r["per_call"]
        added = "—" if c == "sdk-default" else f"{per - base:,.0f}"
        lines.append(f"| {c} | {per:,.0f} | {added} | {r['faults']:.2f} |")
    verdict = "met" if lens <= GOAL_FRACTION * otel else "not met"
    lines += ["", f"- mcplens adds {lens / otel:.0%} of what OTel-with-provider adds "
                  f"(goal ≤ {GOAL_FRACTION:.1%}): **{verdict}**"]
    if REQUEST_ONLY in res and LEAST_EVENT in res:
        path = res[REQUEST_ONLY]["per_call"] - base
        least = res[LEAST_EVENT]["per_call"] - base
        lines += [f"- The floor: the request path and queue alone add {path:,.0f} ({path / otel:.0%} of OTel's); "
                  f"a four-field event per call through the privacy stage, encoded and written, "
                  f"{least:,.0f} ({least / otel:.0%}); the goal allows {GOAL_FRACTION * otel:,.0f} in all, "
                  f"so {GOAL_FRACTION * otel - path:,.0f} per event for building, cleaning and writing it"]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=150)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--vary", action="store_true", help="argument values differ on every call")
    p.add_argument("--jobs", type=int, default=2, help="valgrind processes at once")
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--split", action="store_true",
                   help=f"also {REQUEST_ONLY} (mcplens building no event: its request path and queue alone), "
                        f"{LEAST_EVENT} (mcplens writing a four-field event per call) "
                        f"and {NOOP_MIDDLEWARE} (one SDK middleware that does nothing)")
    split = (*CONTENDERS, REQUEST_ONLY, LEAST_EVENT, NOOP_MIDDLEWARE)
    p.add_argument("--run", choices=split, help=argparse.SUPPRESS)  # the child's side
    a = p.parse_args()
    if a.run:
        asyncio.run(serve(a.run, a.calls, a.warmup, a.vary))
        import resource

        sys.stderr.write(f"minflt {resource.getrusage(resource.RUSAGE_SELF).ru_minflt}\n")
        return 0
    res = measure(a.calls, a.warmup, a.vary, a.jobs, split if a.split else CONTENDERS)
    text = report(res, a.calls, a.vary)
    sys.stderr.write(text + "\n")
    if a.write_results:
        with (HERE / "RESULTS.md").open("a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
