"""Fail-open: a raising sink, a full queue, an unwritable data directory never fail a call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp

import mcplens
from mcplens.pipeline import pipelines
from tests.conftest import read_events
from tests.servers import sdk_server

CALLS = 30


async def call_many(server: Any, n: int = CALLS) -> list[Any]:
    async with mcp.Client(server, mode="legacy") as client:
        return [await client.call_tool("add", {"a": i, "b": 1}) for i in range(n)]


def assert_all_succeeded(results: list[Any]) -> None:
    assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(len(results))]
    assert not any(r.is_error for r in results)


def pipeline_for(home: Path) -> Any:
    return next(p for p in pipelines() if Path(p.settings.home) == home)


class RaisingSink:
    name = "raising"

    def __init__(self) -> None:
        self.calls = 0

    def export(self, events: list[dict[str, Any]]) -> None:
        self.calls += 1
        raise RuntimeError("exporter down")

    def shutdown(self) -> None:
        raise RuntimeError("still down")


def test_raising_sink_is_counted_and_events_still_stored(home: Path) -> None:
    server = sdk_server.build()
    mcplens.instrument(server, flush_interval=0.05)
    sink = RaisingSink()
    pipeline_for(home).add_exporter(sink)
    results = anyio.run(call_many, server)
    assert_all_succeeded(results)
    mcplens.flush()
    assert sink.calls >= 1
    assert pipeline_for(home).counters["faults"] >= sink.calls
    events = read_events(home, health=True)
    assert len([e for e in events if e.get("mcp.method.name") == "tools/call"]) == CALLS
    health = [e for e in events if e["event.kind"] == "mcplens.health"]
    assert health[-1]["mcplens.health.faults"] >= 1, health


def test_full_queue_drops_and_counts_never_blocks(home: Path) -> None:
    server = sdk_server.build()
    # a writer that never wakes during the test and room for 5 events: the rest must be dropped
    mcplens.instrument(server, queue_size=5, flush_interval=60)
    results = anyio.run(call_many, server)
    assert_all_succeeded(results)
    stats = pipeline_for(home).counters
    total = CALLS + 3  # initialize, notifications/initialized, and the calls
    assert stats["enqueued"] == 5
    assert stats["dropped"] == total - 5
    mcplens.flush()
    events = read_events(home, health=True)
    assert len([e for e in events if e["event.kind"] != "mcplens.health"]) == 5
    assert events[-1]["mcplens.health.dropped"] == total - 5


def test_unwritable_data_dir_never_fails_a_call(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    # Tests run as root, which ignores permission bits; a data directory *under a regular file*
    # cannot be created by anyone, so it stands for "read-only / unwritable" here.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    home = blocker / "home"
    monkeypatch.setenv("MCPLENS_HOME", str(home))
    server = sdk_server.build()
    mcplens.instrument(server)
    results = anyio.run(call_many, server)
    assert_all_succeeded(results)
    mcplens.flush()
    stats = pipeline_for(home).counters
    assert stats["write_failures"] == CALLS + 3
    assert stats["written"] == 0
    assert stats["faults"] >= 1
    assert any("writing the event log" in r.getMessage() for r in caplog.records)


def test_a_builder_that_raises_is_counted_not_raised(home: Path, caplog: Any) -> None:
    server = sdk_server.build()
    handle = mcplens.instrument(server)
    secret = "password=hunter2-correct-horse"

    def broken(raw: Any) -> dict[str, Any]:
        raise ValueError(f"capture bug on {secret}")  # an exception quoting the raw request

    handle._middleware._build = broken
    results = anyio.run(call_many, server)
    assert_all_succeeded(results)
    mcplens.flush()
    assert pipeline_for(home).counters["faults"] >= CALLS
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "event building failed with ValueError" in logged
    assert "hunter2" not in logged


def test_health_records_track_the_counters_to_the_end(home: Path) -> None:
    server = sdk_server.build()
    mcplens.instrument(server, flush_interval=0.05)
    anyio.run(call_many, server)
    pipeline = pipeline_for(home)
    pipeline.close()
    health = [e for e in read_events(home, health=True) if e["event.kind"] == "mcplens.health"]
    assert health, "no health record"
    last = health[-1]
    assert last["mcplens.health.enqueued"] == last["mcplens.health.written"] == CALLS + 3
    assert last["mcplens.health.dropped"] == last["mcplens.health.faults"] == 0
