"""Cancellation and protocol-version negotiation are protocol, not failures, on every way in.

- A call the client abandons (the mcp client sends ``notifications/cancelled``) is recorded as
  ``cancelled`` through the HTTP proxy, the stdio proxy and in-process, against the npm reference
  server (server-everything) and a Python ``MCPServer``.
- An mcp 2.x client probes with ``server/discover`` first; an older server (every Node server,
  every mcp 1.x server) refuses it and the client falls back to ``initialize``. That probe is an
  event of kind ``negotiation`` with status ``unsupported``: no error, no protocol error, no extra
  session, nothing in ``mcplens report``'s errors or ``mcplens insights``' error rates.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import mcp_types
import pytest
from mcp import StdioServerParameters

from tests.capture.proxy_helpers import ProxyProcess, env_for, everything_http, needs_node, npm_peer, proxy_cmd
from tests.conftest import REPO, free_port, poll, read_events, stop, subprocess_env, wait_port

CLIENT = mcp_types.Implementation(name="probe-agent", version="2.0")
#: a call that runs long enough to be abandoned, per peer
SLOW = {"python": ("wait", {"seconds": 30}), "everything": ("trigger-long-running-operation",
                                                              {"duration": 30, "steps": 3})}
FAST = {"python": ("add", {"a": 2, "b": 3}), "everything": ("get-sum", {"a": 2, "b": 3})}


async def abandon_one_call(target: Any, peer: str, mode: str) -> None:
    """Start the slow call, give up on it after a moment (the client cancels), then make a normal one."""
    slow, fast = SLOW[peer], FAST[peer]
    with anyio.fail_after(60):
        async with mcp.Client(target, client_info=CLIENT, mode=mode) as c:
            await c.list_tools()
            with anyio.move_on_after(1.0) as scope:
                await c.call_tool(*slow)
            assert scope.cancelled_caught
            assert not (await c.call_tool(*fast)).is_error


def tool_calls(home: Path) -> dict[str, dict[str, Any]]:
    return {e["gen_ai.tool.name"]: e for e in read_events(home) if e.get("mcp.method.name") == "tools/call"}


def assert_cancelled(home: Path, peer: str) -> None:
    slow, fast = SLOW[peer][0], FAST[peer][0]
    calls = poll(lambda: (c := tool_calls(home)).keys() >= {slow, fast} and c)
    assert calls, read_events(home)
    assert calls[slow]["mcplens.status"] == "cancelled" and "mcplens.error.category" not in calls[slow]
    assert calls[fast]["mcplens.status"] == "ok"
    assert not [e for e in read_events(home) if e.get("event.kind") == "mcplens.protocol_error"]


@contextlib.contextmanager
def python_http(home: Path) -> Iterator[str]:
    """The Python peer over streamable HTTP, instrumented in-process into ``home``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.capture.proxy_peers", "--http", str(port)], cwd=REPO,
                            env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_cancelled_call_through_the_http_proxy_and_in_process_python_server(mode: str, tmp_path: Path) -> None:
    proxy_home, server_home = tmp_path / "proxy", tmp_path / "server"
    with python_http(server_home) as upstream, ProxyProcess(upstream, proxy_home) as proxy:
        anyio.run(abandon_one_call, proxy.url, "python", mode)
    assert_cancelled(proxy_home, "python")
    assert_cancelled(server_home, "python")  # in-process capture of the same call agrees


@needs_node
def test_cancelled_call_through_the_http_proxy_server_everything(tmp_path: Path) -> None:
    home = tmp_path / "proxy"
    with everything_http(tmp_path) as upstream, ProxyProcess(upstream, home) as proxy:
        anyio.run(abandon_one_call, proxy.url, "everything", "legacy")
    assert_cancelled(home, "everything")


def _stdio(home: Path, command: list[str], **env: str) -> StdioServerParameters:
    cmd = proxy_cmd(home, *command)
    return StdioServerParameters(command=cmd[0], args=cmd[1:], env=env_for(home, **env), cwd=str(REPO))


@pytest.mark.parametrize("peer", ["python", pytest.param("everything", marks=needs_node)])
def test_cancelled_call_through_the_stdio_proxy(peer: str, tmp_path: Path) -> None:
    home, server_home = tmp_path / "proxy", tmp_path / "server"
    if peer == "python":  # instrumented in-process too, into its own home
        command = [sys.executable, "-m", "tests.capture.proxy_peers"]
        params = _stdio(home, command, MCPLENS_HOME=str(server_home))
        params.args[params.args.index("--home") + 1] = str(home)
    else:
        params = _stdio(home, [str(npm_peer("mcp-server-everything")), "stdio"])
    anyio.run(abandon_one_call, params, peer, "legacy")
    assert_cancelled(home, peer)
    if peer == "python":
        assert_cancelled(server_home, peer)


# ---- version negotiation ----------------------------------------------------------------------------


async def probe_and_work(target: Any, sessions: int) -> None:
    """An mcp 2.x client in its default mode: server/discover first, then the handshake fallback."""
    for _ in range(sessions):
        with anyio.fail_after(60):
            async with mcp.Client(target, client_info=CLIENT) as c:
                await c.list_tools()
                await c.call_tool("get-sum", {"a": 1, "b": 2})


def cli(home: Path, *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "mcplens.cli", *args, "--home", str(home), "--json"], cwd=REPO,
                          env=subprocess_env(home), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def assert_negotiation_is_not_a_failure(home: Path, sessions: int) -> None:
    def probes() -> list[dict[str, Any]]:
        return [e for e in read_events(home) if e.get("mcp.method.name") == "server/discover"]

    found = poll(lambda: len(probes()) == sessions and probes())
    assert found, read_events(home)
    for e in found:
        assert e["event.kind"] == "negotiation" and e["mcplens.status"] == "unsupported"
        assert "mcplens.error.category" not in e and "mcplens.error.message" not in e
    events = read_events(home)
    assert not [e for e in events if e.get("event.kind") == "mcplens.protocol_error"]
    requests = [e for e in events if e.get("event.kind") == "request"]
    assert {e["mcplens.status"] for e in requests} == {"ok"}
    assert sum(e["mcp.method.name"] == "initialize" for e in requests) == sessions
    report = cli(home, "report")
    assert report and all(row["errors"] == 0 for row in report), report
    assert not [row for row in report if row["method"] == "server/discover" and row["errors"]]
    insights = cli(home, "insights")
    failing = [f for f in insights
               if f["detector"] in ("error_rate", "tool_failure", "shared_failure", "fail_together")]
    assert not failing, failing
    listed = cli(home, "sessions")
    assert len(listed) == sessions, listed  # the probe is recorded in the session it led to, not one of its own
    assert all(row["errors"] == 0 and row["calls"] >= 3 for row in listed), listed


@needs_node
def test_version_probe_of_an_older_server_through_the_http_proxy_is_negotiation(tmp_path: Path) -> None:
    home = tmp_path / "proxy"
    with everything_http(tmp_path) as upstream, ProxyProcess(upstream, home) as proxy:
        anyio.run(probe_and_work, proxy.url, 3)
    assert_negotiation_is_not_a_failure(home, 3)


@needs_node
def test_version_probe_of_an_older_server_through_the_stdio_proxy_is_negotiation(tmp_path: Path) -> None:
    home = tmp_path / "proxy"
    params = _stdio(home, [str(npm_peer("mcp-server-everything")), "stdio"])
    anyio.run(probe_and_work, params, 1)
    assert_negotiation_is_not_a_failure(home, 1)
