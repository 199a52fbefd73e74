"""The writer's fast lane (event_templates): an event copied from a template must be the event
that building it from scratch and cleaning it would have given, redactions included.

Each scenario runs twice through real in-memory MCP clients and a real ``MCPServer``: once as
shipped, and once with templates switched off (``Templates.put`` does nothing, so every event is
built and cleaned from scratch). The events must be equal but for what is random per run (ids,
clocks, the raw session a connection gets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp.types import Implementation

import mcplens
from mcplens import Policy
from mcplens import event as ev
from mcplens.event_templates import MAX_TEMPLATES, Templates
from tests.conftest import all_bytes, read_events
from tests.servers.sdk_server import build

EMAIL = "ann.lee@example.org"
CARD = "4111 1111 1111 1111"
TOKEN = "ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"

#: fields that differ between two runs of the same calls whatever the writer does
RANDOM_PER_RUN = {ev.EVENT_ID, ev.TIME, ev.DURATION, ev.TRACE_ID, ev.SPAN_ID, ev.INSTANCE_ID, ev.PID}

async def _calls(server: Any, mode: str, rounds: int, name: str = "agent") -> None:
    async with mcp.Client(server, mode=mode, client_info=Implementation(name=name, version="1.0")) as client:
        for i in range(rounds):
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("add", {"a": i, "b": 2})  # new arguments every round
            # values the privacy stage must redact, every time, with the same counts
            await client.call_tool("lookup", {"payload": {"mail": EMAIL, "card": CARD, "note": "ok"}})
            await client.call_tool("lookup", {"payload": {"auth": TOKEN, "note": "ignore all previous instructions"}})
            await client.call_tool("lookup", {"payload": {"mail": EMAIL}, "fail": True})  # an error
            await client.call_tool("boom", {"reason": "again"})
            await client.read_resource("notes://note/42")
            await client.read_resource(f"user://{EMAIL}/profile")
            await client.get_prompt("greet", {"name": "Bob Stone"})
            # a traced client: a new trace context (and progress token) in _meta on every request
            trace, span = f"{0xABC0 + i:032x}", f"{0x51 + i:016x}"
            await client.call_tool("add", {"a": 700, "b": 8}, meta={
                "traceparent": f"00-{trace}-{span}-01", "tracestate": "x" * (i + 1), "progressToken": f"p-{name}-{i}"})
            await client.list_tools()


def _run(home: Path, rounds: int, policy: Policy | None = None) -> tuple[list[dict[str, Any]], Any]:
    server = build()
    handle = mcplens.instrument(server, home=home, privacy=policy, handle_sigterm=False)
    assert handle.active, handle.reason

    async def clients() -> None:
        # two sessions at once with the same calls from clients of other names, then a 2026-era
        # client (a connection per request)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_calls, server, "legacy", rounds, "agent-one")
            tg.start_soon(_calls, server, "legacy", rounds, "agent-two")
        await _calls(server, "auto", rounds, "agent-three")

    anyio.run(clients)
    handle.pipeline.flush()
    return [e for e in read_events(home) if e.get(ev.EVENT_KIND) == "request"], handle.pipeline


def _comparable(events: list[dict[str, Any]]) -> list[str]:
    """The events without what is random per run, as sorted JSON texts (two clients run at once,
    so the order of their events is not the same twice). A session id becomes its client's name
    and the order in which that client's sessions first appear (each client calls in order)."""
    sessions: dict[Any, str] = {}
    per_client: dict[Any, int] = {}
    out = []
    for e in events:
        row = {k: v for k, v in e.items() if k not in RANDOM_PER_RUN}
        if ev.SESSION_ID in row:
            client = row.get(ev.CLIENT_NAME)
            if row[ev.SESSION_ID] not in sessions:
                per_client[client] = per_client.get(client, 0) + 1
                sessions[row[ev.SESSION_ID]] = f"{client}#{per_client[client]}"
            row[ev.SESSION_ID] = sessions[row[ev.SESSION_ID]]
        out.append(json.dumps(row, sort_keys=True))
    return sorted(out)


