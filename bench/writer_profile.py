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


async def capture(calls: int, home: Path) -> tuple[list, object]:
    from mcp import Client

    import mcplens
    server = make_sdk_search("profile-sdk")
    handle = mcplens.instrument(server, home=home, handle_sigterm=False)
    assert handle.active, handle.reason
    pipeline = handle.pipeline
    async with Client(server) as client:
        pipeline.flush()
        for _ in range(calls):
            await client.call_tool("search", ARGUMENTS_200B)
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
    a = p.parse_args()
    os.environ["MCPLENS_FLUSH_INTERVAL"] = "60"
    home = Path(tempfile.mkdtemp(prefix="mcplens-prof-"))
    seen, pipeline = asyncio.run(capture(a.calls, home))
    replay(seen, pipeline, 2)  # warm caches
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        replay(seen, pipeline, a.repeat)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(a.top)
    best = []
    for _ in range(5):
        n, ns = replay(seen, pipeline, a.repeat)
        best.append(ns / n / 1000)
    print(f"submissions per call: {len(seen) / a.calls:.2f}; events: {n // a.repeat}; "
          f"writer CPU per event: min {min(best):.1f} us, median {sorted(best)[2]:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
