#!/usr/bin/env python
"""Per-request cost of the ASGI hook that records HTTP auth refusals (capture/sdk.py RefusalRecorder).

Every HTTP request to an instrumented server's app passes through it; only a 401/403 does any
work (reads the unread body, enqueues an event). Measured: ``await app(scope, receive, send)``
in a tight loop for a bare ASGI app that answers 200 (reading the body) and the same app wrapped
by the hook; and, separately, an app answering 401 without reading the body, bare and wrapped
(the refused path: body read + enqueue; the event is built later on the writer thread).
Contenders interleave in blocks inside one run; the figure is the median of per-block µs/request.

Run ``taskset -c 1 python bench/asgi_hook.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mcplens.capture.sdk import EventBuilder, RefusalRecorder
from mcplens.config import from_env
from mcplens.pipeline import get_pipeline

BODY = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}'
SCOPE = {"type": "http", "method": "POST", "path": "/mcp", "client": ("127.0.0.1", 5555),
         "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")]}


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def refuse_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(msg: Any) -> None:
    return None


async def block(app: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await app(SCOPE, receive, send)
    return (time.perf_counter() - t0) / n * 1e6


async def main() -> None:
    home = Path(tempfile.mkdtemp())
    pipeline = get_pipeline(from_env().with_overrides(home=home, queue_size=1 << 20))
    build = EventBuilder(pipeline, "bench", "1", "sdk")
    contenders = {
        "bare 200": ok_app, "hooked 200": RefusalRecorder(ok_app, pipeline, build),
        "bare 401": refuse_app, "hooked 401": RefusalRecorder(refuse_app, pipeline, build),
    }
    results: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(3):  # warm-up
        for app in contenders.values():
            await block(app, 2000)
    for _ in range(40):
        for name, app in contenders.items():
            results[name].append(await block(app, 2000))
        pipeline.drain()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(f"{k:12s} {v:7.2f} µs/request")
    print(f"added on a normal request: {med['hooked 200'] - med['bare 200']:+.2f} µs")
    print(f"added on a refused request (request path; the event is built on the writer thread): "
          f"{med['hooked 401'] - med['bare 401']:+.2f} µs")
    pipeline.close()


if __name__ == "__main__":
    asyncio.run(main())
