"""An MCPServer (mcp 2.x) behind bearer-token auth, instrumented with the one line.

Run as ``python -m tests.servers.sdk_auth_server --http PORT TOKEN_FILE``: it makes a random token,
writes it to TOKEN_FILE and serves streamable HTTP on 127.0.0.1; any other token is refused (401).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings

import mcplens


class OneToken(TokenVerifier):
    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="tester", scopes=[]) if token == self.token else None


def main(argv: list[str]) -> None:
    port, token_file = int(argv[1]), Path(argv[2])
    token = secrets.token_urlsafe(32)
    server = MCPServer("sdk-auth", version="1.0", token_verifier=OneToken(token), auth=AuthSettings(
        issuer_url="https://issuer.test", resource_server_url=f"http://127.0.0.1:{port}/mcp", required_scopes=[]))

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    mcplens.instrument(server)
    tmp = token_file.with_suffix(".tmp")
    tmp.write_text(token)
    tmp.rename(token_file)
    server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(sys.argv[1:])
