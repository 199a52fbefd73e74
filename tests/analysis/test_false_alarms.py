"""REAL ordinary traffic raises nothing above info.

Real peers nobody here wrote, all recording into ONE data directory (as the README recommends):
the npm reference servers server-everything, server-memory and server-filesystem, each run through
the stdio proxy (``mcplens proxy -- node ...``) one process per session, 20 short sessions in all,
driven by the mcp 2.x client in ``auto`` mode (it probes ``server/discover``, which these older
servers reject, then falls back to ``initialize``); two clients with different capabilities on
server-everything (it shows ``trigger-sampling-request`` only to clients that support sampling), one
of them running the sum-then-sample workflow; an instrumented FastMCP server in-process; and an
instrumented FastMCP server behind bearer-JWT auth over streamable HTTP, used with a valid token.
Nothing is synthetic. One module-scoped run feeds every assertion.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import fastmcp
import mcp
import mcp_types as types
import pytest
from mcp import StdioServerParameters

import mcplens
from mcplens.analysis.findings import Finding
from mcplens.analysis.run import insights
from mcplens.store.local.reader import LocalStore
from tests.analysis import workload
from tests.capture.proxy_helpers import env_for, needs_node, npm_peer, proxy_cmd
from tests.conftest import REPO, free_port, stop, subprocess_env, wait_port
from tests.servers import fastmcp_server

pytestmark = needs_node
CONCURRENCY = 4


async def _sampling(ctx: Any, params: Any) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="fine"),
                                     model="test-model")


def _params(home: Path, peer: str, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    cmd = proxy_cmd(home, "node", str(npm_peer(peer)), *args)
    return StdioServerParameters(command=cmd[0], args=cmd[1:], env={**env_for(home), **(env or {})})


async def _everything(home: Path, i: int) -> None:
    rich = i < 2  # two sessions of a client that supports sampling
    info = types.Implementation(name="desk-agent", version="2.0")
    extra: dict[str, Any] = {"sampling_callback": _sampling} if rich else {}
    async with mcp.Client(_params(home, "mcp-server-everything"), client_info=info, mode="auto", **extra) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert ("trigger-sampling-request" in names) == rich
        await c.call_tool("echo", {"message": f"hello {i}"})
        await c.call_tool("get-sum", {"a": i, "b": 2})
        if rich:
            await c.call_tool("trigger-sampling-request", {"prompt": "summarise the sum", "maxTokens": 20})
        await c.call_tool("get-tiny-image", {})
        await c.get_prompt("simple-prompt", {})


async def _memory(home: Path, i: int) -> None:
    info = types.Implementation(name="notes-agent", version="1.4")
    # a memory file per process: concurrent servers sharing the default file overwrite each other's
    # entities (then add_observations fails: a race between the test's servers, not traffic to judge)
    memory = {"MEMORY_FILE_PATH": str(home.parent / f"memory-{i}.jsonl")}
    async with mcp.Client(_params(home, "mcp-server-memory", env=memory), client_info=info, mode="auto") as c:
        await c.list_tools()
        await c.call_tool("create_entities", {"entities": [
            {"name": f"project-{i}", "entityType": "project", "observations": ["started"]}]})
        await c.call_tool("add_observations", {"observations": [{"entityName": f"project-{i}",
                                                                  "contents": ["on track"]}]})
        await c.call_tool("search_nodes", {"query": "project"})
        await c.call_tool("open_nodes", {"names": [f"project-{i}"]})
        await c.call_tool("read_graph", {})


async def _files(home: Path, root: Path, i: int) -> None:
    info = types.Implementation(name="code-agent", version="0.9")
    async with mcp.Client(_params(home, "mcp-server-filesystem", str(root)), client_info=info, mode="auto") as c:
        await c.list_tools()
        path = str(root / f"draft-{i}.md")
        await c.call_tool("write_file", {"path": path, "content": f"# draft {i}\n" + "text " * 50})
        await c.call_tool("read_text_file", {"path": path})
        await c.call_tool("list_directory", {"path": str(root)})
        await c.call_tool("search_files", {"path": str(root), "pattern": "draft"})
        await c.call_tool("get_file_info", {"path": path})


async def _fastmcp() -> None:
    server = fastmcp_server.build()
    mcplens.instrument(server)
    async with fastmcp.Client(server, client_info=types.Implementation(name="ide-agent", version="5.0")) as c:
        await c.list_tools()
        for i in range(5):
            await c.call_tool("add", {"a": i, "b": 1})
        await c.read_resource("notes://note/n-1")
        await c.get_prompt("greet", {"name": "team"})


async def _authorized(url: str, token: str, i: int) -> None:
    async with fastmcp.Client(url, auth=token) as c:
        await c.list_tools()
        for j in range(3):
            await c.call_tool("add", {"a": i, "b": j})


def _auth_server_traffic(home: Path, tmp: Path) -> None:
    """Three sessions of an authorised client against a FastMCP server behind JWT auth, then a clean stop."""
    port, token_file = free_port(), tmp / "token"
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.fastmcp_auth_server", "--http", str(port),
                             str(token_file)], cwd=REPO, env=subprocess_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, timeout=60)
        for i in range(3):
            anyio.run(_authorized, f"http://127.0.0.1:{port}/mcp", token_file.read_text(), i)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def ordinary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ordinary") / "mcplens-home"
    root = tmp_path_factory.mktemp("workspace")
    jobs = ([lambda i=i: _everything(home, i) for i in range(8)]
            + [lambda i=i: _memory(home, i) for i in range(6)]
            + [lambda i=i: _files(home, root, i) for i in range(6)])

    async def main() -> None:
        limit = anyio.Semaphore(CONCURRENCY)

        async def one(job: Any) -> None:
            async with limit:
                await job()

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, job)
        await _fastmcp()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCPLENS_HOME", str(home))
        anyio.run(main)
        mcplens.flush()
        from mcplens.pipeline import pipelines

        for p in pipelines():  # the in-process server stops cleanly, as a process exiting would
            if Path(p.settings.home) == home:
                p.close()
    _auth_server_traffic(home, tmp_path_factory.mktemp("auth"))
    assert os.path.isdir(home)
    return home


def _all(home: Path) -> list[Finding]:
    return insights(LocalStore(home))


def test_ordinary_traffic_raises_nothing_above_info(ordinary: Path) -> None:
    findings = _all(ordinary)
    loud = [f for f in findings if f.severity != "info"]
    assert not loud, workload.dumps(loud)
    assert not [f for f in findings if f.detector in ("tool_drift", "tool_failure", "error_rate", "shared_failure")]


def test_it_was_the_traffic_described(ordinary: Path) -> None:
    store = LocalStore(ordinary)
    rows = store.query("SELECT server_name AS server, count(DISTINCT instance_id) AS procs, "
                       "count(*) FILTER (WHERE method = 'tools/call') AS calls FROM events "
                       "WHERE kind = 'request' AND server_name IS NOT NULL GROUP BY 1 ORDER BY 1")
    procs = {r["server"]: r["procs"] for r in rows}
    assert sum(n for s, n in procs.items() if not s.startswith("fastmcp-")) == 20, rows
    assert procs["fastmcp-fixture"] == 1 and procs["fastmcp-auth"] == 1 and len(procs) == 5
    # the mcp 2.x client probed each older server (and FastMCP) first; that negotiation is no finding
    probes = store.query("SELECT status FROM events WHERE method = 'server/discover'")
    assert len(probes) == 20 + 1 + 3  # one per session: proxied, in-process, over HTTP with auth
    assert not [f for f in _all(ordinary) if "server/discover" in f.subject or "server/discover" in f.title]
    statuses = store.query("SELECT server_name, target, status, error_type, error_message FROM events "
                           "WHERE method = 'tools/call' AND status <> 'ok'")
    assert statuses == []
    caps = store.query("SELECT DISTINCT client_capabilities::VARCHAR AS c FROM events WHERE method = 'initialize' "
                       "AND server_name = 'mcp-servers/everything'")
    assert len(caps) == 2, caps  # two capability views of one server


def test_what_info_there_is_reads_right(ordinary: Path) -> None:
    findings = _all(ordinary)
    restarts = {f.subject: f for f in findings if f.detector == "restarts"}
    assert "None" not in restarts and all(f.severity == "info" for f in restarts.values())
    assert max(f.evidence["instances"] for f in restarts.values()) >= 6
    assert all(f.evidence["crashed"] == 0 for f in restarts.values())
    resources = [f for f in findings if f.detector == "process_resources"]
    assert len(resources) == len({f.evidence["server"] for f in resources})  # one per server
    pairs = [f for f in findings if f.detector == "exfiltration"]
    assert all(f.evidence["read_sensitivity"] == "low" for f in pairs if "get-sum" in f.subject)
