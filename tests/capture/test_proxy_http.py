"""`mcplens proxy --upstream URL`: streamable HTTP, both eras, real peers, headers, streaming, bad traffic.

The proxy runs as the real CLI in a subprocess; upstreams are the SDK fixture server, the npm
reference server, and a small ASGI app here that misbehaves on purpose. Everything is on 127.0.0.1
and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp
import mcp_types
import pytest
import uvicorn

from tests.capture.proxy_helpers import env_for, needs_node, npm_peer
from tests.conftest import REPO, free_port, http_server, poll, read_events, stop, wait_port

ID_KEY = "proxy-http-test-key-0123456789ab"
EXCLUDED = {"event.id", "time", "duration_s", "trace_id", "span_id", "parent_span_id", "mcplens.instance.id",
            "process.pid", "mcplens.capture"}
CLIENT = mcp_types.Implementation(name="http-agent", version="2.0")
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@contextlib.contextmanager
def http_proxy(upstream: str, home: Path, **env: str) -> Iterator[str]:
    """The real CLI: `mcplens proxy --upstream URL --listen 127.0.0.1:PORT`; SIGTERM on the way out."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcplens.cli", "proxy", "--home", str(home), "--upstream", upstream,
         "--listen", f"127.0.0.1:{port}"],
        cwd=REPO, env=env_for(home, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        assert out == b"", out[:500]  # the proxy never prints to stdout
        assert code == 0, err.decode()[-2000:]


def calls(home: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(home) if e.get("event.kind") in ("request", "notification")]


async def script(url: str, era: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with anyio.fail_after(60):
        async with mcp.Client(url, client_info=CLIENT, mode="legacy" if era == "legacy" else "auto") as c:
            out["tools"] = (await c.list_tools()).model_dump(mode="json")
            # the proxy names resource reads by the templates it saw listed (in-process knows them up front)
            out["templates"] = (await c.list_resource_templates()).model_dump(mode="json")
            out["add"] = (await c.call_tool("add", {"a": 2, "b": 3})).model_dump(mode="json")
            out["boom"] = (await c.call_tool("boom", {"reason": "secret-value"})).model_dump(mode="json")
            out["bad"] = (await c.call_tool("add", {"a": "x"})).model_dump(mode="json")
            out["note"] = (await c.read_resource("notes://note/alice-42")).model_dump(mode="json")
            out["greet"] = (await c.get_prompt("greet", {"name": "secret-value"})).model_dump(mode="json")
            try:
                await c.read_resource("nope://x")
            except Exception as exc:  # noqa: BLE001 - the JSON-RPC error is the point
                out["missing"] = str(exc)
    return out


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_http_proxy_records_what_in_process_records(era: str, tmp_path: Path) -> None:
    """sdk_server instrumented over HTTP (home B) behind the proxy (home A): same replies, same fields."""
    proxy_home, inproc_home = tmp_path / "proxy", tmp_path / "inproc"
    os.environ["MCPLENS_ID_KEY"] = ID_KEY
    try:
        with http_server("tests.servers.sdk_server", inproc_home) as direct_url:
            direct = anyio.run(script, direct_url, era)
            with http_proxy(direct_url, proxy_home, MCPLENS_ID_KEY=ID_KEY) as url:
                proxied = anyio.run(script, url, era)
    finally:
        del os.environ["MCPLENS_ID_KEY"]
    assert proxied == direct
    # the proxy flushed on exit; the server records each run once, the direct run first
    recorded = len(calls(proxy_home))
    assert recorded > 8 and poll(lambda: len(calls(inproc_home)) == 2 * recorded), (recorded, len(calls(inproc_home)))
    inproc = calls(inproc_home)[recorded:]  # the proxied run's half of the server's events
    for e in inproc:
        assert e["mcplens.capture"] == "sdk"
    proxy_events = calls(proxy_home)
    key = lambda e: (e["mcp.method.name"], e.get("jsonrpc.request.id"), e.get("mcplens.target"))  # noqa: E731
    proxied_by = {key(e): e for e in proxy_events}
    inproc_by = {key(e): e for e in inproc}
    assert len(proxied_by) == len(proxy_events) and len(inproc_by) == len(inproc)
    assert proxied_by.keys() == inproc_by.keys()
    assert any(k[0] == "tools/call" for k in proxied_by)
    for k, p in proxied_by.items():
        i = inproc_by[k]
        assert p["mcplens.capture"] == "proxy" and p["network.transport"] == "tcp"
        # 2026-07-28 era: no session id on the wire; each observer derives its own (idle-gap) session
        skip = EXCLUDED | ({"mcp.session.id"} if era == "modern" else set())
        assert {f: v for f, v in p.items() if f not in skip} == {f: v for f, v in i.items() if f not in skip}, k
    if era == "legacy":
        assert all(e.get("mcp.session.id") for e in proxy_events)  # the same pseudonym as in-process


@contextlib.contextmanager
def everything_http(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, PORT=str(port))
    proc = subprocess.Popen([str(npm_peer("mcp-server-everything")), "streamableHttp"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


async def drive_everything(url: str) -> dict[str, Any]:
    with anyio.fail_after(60):
        async with mcp.Client(url, client_info=CLIENT, mode="legacy") as c:
            tools = await c.list_tools()
            result = await c.call_tool("get-sum", {"a": 2, "b": 3})
            echo = await c.call_tool("echo", {"message": "hello"})
            return {"tools": sorted(t.name for t in tools.tools), "sum": result.model_dump(mode="json"),
                    "echo": echo.model_dump(mode="json")}


@needs_node
def test_server_everything_over_http_with_mcp_client_and_inspector(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inspector = npm_peer("mcp-inspector")
    with everything_http(tmp_path) as direct_url, http_proxy(direct_url, home) as url:
        assert anyio.run(drive_everything, url) == anyio.run(drive_everything, direct_url)
        printed = {}
        for name, target in (("direct", direct_url), ("proxy", url)):
            done = subprocess.run([str(inspector), "--cli", target, "--transport", "http", "--method", "tools/call",
                                   "--tool-name", "get-sum", "--tool-arg", "a=2", "b=3"],
                                  cwd=REPO, capture_output=True, timeout=90)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            printed[name] = done.stdout
        assert printed["proxy"] == printed["direct"]
    events = calls(home)
    sums = [e for e in events if e.get("gen_ai.tool.name") == "get-sum"]
    assert len(sums) == 2 and all(e["mcplens.status"] == "ok" for e in sums)
    assert all(e["mcplens.response.size_bytes"] > 20 and e.get("mcp.session.id") for e in sums)
    assert {e["mcplens.client.name"] for e in sums} >= {"http-agent"}
    assert sum(e["mcp.method.name"] == "initialize" for e in events) == 2
    # server requests too (server-everything's roots/list, when it comes): the address of the client that answered
    unaddressed = [e for e in events
                   if e["event.kind"] == "request" and not e.get("client.address", "").startswith("ip_")]
    assert not unaddressed, [(e["mcp.method.name"], e.get("mcplens.proxy.direction")) for e in unaddressed]


# ---- a misbehaving upstream -------------------------------------------------------------------------


class Upstream:
    """A raw ASGI upstream: records what it got, answers per the JSON-RPC method it is sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"method": scope["method"], "headers": headers, "body": body})
        try:
            msg = json.loads(body) if body else {}
        except ValueError:
            msg = {}
        rid = msg.get("id") if isinstance(msg, dict) else None
        method = msg.get("method") if isinstance(msg, dict) else None
        if headers.get("authorization") != "Bearer good":
            out = json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32001, "message": "unauthorized"}})
            await self._json(send, 401, out.encode())
        elif method == "slow/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"), (b"mcp-session-id", b"sess-1")]})
            note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
            await send({"type": "http.response.body", "body": f"event: message\ndata: {json.dumps(note)}\n\n".encode(),
                        "more_body": True})
            await anyio.sleep(1.5)
            reply = {"jsonrpc": "2.0", "id": rid, "result": {"content": [], "isError": False}}
            await send({"type": "http.response.body", "body": f"event: message\ndata: {json.dumps(reply)}\n\n".encode(),
                        "more_body": False})
        elif method == "forever/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async with anyio.create_task_group() as tg:

                async def ping() -> None:
                    with anyio.fail_after(30):
                        while True:
                            await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                            await anyio.sleep(0.05)

                tg.start_soon(ping)
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.disconnected.set()
                tg.cancel_scope.cancel()
        elif method == "crash/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b": starting\n\n", "more_body": True})
            raise RuntimeError("the upstream dies mid-stream")
        elif rid is None:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._json(send, 200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {}}).encode())

    @staticmethod
    async def _json(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def upstream_app(app: Upstream) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def post(client: httpx2.Client, url: str, message: Any, **headers: str) -> httpx2.Response:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return client.post(url, content=body, headers={**MCP_HEADERS, **headers})


def test_headers_pass_through_auth_is_never_recorded_and_401_is_unauthorized(tmp_path: Path) -> None:
    home, app = tmp_path / "home", Upstream()
    with upstream_app(app) as upstream, http_proxy(upstream, home) as url, httpx2.Client(timeout=20) as client:
        denied = post(client, url, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                    "params": {"name": "t", "arguments": {}}}, authorization="Bearer bad-secret")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == -32001
        ok = post(client, url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, authorization="Bearer good",
                  **{"mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25", "mcp-method": "tools/list",
                     "last-event-id": "ev-7", "mcp-name": "n"})
        assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        gone = client.delete(url, headers={"mcp-session-id": "sess-1", "authorization": "Bearer good"})
        assert gone.status_code == 202
        garbage = post(client, url, b"\xff{not json", authorization="Bearer good")
        assert garbage.status_code == 202
    seen = app.seen[1]["headers"]
    assert seen["host"] == upstream.split("/")[2]  # the upstream's own Host, not the proxy's
    for name, value in (("authorization", "Bearer good"), ("mcp-session-id", "sess-1"), ("last-event-id", "ev-7"),
                        ("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/list"), ("mcp-name", "n")):
        assert seen[name] == value
    assert app.seen[2]["method"] == "DELETE" and app.seen[3]["body"] == b"\xff{not json"
    events = read_events(home)
    by_id = {e.get("jsonrpc.request.id"): e for e in events if e.get("event.kind") == "request"}
    assert by_id["1"]["mcplens.status"] == "unauthorized" and by_id["1"]["mcplens.proxy.http_status"] == 401
    assert by_id["1"]["mcplens.error.category"] == "auth"
    assert by_id["2"]["mcplens.status"] == "ok" and by_id["2"]["mcp.protocol.version"] == "2025-11-25"
    assert by_id["2"]["mcp.session.id"].startswith("s_") and "sess-1" not in json.dumps(events)
    errors = [e for e in events if e.get("event.kind") == "mcplens.protocol_error"]
    assert [e["mcplens.proxy.error"] for e in errors] == ["invalid_utf8"]
    stored = b"".join(f.read_bytes() for f in home.rglob("*.jsonl"))
    assert b"bad-secret" not in stored and b"Bearer" not in stored


def test_sse_is_streamed_not_buffered_and_disconnects_are_bounded(tmp_path: Path) -> None:
    home, app = tmp_path / "home", Upstream()
    with upstream_app(app) as upstream, http_proxy(upstream, home) as url, httpx2.Client(timeout=20) as client:
        t0 = time.monotonic()
        arrivals: list[tuple[float, bytes]] = []
        with client.stream("POST", url, content=json.dumps({"jsonrpc": "2.0", "id": 5, "method": "slow/stream"}),
                           headers={**MCP_HEADERS, "authorization": "Bearer good"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["mcp-session-id"] == "sess-1"
            for chunk in r.iter_raw():
                arrivals.append((time.monotonic() - t0, chunk))
        assert b"notifications/progress" in arrivals[0][1] and arrivals[0][0] < 1.2  # before the reply was sent
        assert b'"id": 5' in b"".join(c for _, c in arrivals) and arrivals[-1][0] >= 1.4
        # a client that leaves in the middle of a stream: the proxy lets go of the upstream too
        with client.stream("POST", url, content=json.dumps({"jsonrpc": "2.0", "id": 6, "method": "forever/stream"}),
                           headers={**MCP_HEADERS, "authorization": "Bearer good"}) as r:
            next(r.iter_raw())
        assert app.disconnected.wait(timeout=10)
        # an upstream that dies mid-stream: the client's stream breaks too, nothing hangs
        with pytest.raises(httpx2.HTTPError), client.stream(
            "POST", url, content=json.dumps({"jsonrpc": "2.0", "id": 8, "method": "crash/stream"}),
            headers={**MCP_HEADERS, "authorization": "Bearer good"},
        ) as r:
            for _ in r.iter_raw():
                pass
        again = post(client, url, {"jsonrpc": "2.0", "id": 7, "method": "ping"}, authorization="Bearer good")
        assert again.status_code == 200  # the proxy is still serving

    def requests() -> dict[str, dict[str, Any]]:
        return {e.get("jsonrpc.request.id"): e for e in read_events(home) if e.get("event.kind") == "request"}

    by_id = poll(lambda: {"5", "6", "7", "8"} <= (found := requests()).keys() and found) or requests()
    assert by_id["5"]["mcplens.status"] == "ok" and by_id["5"]["duration_s"] >= 1.4
    assert by_id["6"]["mcplens.status"] == "cancelled"
    assert by_id["8"]["mcplens.status"] == "exception" and by_id["8"]["mcplens.error.category"] == "connection_failure"
    notes = [e for e in read_events(home) if e.get("event.kind") == "notification"]
    assert [(e["mcp.method.name"], e["mcplens.proxy.direction"]) for e in notes] == [
        ("notifications/progress", "server_to_client")]


def test_unreachable_upstream_is_a_502_and_a_connection_failure(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    with http_proxy(dead, home) as url, httpx2.Client(timeout=20) as client:
        r = post(client, url, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}})
        assert r.status_code == 502
    (e,) = [e for e in read_events(home) if e.get("event.kind") == "request"]
    assert e["mcplens.status"] == "exception" and e["error.type"] == "ConnectError"
    assert e["mcplens.error.category"] == "connection_failure"
