"""In-process capture sees requests the HTTP auth layer refuses (401/403), and keeps no token."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from tests.conftest import REPO, all_bytes, free_port, poll, read_events, stop, subprocess_env, wait_port

WRONG = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.Zm9yZ2VkLXNpZ25hdHVyZS0xMjM0NTY3OA"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def call(name: str) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {"a": 1}}}


@pytest.mark.parametrize("module", ["tests.servers.fastmcp_auth_server", "tests.servers.sdk_auth_server"])
def test_refused_requests_are_recorded_as_unauthorized_without_the_token(home: Path, tmp_path: Path,
                                                                        module: str) -> None:
    port = free_port()
    token_file = tmp_path / "token"
    proc = subprocess.Popen([sys.executable, "-m", module, "--http", str(port),
                             str(token_file)], cwd=REPO, env=subprocess_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_port(port, proc, timeout=60)
        token = token_file.read_text()
        statuses = []
        for auth in (None, f"Bearer {WRONG}", f"Bearer {token}x", "Basic dXNlcjpodW50ZXIy"):
            headers = {**HEADERS, **({"authorization": auth} if auth else {})}
            req = urllib.request.Request(url, data=json.dumps(call("add")).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own 127.0.0.1 server
                    statuses.append(resp.status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)
        assert statuses == [401] * 4

        async def clients() -> tuple[object, str]:
            refused: object = None
            try:
                async with Client(url, auth=WRONG) as c:
                    await c.list_tools()
            except Exception as e:  # noqa: BLE001 - the refusal, whatever the client makes of it
                refused = e
            async with Client(url, auth=token) as c:
                ok = (await c.call_tool("add", {"a": 2, "b": 3})).content[0].text
            return refused, ok

        refused, ok = anyio.run(clients)
        assert refused is not None and ok == "5"
    finally:
        stop(proc)
    events = read_events(home)
    bad = [e for e in events if e["mcplens.status"] == "unauthorized"]
    raw = [e for e in bad if e.get("mcplens.target") == "add"]
    assert len(raw) == 4 and all(e["mcp.method.name"] == "tools/call" for e in raw)
    assert all(e["mcplens.error.category"] == "auth" and e["network.transport"] == "tcp" for e in bad)
    assert all(e["mcplens.proxy.http_status"] == 401 for e in bad)
    assert any(e["mcp.method.name"] == "initialize" for e in bad)  # the SDK client's refused handshake
    assert all(e["mcplens.request.args"] == {"a": 1} for e in raw)  # argument shapes only, as for any call
    good = [e for e in events if e["mcp.method.name"] == "tools/call" and e["mcplens.status"] == "ok"]
    assert len(good) == 1  # the authorised call is recorded once, by the SDK middleware
    everything = all_bytes(home)
    parts = [p for p in (*token.split("."), *WRONG.split(".")) if len(p) > 16]  # a JWT's payload and signature
    for secret in (token, WRONG, "dXNlcjpodW50ZXIy", *parts):
        assert secret.encode() not in everything


@pytest.mark.parametrize("late", [False, True])
def test_fastmcp_resource_reads_keep_the_servers_template(home: Path, late: bool) -> None:
    from fastmcp import FastMCP

    import mcplens

    server = FastMCP("templates")

    def register() -> None:
        @server.resource("res://{item}/detail")
        def detail(item: str) -> str:
            return f"detail of {item}"

        @server.resource("res://static/about")
        def about() -> str:
            return "about"

    if not late:
        register()
    mcplens.instrument(server)
    if late:  # templates registered after instrument() are found as well
        register()

    async def main() -> None:
        async with Client(server) as c:
            await c.read_resource("res://widget-42/detail")
            await c.read_resource("res://static/about")

    anyio.run(main)
    mcplens.flush()
    reads = poll(lambda: len(r := [e for e in read_events(home) if e["mcp.method.name"] == "resources/read"]) >= 2
                 and r, timeout=10)
    assert reads and sorted(e["mcp.resource.uri"] for e in reads) == ["res://static/about", "res://{item}/detail"]
    assert "widget-42" not in str(reads)
