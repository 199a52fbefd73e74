"""The servers the leak test drives: one on the SDK's ``MCPServer``, one on FastMCP, same surface.

Every tool, prompt and resource here echoes what it was given back into the places a real server
does: tool errors that quote their arguments, framework validation errors (``input_value=...``),
prompt text, resource errors that quote the URI (``Unknown resource: db://...``).

Run as ``python -m tests.privacy.leak_server sdk|fastmcp`` for a bare stdio server (not
instrumented: the tests put ``mcplens proxy`` in front of it); in-process tests call :func:`build`
and instrument the result themselves.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


def _surface(tool_error: type[Exception]) -> tuple[list[Any], list[Any], list[tuple[str, Any]]]:
    """The handlers both servers register: (tools, prompts, (URI template, resource) pairs)."""

    def lookup(payload: dict, fail: bool = False) -> str:
        """Echoes the payload; fails with it in the message when asked."""
        if fail:
            raise tool_error(f"lookup failed for {payload}")
        return "ok"

    def report(message: str) -> str:
        """Fails with the given text as its error message (a backend error quoting its input)."""
        raise tool_error(message)

    def typed(count: int) -> int:
        """Strictly an integer: anything else makes the framework echo the input in its error."""
        return count

    def compose(text: str, fail: str = "") -> str:
        if fail:
            raise ValueError(f"cannot compose: {text}")
        return f"Write about: {text}"

    def profile(ident: str) -> str:
        return "profile"

    def vault(item: str) -> str:
        raise ValueError(f"cannot open vault://{item}/open for {item}")

    return [lookup, report, typed], [compose], [("user://{ident}/profile", profile), ("vault://{item}/open", vault)]


def build_sdk() -> Any:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("leak-sdk", version="1.0.0")
    tools, prompts, resources = _surface(ToolError)
    for fn in tools:
        server.tool()(fn)
    for fn in prompts:
        server.prompt()(fn)
    for uri, fn in resources:
        server.resource(uri)(fn)
    return server


def build_fastmcp() -> Any:
    from fastmcp import FastMCP
    from fastmcp.exceptions import ToolError

    server = FastMCP("leak-fastmcp", version="1.0.0")
    tools, prompts, resources = _surface(ToolError)
    for fn in tools:
        server.tool(fn)
    for fn in prompts:
        server.prompt(fn)
    for uri, fn in resources:
        server.resource(uri)(fn)
    return server


BUILDERS = {"sdk": build_sdk, "fastmcp": build_fastmcp}


def main(argv: list[str]) -> None:
    # the frameworks render every handler exception as a rich traceback on stderr (about a second each):
    # the server's own log, not mcplens's, and not what this test measures
    logging.disable(logging.CRITICAL)
    server = BUILDERS[argv[0] if argv else "sdk"]()
    if argv and argv[0] == "fastmcp":
        server.run(show_banner=False)
    else:
        server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
