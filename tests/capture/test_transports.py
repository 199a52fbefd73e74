"""Real clients against real instrumented servers, every framework, transport and protocol era.

Each case drives the same script (handshake/discover, tools/list, a good call, a tool that
fails, a tool that raises, an unknown tool, bad arguments, an unknown method, a resource read,
a prompt) and then checks the recorded events field by field.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import fastmcp
import mcp
import mcp_types
import pytest
from mcp import StdioServerParameters

import mcplens
from tests.conftest import REPO, all_bytes, http_server, read_events, subprocess_env
from tests.servers import fastmcp_server, sdk_server

CLIENT = mcp_types.Implementation(name="matrix-agent", version="7.1")
SECRET_ARG = "zebulon.quixote@example.org"  # personal data in an argument: must never reach disk
MODULES = {"sdk": "tests.servers.sdk_server", "fastmcp": "tests.servers.fastmcp_server"}
BUILDERS = {"sdk": sdk_server.build, "fastmcp": fastmcp_server.build}


class Driver:
    """One API over mcp.Client and fastmcp.Client, returning what the client saw."""

    def __init__(self, client: Any, kind: str) -> None:
        self.client, self.kind = client, kind

    async def list_tools(self) -> list[str]:
        tools = await self.client.list_tools()
        return [t.name for t in (tools.tools if hasattr(tools, "tools") else tools)]

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        if self.kind == "fastmcp":
            return await self.client.call_tool_mcp(name, args)
        return await self.client.call_tool(name, args)

    async def read(self, uri: str) -> Any:
        return await self.client.read_resource(uri)

    async def prompt(self, name: str, args: dict[str, Any]) -> Any:
        return await self.client.get_prompt(name, args)

    async def unknown_method(self) -> Exception | None:
        try:
            await self.client.session.send_request(
                mcp_types.Request(method="acme/unknown", params=None), dict
            )
        except Exception as exc:  # noqa: BLE001 - the error is what we want
            return exc
        return None


@contextlib.asynccontextmanager
async def connect(client_kind: str, target: Any, era: str) -> AsyncIterator[Driver]:
    mode = "legacy" if era == "legacy" else "auto"
    if client_kind == "mcp":
        async with mcp.Client(target, client_info=CLIENT, mode=mode) as c:
            yield Driver(c, "mcp")
    else:
        async with fastmcp.Client(target, client_info=CLIENT, mode=mode) as c:
            yield Driver(c, "fastmcp")


def target_for(client_kind: str, transport: str, framework: str, home: Path, url: str | None) -> Any:
    if transport == "inproc":
        server = BUILDERS[framework]()
        mcplens.instrument(server)
        if client_kind == "mcp" and framework == "fastmcp":
            return server._mcp_server  # mcp.Client connects in-process to the SDK Server FastMCP serves through
        return server
    if transport == "http":
        return url
    args = ["-m", MODULES[framework]]
    if client_kind == "mcp":
        return StdioServerParameters(command=sys.executable, args=args, cwd=str(REPO), env=subprocess_env(home))
    from fastmcp.client.transports import StdioTransport

    return StdioTransport(command=sys.executable, args=args, cwd=str(REPO), env=subprocess_env(home))


async def run_script(driver: Driver) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    seen["tools"] = await driver.list_tools()
    seen["add"] = await driver.call("add", {"a": 2, "b": 3})
    seen["boom"] = await driver.call("boom", {"reason": SECRET_ARG})
    seen["crash"] = await driver.call("crash", {})
    seen["unknown_tool"] = await driver.call("no_such_tool", {})
    seen["bad_args"] = await driver.call("add", {"a": "not-a-number"})
    seen["unknown_method"] = await driver.unknown_method()
    seen["resource"] = await driver.read("notes://note/alice-42")
    seen["prompt"] = await driver.prompt("greet", {"name": SECRET_ARG})
    return seen


MATRIX = [
    (framework, transport, era, client)
    for framework in ("sdk", "fastmcp")
    for transport in ("inproc", "stdio", "http")
    for era in ("legacy", "modern")
    for client in ("mcp", "fastmcp")
]


@pytest.mark.parametrize(("framework", "transport", "era", "client_kind"), MATRIX, ids=["-".join(m) for m in MATRIX])
def test_every_request_recorded_field_by_field(
    framework: str, transport: str, era: str, client_kind: str, home: Path
) -> None:
    async def main() -> dict[str, Any]:
        with http_server(MODULES[framework], home) if transport == "http" else contextlib.nullcontext() as url:
            target = target_for(client_kind, transport, framework, home, url)
            async with connect(client_kind, target, era) as driver:
                return await run_script(driver)

    seen = anyio.run(main)
    mcplens.flush()
    events = read_events(home)
    check_events(events, seen, framework=framework, transport=transport, era=era)
    assert SECRET_ARG.encode() not in all_bytes(home)


def by_target(events: list[dict[str, Any]], method: str, target: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in events
        if e["mcp.method.name"] == method and (target is None or e.get("mcplens.target") == target)
    ]


def one(events: list[dict[str, Any]], method: str, target: str | None = None) -> dict[str, Any]:
    found = by_target(events, method, target)
    assert len(found) == 1, (method, target, found)
    return found[0]


def check_events(
    events: list[dict[str, Any]], seen: dict[str, Any], *, framework: str, transport: str, era: str
) -> None:
    server_name = {"sdk": "sdk-fixture", "fastmcp": "fastmcp-fixture"}[framework]
    server_version = {"sdk": "1.2.3", "fastmcp": "4.5.6"}[framework]
    wire = {"inproc": "inproc", "stdio": "pipe", "http": "tcp"}[transport]
    requests = [e for e in events if e["event.kind"] == "request"]

    # every event carries the common identity fields
    for e in events:
        assert e["mcplens.server.name"] == server_name
        assert e["mcplens.server.version"] == server_version
        assert e["mcplens.capture"] == ("fastmcp" if framework == "fastmcp" else "sdk")
        assert e["network.transport"] == wire
        assert len(e["event.id"]) == 32 and len(e["trace_id"]) == 32 and len(e["span_id"]) == 16
        assert e["time"] > 1.7e9 and e["duration_s"] >= 0
        assert e["mcplens.instance.id"] and e["process.pid"] > 0
    ids = [e["event.id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was recorded twice"

    # handshake or discover
    if era == "legacy":
        init = one(events, "initialize")
        assert init["mcp.protocol.version"] == "2025-11-25"
        notes = [e for e in events if e["event.kind"] == "notification"]
        assert "notifications/initialized" in {e["mcp.method.name"] for e in notes}
        assert all("mcplens.status" not in e for e in notes)
    else:
        disc = one(events, "server/discover")
        assert disc["mcp.protocol.version"] == "2026-07-28"
        assert not by_target(events, "initialize")
    for e in requests:
        assert e["mcplens.client.name"] == "matrix-agent", e
        assert e["mcplens.client.version"] == "7.1"
        assert e["mcplens.client.id"].startswith("c_")
        assert e["mcplens.status"] in mcplens.event.STATUSES
        assert e["mcplens.response.size_bytes"] > 30
        assert e["mcplens.response.tokens_est"] == math.ceil(e["mcplens.response.size_bytes"] / 4)
        assert e["jsonrpc.request.id"]
    # sessions: the transport's own session (legacy HTTP), the pipe (stdio), the connection (in-memory)
    if not (transport == "http" and era == "modern"):
        assert all(e.get("mcp.session.id", "").startswith("s_") for e in requests)
    if transport in ("stdio",) or (transport == "http" and era == "legacy"):
        assert len({e["mcp.session.id"] for e in requests}) == 1
    if transport == "http":
        assert all(e["client.address"].startswith("ip_") for e in requests)
        assert not any("127.0.0.1" in str(v) for e in events for v in e.values())
    else:
        assert all("client.address" not in e for e in events)

    listed = one(events, "tools/list")
    assert listed["mcplens.status"] == "ok"
    assert listed["mcplens.response.items"] == len(seen["tools"]) >= 3

    calls_add = by_target(events, "tools/call", "add")  # the good call and the bad-arguments one
    assert len(calls_add) == 2
    ok = next(e for e in calls_add if e["mcplens.status"] == "ok")
    assert ok["gen_ai.tool.name"] == "add" and ok["gen_ai.operation.name"] == "execute_tool"
    assert ok["mcplens.request.args"] == {"a": 1, "b": 1}
    assert ok["mcplens.request.arguments"] == {"a": 2, "b": 3}  # harmless values are kept
    assert "mcplens.redactions" not in ok
    assert "error.type" not in ok and "mcplens.error.category" not in ok
    assert ok["mcplens.response.items"] == 1 and ok["mcplens.response.content_types"] == ["text"]
    assert seen["add"].is_error is False

    bad = next(e for e in calls_add if e is not ok)
    assert bad["mcplens.status"] == "tool_error" and bad["error.type"] == "tool_error"
    assert bad["mcplens.error.category"] == "invalid_params"
    assert bad["mcplens.request.args"] == {"a": len('"not-a-number"')}
    assert seen["bad_args"].is_error is True

    boom = one(events, "tools/call", "boom")
    assert boom["mcplens.status"] == "tool_error" and boom["error.type"] == "tool_error"
    assert boom["mcplens.error.category"] == "backend_timeout"
    assert boom["mcplens.request.args"] == {"reason": len(SECRET_ARG) + 2}
    assert boom["mcplens.request.arguments"] == {"reason": "[EMAIL]"}
    assert boom["mcplens.redactions"] == {"EMAIL": 1}
    assert boom["mcplens.error.message"].endswith("backend timed out after 30s")
    assert seen["boom"].is_error is True

    crash = one(events, "tools/call", "crash")
    assert crash["mcplens.status"] == "tool_error" and crash["mcplens.error.category"] == "internal"

    unknown = one(events, "tools/call", "no_such_tool")
    assert unknown["mcplens.status"] == "tool_error" and unknown["mcplens.error.category"] == "not_found"

    method = one(events, "acme/unknown")
    assert method["mcplens.status"] == "jsonrpc_error"
    assert method["error.type"] == method["rpc.response.status_code"] == "-32601"
    assert method["mcplens.error.category"] == "not_found"
    assert seen["unknown_method"] is not None

    res = one(events, "resources/read")
    assert res["mcplens.status"] == "ok"
    # the server's own template, learnt from its registry (MCPServer and FastMCP alike)
    assert res["mcp.resource.uri"] == res["mcplens.target"] == "notes://note/{note_id}"
    assert res["mcplens.response.items"] == 1
    assert "alice" not in str(events)

    prompt = one(events, "prompts/get", "greet")
    assert prompt["mcplens.status"] == "ok" and prompt["gen_ai.prompt.name"] == "greet"
    assert prompt["mcplens.request.args"] == {"name": len(SECRET_ARG) + 2}
    assert prompt["mcplens.request.arguments"]["name"] in ("[EMAIL]", "[REDACTED:NAME]")
    assert prompt["mcplens.response.items"] == 1
