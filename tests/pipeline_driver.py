"""A stdio MCP server for the writer's fault tests (``python -m tests.pipeline_driver``).

A real ``MCPServer`` instrumented with the one line, with tools that load the writer:

- ``work(items)``: its arguments cost the writer far more than the request path (each of many
  strings is scanned and redacted on the writer thread), so a client that sends as fast as it
  can overloads the writer;
- ``fetch(i)``: a 100 KB reply;
- ``echo(data)``: returns the argument's length (for a 20 MB argument).

``MCPLENS_TEST_SLOW_PROCESSOR=<seconds>`` adds a privacy processor that sleeps that long per event,
standing for an expensive user processor: the writer then falls behind any client.

The tests drive it with a pipelining raw JSON-RPC client (:class:`Pipelined`), which keeps many
requests in flight so the server, not the client, sets the pace. (The in-memory ``mcp.Client``
is not used for load: with any second busy Python thread in the process, mcplens's or not, it
stalls after a few thousand calls until the event loop is woken by something else, mcp 2.3.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp.server import MCPServer

import mcplens

ITEMS = [f"entry {i} of the quarterly inventory list, row {i * 7}" for i in range(120)]
BIG_REPLY = "r" * 100_000


def build() -> MCPServer:
    server = MCPServer("pipeline-driver", version="1.0")

    @server.tool()
    async def work(items: list[str]) -> int:
        return len(items)

    @server.tool()
    async def fetch(i: int) -> str:
        return BIG_REPLY[:-12] + f"{i:012d}"  # a new 100 KB string per call, as a real reply is

    @server.tool()
    async def echo(data: str) -> int:
        return len(data)

    return server


def main() -> None:
    processors = []
    delay = float(os.environ.get("MCPLENS_TEST_SLOW_PROCESSOR") or 0)
    if delay:
        def slow(e: dict[str, Any]) -> dict[str, Any]:
            time.sleep(delay)  # stands for an expensive processor: the writer falls behind the calls
            return e

        processors.append(slow)
    server = build()
    mcplens.instrument(server, processors=processors)
    server.run()


class Pipelined:
    """A raw newline-delimited JSON-RPC client over a server subprocess, ``window`` requests in flight."""

    def __init__(self, home: Path, repo: Path, stderr: Any = subprocess.DEVNULL, **env: str) -> None:
        full = {**os.environ, "MCPLENS_HOME": str(home), "PYTHONPATH": f"{repo / 'src'}{os.pathsep}{repo}", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline_driver"], cwd=repo, env=full,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )
        self._id = 0
        self.replies = 0

    def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int:
        assert self.proc.stdin is not None
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        if not notify:
            self._id += 1
            msg["id"] = self._id
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        return self._id

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("server closed stdout")
        self.replies += 1
        return json.loads(line)

    def handshake(self) -> None:
        self.send("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                 "clientInfo": {"name": "load", "version": "1"}})
        self.read()
        self.send("notifications/initialized", notify=True)

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.send("tools/call", {"name": tool, "arguments": arguments})
        return self.read()

    def burst(self, tool: str, arguments: dict[str, Any], n: int, window: int = 16) -> None:
        """``n`` calls, ``window`` of them in flight at a time; every reply must be a success."""
        tail = (json.dumps({"method": "tools/call", "params": {"name": tool, "arguments": arguments}})[1:]
                + "\n").encode()
        assert self.proc.stdin is not None
        sent = got = 0
        while got < n:
            while sent < n and sent - got < window:
                self._id += 1
                self.proc.stdin.write(b'{"jsonrpc":"2.0","id":%d,' % self._id + tail)
                sent += 1
            self.proc.stdin.flush()
            reply = self.read()
            assert "result" in reply and not reply["result"].get("isError"), reply
            got += 1

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` figure of the server, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)


if __name__ == "__main__":
    main()
