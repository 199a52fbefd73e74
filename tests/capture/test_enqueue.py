"""One enqueue per raw capture, on every capture path; a built event is never queued again.

The proxy's builder used to hand the first event of a raw item back and re-submit the others to
the queue: they were counted twice as enqueued and could be dropped after being built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp

import mcplens
from mcplens.capture.jsonrpc import CLIENT_TO_SERVER, SERVER_TO_CLIENT
from mcplens.capture.proxy_stdio import StdioCapture, _LineCutter
from mcplens.config import Settings
from mcplens.pipeline import Pipeline
from tests.conftest import read_events
from tests.servers import sdk_server


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_in_process_capture_enqueues_once_per_exchange(home: Path) -> None:
    server = sdk_server.build()
    handle = mcplens.instrument(server, flush_interval=60)

    async def run() -> None:
        async with mcp.Client(server, mode="legacy") as client:
            for i in range(7):
                await client.call_tool("add", {"a": i, "b": 1})
            await client.list_tools()

    anyio.run(run)
    mcplens.flush()
    exchanges = [e for e in read_events(home) if e["event.kind"] in ("request", "notification")]
    counters = handle.pipeline.counters
    methods = [e["mcp.method.name"] for e in exchanges]
    assert methods.count("tools/call") == 7 and methods.count("tools/list") >= 1 and "initialize" in methods
    assert counters["enqueued"] == len(exchanges) == counters["written"]
    assert counters["dropped"] == 0


def test_a_proxy_line_that_completes_several_calls_is_enqueued_once_and_never_dropped(tmp_path: Path) -> None:
    """A JSON-RPC batch reply (one line, five calls) through the stdio relay's own enqueue, with a
    queue that holds just the two lines: all five events are written, nothing is enqueued twice."""
    settings = Settings(home=tmp_path / "home", queue_size=2, flush_interval=60, handle_sigterm=False)
    pipeline = Pipeline(settings)
    try:
        capture = StdioCapture(pipeline, settings)
        client, server = (_LineCutter(pipeline, capture, d) for d in (CLIENT_TO_SERVER, SERVER_TO_CLIENT))
        n = 5
        client.feed(line([{"jsonrpc": "2.0", "id": i, "method": "tools/call",
                           "params": {"name": "add", "arguments": {"a": i}}} for i in range(n)]), 1.0)
        server.feed(line([{"jsonrpc": "2.0", "id": i, "result": {"content": []}} for i in range(n)]), 2.0)
        assert pipeline.counters["enqueued"] == 2  # two lines relayed: two raw captures
        assert pipeline.drain() == n
        # a line with three calls in flight, then the server exits: one raw capture, three events
        client.feed(line([{"jsonrpc": "2.0", "id": 10 + i, "method": "ping"} for i in range(3)]), 3.0)
        server.eof(4.0)
        assert pipeline.drain() == 3
        counters = dict(pipeline.counters)
    finally:
        pipeline.close()
    assert counters["enqueued"] == 4 and counters["dropped"] == 0 and counters["written"] == n + 3
    calls = [e for e in read_events(settings.home) if e["event.kind"] == "request"]
    assert sorted(e["jsonrpc.request.id"] for e in calls) == sorted(str(i) for i in [*range(n), 10, 11, 12])
    assert sum(e["mcplens.status"] == "exception" for e in calls) == 3  # ServerExited
