"""A real SDK server (``MCPServer``) with a sensitive read, an outbound tool and a harmless search.

Run as ``python -m tests.analysis.era_server --http PORT``: the 2026-07-28 era over streamable HTTP
has no session id, so the analysis depends on the sessions mcplens derives.
"""

from __future__ import annotations

import sys

from mcp.server import MCPServer
from mcp_types import ToolAnnotations

from tests.servers import sdk_server


def build() -> MCPServer:
    server = MCPServer("era-fixture", version="0.9")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def lookup_customer(ident: str) -> str:
        """Reads one customer record."""
        return f"customer {ident}: plan gold"

    @server.tool(annotations=ToolAnnotations(open_world_hint=True))
    def deliver_digest(to: str, body: str) -> str:
        """Posts a digest to an external address."""
        return "queued"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def search_handbook(q: str) -> str:
        """Searches the public handbook."""
        return f"3 hits for {q}"

    return server


if __name__ == "__main__":
    sdk_server.main(sys.argv[1:], make=build)