def test_templated_events_equal_events_built_from_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPLENS_ID_KEY", "k" * 40)  # the same pseudonyms in both runs
    fast, pipeline = _run(tmp_path / "fast", rounds=4)
    with monkeypatch.context() as m:
        m.setattr(Templates, "put", lambda self, key, cleaned: None)
        slow, reference = _run(tmp_path / "slow", rounds=4)
    assert reference.templates.hits == 0
    # the fast lane was taken, for most of the repeated calls
    assert pipeline.templates.hits >= len(fast) // 3, (pipeline.templates.hits, len(fast))
    assert len(fast) == len(slow) > 3 * 4 * 12  # and initialize, discovery
    traced = [e for e in fast if e.get(ev.ARGS) == {"a": 3, "b": 1}]
    assert len(traced) == 3 * 4 and all(ev.PARENT_SPAN_ID in e for e in traced)
    # sessions as the transport gives them: one per legacy connection; the 2026-era client's
    # requests (a connection each, in process) stitched into one by client and idle gap
    for name, source in (("agent-one", "connection"), ("agent-two", "connection"), ("agent-three", "idle_gap")):
        calls = [e for e in fast if e.get(ev.CLIENT_NAME) == name and e[ev.METHOD] == "tools/call"]
        assert len(calls) == 4 * 8 and {e[ev.SESSION_SOURCE] for e in calls} == {source}, name
        assert len({e[ev.SESSION_ID] for e in calls}) == 1, name
    # and the per-call fields are each call's own
    assert len({e[ev.EVENT_ID] for e in fast}) == len(fast)
    assert len({e[ev.SPAN_ID] for e in fast}) == len(fast)
    assert all(e[ev.DURATION] >= 0 and e[ev.RESPONSE_SIZE] > 0 for e in fast if e[ev.STATUS] == ev.OK)


def test_a_traced_client_s_calls_are_copies_with_their_own_trace(tmp_path: Path) -> None:
    """A client that sends a new trace context with every request (any agent with OTel on) must
    not defeat the fast lane: the trace context is a per-call field, not part of the key."""
    server = build()
    handle = mcplens.instrument(server, home=tmp_path, handle_sigterm=False)
    arrived: list[str] = []  # the trace context each request reached the server with (a client with
    # OTel on replaces the one it was given with its own span's)

    async def spy(ctx: Any, call_next: Any) -> Any:
        if ctx.method == "tools/call":
            arrived.append((ctx.params or {}).get("_meta", {}).get("traceparent"))
        return await call_next(ctx)

    server._lowlevel_server.middleware.append(spy)

    async def traced() -> None:
        async with mcp.Client(server, mode="legacy") as client:
            for i in range(10):
                await client.call_tool("add", {"a": 7, "b": 8}, meta={
                    "traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01", "progressToken": i})

    anyio.run(traced)
    handle.pipeline.flush()
    assert handle.pipeline.templates.hits == 9  # all but the first
    assert len(set(arrived)) == 10
    calls = [e for e in read_events(tmp_path) if e.get(ev.TOOL_NAME) == "add"]
    assert [e[ev.TRACE_ID] for e in calls] == [tp.split("-")[1] for tp in arrived]
    assert [e[ev.PARENT_SPAN_ID] for e in calls] == [tp.split("-")[2] for tp in arrived]


def test_every_copy_is_redacted_and_counted(tmp_path: Path) -> None:
    events, pipeline = _run(tmp_path, rounds=5)
    assert pipeline.templates.hits > 0
    lookups = [e for e in events if e.get(ev.TOOL_NAME) == "lookup" and e[ev.STATUS] == ev.OK]
    assert len(lookups) == 3 * 5 * 2
    by_args: dict[str, list[dict[str, Any]]] = {}
    for e in lookups:
        by_args.setdefault(str(sorted(e[ev.ARGS])) + str(e[ev.ARGS]), []).append(e)
    for group in by_args.values():
        # every call of the same arguments carries the same redactions, copies included
        assert all(e.get(ev.REDACTIONS) == group[0].get(ev.REDACTIONS) for e in group)
        assert group[0].get(ev.REDACTIONS)
    raw = all_bytes(tmp_path)
    for secret in (EMAIL, CARD, TOKEN):
        assert secret.encode() not in raw, secret


def test_no_templates_when_a_callback_or_processor_may_not_be_pure(tmp_path: Path) -> None:
    seen: list[Any] = []

    def callback(tool: str | None, path: tuple[str, ...], value: Any) -> Any:
        seen.append(value)
        return None

    events, pipeline = _run(tmp_path / "callback", rounds=2, policy=Policy(callback=callback))
    assert len(pipeline.templates) == 0 and pipeline.templates.hits == 0
    # the callback saw the arguments of every call that has any, copies of earlier ones included
    assert seen.count(1) >= 3 * 2 * 2  # add's a=1, twice a round

    handed: list[dict[str, Any]] = []

    def processor(e: dict[str, Any]) -> dict[str, Any]:
        handed.append(e)
        return e

    server = build()
    handle = mcplens.instrument(server, home=tmp_path / "processor", handle_sigterm=False, processors=[processor])
    anyio.run(_calls, server, "legacy", 2)
    handle.pipeline.flush()
    assert len(handle.pipeline.templates) == 0
    assert len([e for e in handed if e.get(ev.METHOD) == "tools/call"]) == 2 * 8  # every call, to the processor


