"""An MCPServer for the exporter tests: fast, slow, failing and HTTP-calling tools.

``python -m tests.exporters.server --http PORT`` serves streamable HTTP; the exporters come from the
``MCPLENS_*`` environment (``MCPLENS_EXPORTERS=log,otel,prometheus,sentry`` ...).
"""

from __future__ import annotations

import sys
import time
import urllib.request

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.servers import sdk_server


def build() -> MCPServer:
    server = MCPServer("exporter-fixture", version="2.0.1")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def wait(ms: int) -> str:
        """Sleeps ``ms`` milliseconds."""
        time.sleep(ms / 1000)
        return "done"

    @server.tool()
    def fail(reason: str = "") -> str:
        """Always fails."""
        raise ToolError("backend timed out after 30s")

    @server.tool()
    def lookup(payload: dict, fail: bool = False) -> str:
        """Echoes a nested payload; fails with the payload's text in the message when asked."""
        if fail:
            raise ToolError(f"lookup failed for {payload}")
        return f"found {payload}"

    @server.tool()
    def fetch(url: str) -> str:
        """GETs a URL (the OTel test instruments urllib and expects a child span)."""
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - a local test server
            return r.read().decode()

    @server.tool()
    def bag() -> str:
        """The OpenTelemetry baggage current while the handler runs (propagated from ``_meta``)."""
        from opentelemetry import baggage

        return ",".join(f"{k}={v}" for k, v in sorted(baggage.get_all().items()))

    return server


if __name__ == "__main__":
    sdk_server.main(sys.argv[1:], build)
