"""The HTTP half of ``bench/proxy.py``: what ``mcplens proxy --upstream URL`` adds.

Contenders, interleaved (a fresh random order every round) against one upstream, so drift on a
shared machine hits all alike:

- **direct**: the client talks to the upstream;
- **relay only**: through ``mcplens proxy --upstream`` with ``MCPLENS_DISABLED=1``;
- **proxy**: through ``mcplens proxy --upstream`` recording every call.

The upstream is a real ``MCPServer`` (mcp 2.x, streamable HTTP, stateful sessions, one ``add``
tool, mcplens off in it). The client is ``httpx2`` speaking MCP's HTTP directly (initialize,
notifications/initialized, then ``tools/call`` POSTs), which keeps the client's own cost low.

- latency: one session, one call in flight, blocks of calls per contender per round;
- throughput: N sessions at once, each calling in a loop for a fixed time; calls per second;
- sessions: S sessions each holding its GET stream open, then one call each: either spread
  evenly over a few seconds (the calls arrive as a busy server's do) or all at once (a burst: then
  the upstream's own queueing is most of what is measured, so the burst is also run against npm
  ``server-everything``, a much faster upstream than the Python ``MCPServer``). Only the calls are
  timed (opening 300 sessions is not); direct and proxy are measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2

REPO = Path(__file__).resolve().parent.parent
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
SERVER = r"""
import sys
from mcp.server import MCPServer
server = MCPServer("bench-http", version="1.0.0")

@server.tool()
def add(a: int, b: int) -> int:
    return a + b

server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"""
CALL = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


#: ``--upstream-kind fast``: a standard-library asyncio server that answers like the SDK's
#: streamable HTTP (each request as one SSE event, chunked; notifications 202; GET an open SSE
#: stream) at a small fraction of its CPU, so what the proxy itself costs stands out
FAST_SERVER = r"""
import asyncio, re, sys
ID = re.compile(rb'"id"\s*:\s*("[^"]*"|-?\d+)')

class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            m = re.search(rb"content-length: *(\d+)", head)
            n = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + n:
                return
            body, self.buf = self.buf[end + 4:end + 4 + n], self.buf[end + 4 + n:]
            if head.startswith(b"get"):
                self.t.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                continue
            if head.startswith(b"delete"):
                self.t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                continue
            i = ID.search(body)
            if i is None:
                self.t.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                continue
            event = (b'event: message\r\ndata: {"jsonrpc":"2.0","id":' + i.group(1) +
                     b',"result":{"content":[{"type":"text","text":"5"}],"isError":false}}\r\n\r\n')
            self.t.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                         b"mcp-session-id: 0123456789abcdef\r\ntransfer-encoding: chunked\r\n\r\n")
            self.t.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.t.write(b"0\r\n\r\n")

async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()

asyncio.run(main())
"""
EVERYTHING = REPO / "node_modules" / ".bin" / "mcp-server-everything"
#: the tool each upstream kind is called with
CALLS = {"python": CALL, "fast": CALL,
         "everything": {**CALL, "params": {"name": "get-sum", "arguments": {"a": 2, "b": 3}}}}


class Stack:
    """The upstream and, per contender, its URL (proxies started in front of the one upstream).

    ``upstream``: ``python`` (a Python ``MCPServer``) or ``everything`` (npm server-everything
    over streamable HTTP, from the repo's node_modules)."""

    def __init__(self, tmp: Path, names: list[str], proxy_src: dict[str, str] | None = None,
                 upstream_kind: str = "python") -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kind = upstream_kind
        port = free_port()
        env = dict(os.environ, MCPLENS_DISABLED="1")
        if upstream_kind == "everything":
            self._start([str(EVERYTHING), "streamableHttp"], dict(os.environ, PORT=str(port)), port)
        elif upstream_kind == "fast":
            self._start([sys.executable, "-c", FAST_SERVER, str(port)], env, port)
        else:
            self._start([sys.executable, "-c", SERVER, str(port)], env, port)
        upstream = f"http://127.0.0.1:{port}/mcp"
        self.urls: dict[str, str] = {}
        self.pids: dict[str, int] = {}  # contender -> its proxy process ("upstream" -> the server)
        self.pids["upstream"] = self.procs[0].pid
        for name in names:
            if name == "direct":
                self.urls[name] = upstream
                continue
            p = free_port()
            penv = dict(os.environ, MCPLENS_HOME=str(tmp / name.replace(" ", "-")))
            src = (proxy_src or {}).get(name, str(REPO / "src"))
            penv["PYTHONPATH"] = src + os.pathsep + penv.get("PYTHONPATH", "")
            if name.startswith("relay only"):
                penv["MCPLENS_DISABLED"] = "1"
            self._start([sys.executable, "-m", "mcplens.cli", "proxy", "--upstream", upstream, "--listen",
                         f"127.0.0.1:{p}"], penv, p)
            self.urls[name] = f"http://127.0.0.1:{p}/mcp"
            self.pids[name] = self.procs[-1].pid

    def _start(self, cmd: list[str], env: dict[str, str], port: int) -> None:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def open_session(client: httpx2.AsyncClient, url: str) -> dict[str, str]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "1"}}}
    r = await client.post(url, json=init, headers=HEADERS)
    r.raise_for_status()
    head = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    r = await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=head)
    assert r.status_code == 202, r.status_code
    return head