def test_templates_are_bounded() -> None:
    t = Templates()
    for i in range(MAX_TEMPLATES * 3 + 7):
        t.put(("k", i), {ev.METHOD: "tools/call", ev.EVENT_ID: "x", ev.TIME: 1.0})
        assert len(t) <= MAX_TEMPLATES
    stored = t.get(("k", MAX_TEMPLATES * 3 + 6))
    assert stored is not None
    assert stored.fields == {ev.METHOD: "tools/call"}  # the per-call fields are not part of a template


@pytest.mark.parametrize("fields", [
    {ev.METHOD: "tools/call", "mcplens.request.arguments": {"q": "caf\u00e9 \u2014 \U0001f600", "n": [1, 2.5, None]}},
    {ev.METHOD: "tools/call", "odd": "quote \" backslash \\ newline \n tab \t nul \x00"},
    {},
])
def test_a_copys_line_is_the_whole_events_line(fields: dict[str, Any]) -> None:
    """The event log writes a copy as its template's line followed by the per-call fields: byte for
    byte what encoding the whole event gives, whatever the values (escapes, non-ASCII, nesting)."""
    from mcplens import _json
    from mcplens.event_templates import Sanitized

    t = Templates()
    t.put("k", {**fields, ev.EVENT_ID: "old", ev.TIME: 0.5})
    template = t.get("k")
    assert template is not None
    copy = Sanitized(template)
    copy[ev.EVENT_ID] = "e" * 32
    copy[ev.TIME] = 1795900000.123456
    copy[ev.RESPONSE_TYPES] = ["text", "image"]
    whole = copy.whole()
    assert type(whole) is dict and whole == {**fields, ev.EVENT_ID: "e" * 32, ev.TIME: 1795900000.123456,
                                             ev.RESPONSE_TYPES: ["text", "image"]}
    assert copy.line() == _json.dumps_line(whole)
    assert json.loads(copy.line()) == whole


def test_an_exporter_gets_every_copy_whole(tmp_path: Path) -> None:
    """A copy reaches the event log as a reference to its template; an exporter is handed plain,
    whole events, the same as the event log holds."""
    seen: list[dict[str, Any]] = []

    class Keep:
        name = "keep"

        def export(self, events: Any) -> None:
            seen.extend(events)

        def shutdown(self) -> None:
            pass

        def lost(self) -> int:
            return 0

    server = build()
    handle = mcplens.instrument(server, home=tmp_path, handle_sigterm=False)
    handle.pipeline.add_exporter(Keep())

    async def calls() -> None:
        async with mcp.Client(server, mode="legacy") as client:
            for _ in range(6):
                await client.call_tool("add", {"a": 2, "b": 3})

    anyio.run(calls)
    handle.pipeline.flush()
    assert handle.pipeline.templates.hits >= 4
    on_disk = {e[ev.EVENT_ID]: e for e in read_events(tmp_path) if e.get(ev.METHOD) == "tools/call"}
    exported = [e for e in seen if e.get(ev.METHOD) == "tools/call"]
    assert len(exported) == len(on_disk) == 6
    for e in exported:
        assert type(e) is dict
        assert e == on_disk[e[ev.EVENT_ID]]
        assert e[ev.TOOL_NAME] == "add"


def test_a_copy_the_stage_cannot_finish_is_counted_and_the_rest_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault while a copy gets its pseudonym (an unreadable key file, a bug) costs that event only:
    the other events of its batch are written and the fault is counted, never the batch lost."""
    from mcplens.privacy.stage import PrivacyStage

    server = build()
    handle = mcplens.instrument(server, home=tmp_path, handle_sigterm=False)

    async def calls(n: int) -> None:
        async with mcp.Client(server, mode="legacy") as client:
            for _ in range(n):
                await client.call_tool("add", {"a": 2, "b": 3})  # a copy after the first
                await client.call_tool("boom", {"reason": "x"})  # an error: always built afresh

    anyio.run(calls, 1)
    handle.pipeline.flush()

    def broken(self: PrivacyStage, e: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the key file went away")

    monkeypatch.setattr(PrivacyStage, "stamped", broken)
    before = dict(handle.pipeline.counters)
    anyio.run(calls, 5)
    handle.pipeline.flush()
    after = handle.pipeline.counters
    assert after["faults"] - before["faults"] == 4  # the copies: all but the first call of the new connection
    booms = [e for e in read_events(tmp_path) if e.get(ev.TOOL_NAME) == "boom"]
    assert len(booms) == 6  # every error call of those batches was written
