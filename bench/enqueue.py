"""Request-path cost of the capture middleware's enqueue: ``Pipeline.submit`` (the one enqueue
every capture path uses) against the inlined copy the middleware had before (#14).

Both contenders run in one process over one pipeline whose writer sleeps (drained between
blocks, untimed), blocks interleaved in a shuffled order, pinned to one CPU when possible.
Reports the median µs per awaited call of each and their ratio.

    python bench/enqueue.py [--rounds 40] [--block 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mcplens.capture.sdk import CaptureMiddleware  # noqa: E402
from mcplens.config import Settings  # noqa: E402
from mcplens.pipeline import Pipeline  # noqa: E402


class InlinedEnqueue:
    """The middleware as it was: ``Pipeline.submit`` copied into the middleware."""

    __slots__ = ("_queue", "_capacity", "_counters", "_build")

    def __init__(self, pipeline: Pipeline, build: Any) -> None:
        self._queue = pipeline._queue
        self._capacity = pipeline._capacity
        self._counters = pipeline.counters
        self._build = build

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        t0 = perf_counter()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            result, error = None, exc
        else:
            error = None
        try:
            if len(self._queue) < self._capacity:
                self._queue.append((self._build, (
                    ctx.method, ctx.params, ctx.request_id, ctx.meta, ctx.protocol_version,
                    getattr(ctx.session, "_connection", None), ctx.request, t0, perf_counter(), result, error,
                )))
                self._counters["enqueued"] += 1
            else:
                self._counters["dropped"] += 1
        except Exception:  # noqa: BLE001
            pass
        if error is not None:
            raise error
        return result


class Ctx:
    __slots__ = ("method", "params", "request_id", "meta", "protocol_version", "session", "request")

    def __init__(self) -> None:
        self.method, self.params, self.request_id = "tools/call", {"name": "add", "arguments": {"a": 1}}, 7
        self.meta, self.protocol_version, self.session, self.request = None, "2025-11-25", None, None


async def handler(ctx: Any) -> Any:
    return {"content": []}


async def block(mw: Any, n: int) -> float:
    ctx = Ctx()
    t0 = time.process_time()
    for _ in range(n):
        await mw(ctx, handler)
    return (time.process_time() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--block", type=int, default=5000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(Settings(home=Path(tmp), flush_interval=60, handle_sigterm=False,
                                     queue_size=1 << 20, queue_bytes=1 << 34))
        pipeline._queue.clear()

        def build(raw: Any) -> list[dict[str, Any]]:
            return []

        contenders = {"submit": CaptureMiddleware(pipeline, build), "inlined": InlinedEnqueue(pipeline, build)}
        samples: dict[str, list[float]] = {k: [] for k in contenders}
        rng = random.Random(1)
        for r in range(args.rounds + 2):
            order = list(contenders)
            rng.shuffle(order)
            for name in order:
                us = asyncio.run(block(contenders[name], args.block))
                pipeline._queue.clear()
                if r >= 2:
                    samples[name].append(us)
        pipeline.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    for k, v in med.items():
        print(f"{k:8s} {v:.3f} µs per call (median of {len(samples[k])} blocks of {args.block})")
    print(f"ratio submit/inlined: {med['submit'] / med['inlined']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
