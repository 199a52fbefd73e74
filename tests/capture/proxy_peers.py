"""A Python MCPServer peer for the proxy tests: the SDK fixture plus a call that runs until cancelled.

Run as ``python -m tests.capture.proxy_peers`` (stdio) or ``... --http PORT`` (streamable HTTP),
instrumented in-process with the one line, so one run shows what in-process capture records
beside what the proxy in front of it records.
"""

from __future__ import annotations

import sys

import anyio
from mcp.server import MCPServer

from tests.servers import sdk_server


def build() -> MCPServer:
    server = sdk_server.build()

    @server.tool()
    async def wait(seconds: float = 30.0) -> str:
        """Sleeps (a slow backend); a client that gives up cancels it."""
        await anyio.sleep(seconds)
        return "waited"

    return server


if __name__ == "__main__":
    sdk_server.main(sys.argv[1:], make=build)
