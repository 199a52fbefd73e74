#!/usr/bin/env python
"""Where the writer's time goes, per event: capture real submissions, then replay them.

An ``MCPServer`` with mcplens (default settings) answers ``--calls`` in-memory ``tools/call``s with
the 200-byte argument object of ``bench/overhead.py``; the pipeline's submissions are recorded,
then replayed ``--repeat`` times through event building, the privacy stage and the batch encode
(what the writer thread does per event), timed with this thread's CPU clock. ``--profile`` runs the
replay under cProfile and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
from pathlib import Path
from time import thread_time_ns

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from overhead import ARGUMENTS_200B, make_sdk_search  # noqa: E402


def arguments(i: int, vary: bool) -> dict:
    """The 200-byte argument object; with ``vary``, its free-text values differ on every call (the
    query, the note, the limit), so no per-string memo helps them; the enum-like ones repeat."""
    if not vary:
        return ARGUMENTS_200B
    return {**ARGUMENTS_200B, "query": f"select id, title from tickets where id > {i * 7919} order by updated",
            "limit": i % 97, "note": f"triage list {i} for review #{i * 31 % 1000}"}


async def capture(calls: int, home: Path, vary: bool = False) -> tuple[list, object]:
    from mcp import Client

    import mcplens
    server = make_sdk_search("profile-sdk")
    handle = mcplens.instrument(server, home=home, handle_sigterm=False)
    assert handle.active, handle.reason
    pipeline = handle.pipeline
    async with Client(server) as client:
        pipeline.flush()
        for i in range(calls):
            await client.call_tool("search", arguments(i, vary))
        seen = list(pipeline._queue)  # type: ignore[attr-defined]  # the writer sleeps (interval 60 s)
    pipeline.flush()
    return seen, pipeline


def replay(seen: list, pipeline: object, repeat: int) -> tuple[int, int]:
    privacy = pipeline.privacy  # type: ignore[attr-defined]
    events = 0
    t0 = thread_time_ns()
    for _ in range(repeat):
        batch = []
        for build, raw in seen:
            for e in build(raw):
                e = privacy(e)
                if e is not None:
                    batch.append(e)
        events += len(batch)
        pipeline._eventlog.write_batch(batch)  # type: ignore[attr-defined]
    return events, thread_time_ns() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--vary", action="store_true",
                   help="free-text argument values differ on every call, and every timed pass replays "
                        "calls it has not seen before (so no memo of a string's verdict helps them)")
    a = p.parse_args()
    os.environ["MCPLENS_FLUSH_INTERVAL"] = "60"
    home = Path(tempfile.mkdtemp(prefix="mcplens-prof-"))
    passes = 5
    if a.vary:  # one chunk of distinct calls to warm up on, then a fresh chunk per timed pass
        everything, pipeline = asyncio.run(capture(a.calls * (passes + 2), home, True))
        chunks = [everything[k * a.calls:(k + 1) * a.calls] for k in range(passes + 2)]
        a.repeat = 1
    else:
        seen, pipeline = asyncio.run(capture(a.calls, home))
        chunks = [seen] * (passes + 2)
    seen = chunks[0]
    replay(seen, pipeline, 2)  # warm caches
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        replay(chunks[1], pipeline, a.repeat)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(a.top)
    best = []
    for k in range(passes):
        n, ns = replay(chunks[k + 2], pipeline, a.repeat)
        best.append(ns / n / 1000)
    print(f"submissions per call: {len(seen) / a.calls:.2f}; events: {n // a.repeat}; "
          f"writer CPU per event: min {min(best):.1f} us, median {sorted(best)[2]:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
