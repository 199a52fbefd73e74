"""A small real MCP server on the official SDK (``MCPServer``), instrumented with the one line.

Run as ``python -m tests.servers.sdk_server`` (stdio) or ``... --http PORT`` (streamable HTTP).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import mcplens


def build():
    """A fresh server: each test instruments its own."""
    server = MCPServer("sdk-fixture", version="1.2.3")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b


    @server.tool()
    def boom(reason: str = "") -> str:
        """Always fails, the way a backend timeout does."""
        raise ToolError("backend timed out after 30s")


    @server.tool()
    def crash() -> str:
        """Raises a bare exception."""
        raise RuntimeError("unexpected state")


    @server.resource("notes://note/{note_id}")
    def note(note_id: str) -> str:
        return f"note {note_id}"


    @server.prompt()
    def greet(name: str) -> str:
        return f"Hello {name}"

    @server.tool()
    def lookup(payload: dict, fail: bool = False) -> str:
        """Echoes a nested payload back; fails with the payload's text in the message when asked."""
        if fail:
            raise ToolError(f"lookup failed for {payload}")
        return f"found {payload}"

    @server.resource("user://{ident}/profile")
    def profile(ident: str) -> str:
        return f"profile of {ident}"

    return server


def main(argv: list[str], make: Callable[[], MCPServer] = build) -> None:
    """Serve a fresh instrumented server: stdio, or ``--http PORT`` on 127.0.0.1. Shared with other fixtures."""
    server = make()
    mcplens.instrument(server)
    if len(argv) >= 2 and argv[0] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