async def call(client: httpx2.AsyncClient, url: str, head: dict[str, str], rid: int,
               message: dict[str, Any] = CALL) -> int:
    """One tools/call; nanoseconds from send to the whole reply read."""
    t0 = time.perf_counter_ns()
    r = await client.post(url, json={**message, "id": rid}, headers=head)
    t1 = time.perf_counter_ns()
    assert r.status_code == 200 and b'"result"' in r.content, (r.status_code, r.content[:200])
    return t1 - t0


def client(keepalive: int = 512) -> httpx2.AsyncClient:
    # keep-alive shorter than the servers' 5 s idle timeout, no connection cap (sessions hold streams)
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=keepalive, keepalive_expiry=2.0)
    return httpx2.AsyncClient(timeout=httpx2.Timeout(60.0), limits=limits)


async def latency_block(url: str, n: int) -> list[int]:
    async with client() as c:
        head = await open_session(c, url)
        await call(c, url, head, 1)  # warm
        return [await call(c, url, head, i + 2) for i in range(n)]


async def throughput(url: str, sessions: int, seconds: float, start_at: float | None = None) -> float:
    """Calls per second with ``sessions`` sessions each calling back to back for ``seconds``
    (from the wall-clock time ``start_at`` when given: several client processes start together)."""
    async with client() as c:
        heads = [await open_session(c, url) for _ in range(sessions)]
        done = [0]
        stop = [0.0]
        if start_at is not None and start_at > time.time():
            await anyio.sleep(start_at - time.time())  # the agreed start of the timed run, not synchronisation

        async def loop(head: dict[str, str]) -> None:
            rid = 1
            while time.perf_counter() < stop[0]:
                await call(c, url, head, rid)
                rid += 1
                done[0] += 1

        t0 = time.perf_counter()
        stop[0] = t0 + seconds
        async with anyio.create_task_group() as tg:
            for head in heads:
                tg.start_soon(loop, head)
        return done[0] / (time.perf_counter() - t0)


async def many_sessions(url: str, sessions: int, spread: float = 0.0, message: dict[str, Any] = CALL) -> list[int]:
    """``sessions`` sessions, each with its GET stream open; then one call each: all at once
    (``spread`` 0) or the k-th of them ``k * spread / sessions`` seconds after the first (calls
    evenly spread, in a shuffled session order). Only the calls are timed.
    No keep-alive: with hundreds of connections a pooled one may be closed by the server as it is
    reused (the client, not the path under test, would fail)."""
    import random

    async with client(keepalive=0) as c:
        opened, ready = anyio.Event(), [0]
        out: list[int] = []
        slots = list(range(sessions))
        random.Random(sessions).shuffle(slots)

        async def one(k: int) -> None:
            head = await open_session(c, url)
            async with c.stream("GET", url, headers={**head, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                ready[0] += 1
                if ready[0] == sessions:
                    start[0] = time.perf_counter()
                    opened.set()
                await opened.wait()
                if spread:
                    delay = start[0] + slots[k] * spread / sessions - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)  # the call's arrival time, not synchronisation
                out.append(await call(c, url, head, 1, message))
            await c.delete(url, headers=head)

        start = [0.0]
        async with anyio.create_task_group() as tg:
            for k in range(sessions):
                tg.start_soon(one, k)
        return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/PID/stat``; Linux only)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_latency(url: str, n: int) -> list[int]:
    return anyio.run(latency_block, url, n)


def run_throughput(url: str, sessions: int, seconds: float, clients: int = 1) -> float:
    """Calls per second; with ``clients`` > 1 the sessions are shared out between that many client
    processes starting together (one Python client driving 50 sessions can be the bottleneck
    itself), and their rates are summed."""
    if clients <= 1:
        return anyio.run(throughput, url, sessions, seconds)
    start_at = time.time() + 1.0 + 0.02 * sessions  # after every process has opened its sessions
    share = [sessions // clients + (k < sessions % clients) for k in range(clients)]
    procs = [subprocess.Popen([sys.executable, __file__, "throughput", url, str(n), str(seconds), repr(start_at)],
                              stdout=subprocess.PIPE, text=True) for n in share if n]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120 + seconds)
        assert proc.returncode == 0, proc.returncode
        rates.append(float(out.split()[-1]))
    return sum(rates)


def run_sessions(url: str, sessions: int, spread: float = 0.0, message: dict[str, Any] = CALL) -> list[int]:
    return anyio.run(many_sessions, url, sessions, spread, message)


def raise_files() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def stats(values: list[Any]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "n": len(ordered)}


if __name__ == "__main__":  # one client process of a throughput run (see run_throughput)
    if sys.argv[1] == "throughput":
        rate = anyio.run(throughput, sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        print(rate)
