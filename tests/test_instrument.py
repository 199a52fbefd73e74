"""The one-line API: supported servers, idempotence, clear errors, the kill switch."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import tomllib
from pathlib import Path
from typing import Any

import anyio
import mcp
import mcp_types as types
import pytest
from mcp.server.lowlevel import Server

import mcplens
from mcplens.capture.sdk import CaptureMiddleware
from tests.conftest import RawStdioClient, read_events
from tests.servers import fastmcp_server, sdk_server


def lowlevel_server() -> Server:
    """A low-level SDK Server whose tool handler lets exceptions escape as they are."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name="explode", inputSchema={"type": "object"}),
            types.Tool(name="slow", inputSchema={"type": "object"}),
        ])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "explode":
            raise ConnectionRefusedError("10.20.30.40:5432 refused")
        if params.name == "slow":
            raise TimeoutError("upstream deadline")
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])

    return Server("lowlevel-fixture", version="0.9", on_list_tools=list_tools, on_call_tool=call_tool)


def count_ours(low: Any) -> int:
    return sum(isinstance(m, CaptureMiddleware) for m in low.middleware)


def test_lowlevel_server_exceptions_are_their_own_status(home: Path) -> None:
    server = lowlevel_server()
    mcplens.instrument(server)

    async def main() -> list[Any]:
        out = []
        async with mcp.Client(server, mode="legacy") as c:
            for name in ("explode", "slow", "fine"):
                try:
                    out.append(await c.call_tool(name, {}))
                except Exception as exc:  # noqa: BLE001
                    out.append(exc)
        return out

    seen = anyio.run(main)
    assert isinstance(seen[0], Exception) and isinstance(seen[1], Exception)  # the client got errors
    assert seen[2].is_error is False
    mcplens.flush()
    calls = {e["mcplens.target"]: e for e in read_events(home) if e["mcp.method.name"] == "tools/call"}
    assert calls["explode"]["mcplens.status"] == "exception"
    assert calls["explode"]["error.type"] == "ConnectionRefusedError"
    assert calls["explode"]["mcplens.error.category"] == "connection_failure"
    assert calls["slow"]["mcplens.status"] == "timeout"
    assert calls["slow"]["mcplens.error.category"] == "backend_timeout"
    assert calls["fine"]["mcplens.status"] == "ok"
    assert calls["fine"]["mcplens.server.name"] == "lowlevel-fixture"
    assert "10.20.30.40" not in json.dumps(list(calls.values()))
    assert calls["explode"]["mcplens.error.message"].endswith(":5432 refused")
    assert calls["explode"]["mcplens.redactions"] == {"IPV4": 1}


def test_instrument_twice_is_a_noop(home: Path) -> None:
    for server, low in ((s := sdk_server.build(), s._lowlevel_server), (f := fastmcp_server.build(), f._mcp_server)):
        first = mcplens.instrument(server)
        second = mcplens.instrument(server)
        assert second is first and first.active
        assert count_ours(low) == 1
        assert isinstance(low.middleware[0], CaptureMiddleware)


def test_uninstrument_restores_the_middleware_list(home: Path) -> None:
    server = sdk_server.build()
    before = list(server._lowlevel_server.middleware)
    handle = mcplens.instrument(server)
    handle.uninstrument()
    assert server._lowlevel_server.middleware == before
    again = mcplens.instrument(server)
    assert again is not handle and again.active


@pytest.mark.parametrize("thing", [object(), "server", 42, None])
def test_unsupported_object_is_a_clear_type_error(thing: Any, home: Path) -> None:
    with pytest.raises(TypeError, match="supports an mcp SDK MCPServer"):
        mcplens.instrument(thing)
    assert not home.exists()


def test_unknown_option_is_rejected_before_touching_the_server(home: Path) -> None:
    server = sdk_server.build()
    before = list(server._lowlevel_server.middleware)
    with pytest.raises(TypeError, match="flush_intervall"):
        mcplens.instrument(server, flush_intervall=1)  # type: ignore[call-arg]
    assert server._lowlevel_server.middleware == before


def test_every_setting_is_a_typed_keyword_only_option_of_instrument() -> None:
    """The typed signature and Settings never drift apart: each field is an option, keyword-only."""
    params = inspect.signature(mcplens.instrument).parameters
    options = {name: p for name, p in params.items() if name != "server"}
    assert set(options) == {f.name for f in dataclasses.fields(mcplens.Settings)}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in options.values())
    assert all(p.annotation != inspect.Parameter.empty for p in params.values())
    with pytest.raises(TypeError):
        mcplens.instrument(sdk_server.build(), "/tmp/home")  # type: ignore[misc]


def test_the_package_ships_its_type_information() -> None:
    """py.typed marks the package as typed (PEP 561) and is declared as package data."""
    root = Path(mcplens.__file__).parent
    assert (root / "py.typed").is_file()
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["mcplens"]


def test_malformed_environment_names_the_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPLENS_QUEUE_SIZE", "lots")
    with pytest.raises(ValueError, match="MCPLENS_QUEUE_SIZE"):
        mcplens.instrument(sdk_server.build())


def test_kill_switch_leaves_the_server_untouched(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPLENS_DISABLED", "1")
    server = sdk_server.build()
    before = list(server._lowlevel_server.middleware)
    handle = mcplens.instrument(server)
    assert not handle.active and "MCPLENS_DISABLED" in handle.reason
    assert server._lowlevel_server.middleware == before

    async def main() -> Any:
        async with mcp.Client(server) as c:
            return await c.call_tool("add", {"a": 1, "b": 2})

    assert anyio.run(main).structured_content == {"result": 3}
    assert not home.exists()


def test_response_size_is_the_reply_as_sent_on_stdio(home: Path) -> None:
    client = RawStdioClient.module("tests.servers.sdk_server", home)
    client.handshake()
    client.request("tools/list")
    client.request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 2}})
    client.request("tools/call", {"name": "crash", "arguments": {}})
    client.request("resources/read", {"uri": "notes://note/7"})
    client.request("acme/unknown", {})
    client.close_stdin()
    assert client.wait() == 0
    events = {int(e["jsonrpc.request.id"]): e for e in read_events(home) if e["event.kind"] == "request"}
    assert set(events) == set(client.reply_sizes)
    for rid, size in client.reply_sizes.items():
        assert events[rid]["mcplens.response.size_bytes"] == size, (events[rid]["mcp.method.name"], size)


def test_cancelled_request_is_recorded_as_cancelled(home: Path) -> None:
    server = sdk_server.build()

    @server.tool()
    async def hang() -> str:
        await asyncio.sleep(30)
        return "never"

    mcplens.instrument(server)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            with anyio.move_on_after(0.3):
                await c.call_tool("hang", {})

    anyio.run(main)
    mcplens.flush()
    hang_events = [e for e in read_events(home) if e.get("mcplens.target") == "hang"]
    assert len(hang_events) == 1
    assert hang_events[0]["mcplens.status"] == "cancelled"
    assert 0.2 < hang_events[0]["duration_s"] < 5
